"""ssh.<name> against paramiko's SSH server on 127.0.0.1: pinned, changed, unpinned, not SSH."""

from __future__ import annotations

import socket
import threading

import paramiko
import pytest

from netsetup.diagnose.checks import ssh
from netsetup.diagnose.result import Outcome, Owner, Status

from .helpers import closed_port, config_text, context, tcp_server, view


def ssh_server(key: paramiko.PKey) -> tcp_server:  # type: ignore[valid-type]
    def serve(conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(key)
        done = threading.Event()
        try:
            transport.start_server(event=done, server=paramiko.ServerInterface())
            done.wait(3)
            while transport.is_active():
                threading.Event().wait(0.05)
        except (paramiko.SSHException, EOFError):
            pass
        finally:
            transport.close()

    return tcp_server(serve)


def run(port: int, host_key: str | None = None, budget: float = 4.0) -> Outcome:
    pin = f" host-key={host_key}" if host_key else ""
    ctx = context(config_text([f"target=office-ssh kind=ssh host=127.0.0.1 port={port}{pin}"]))
    (check,) = ssh.checks(ctx)
    assert check.id == "ssh.office-ssh"
    return check.run(view(ctx, budget))


@pytest.fixture(scope="module")
def server_key() -> paramiko.Ed25519Key:
    import io

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def test_fingerprint_is_openssh_style(server_key: paramiko.Ed25519Key) -> None:
    printed = ssh.fingerprint(server_key.asbytes())
    assert printed.startswith("SHA256:") and len(printed) == 7 + 43 and "=" not in printed


def test_pinned_key_passes(server_key: paramiko.Ed25519Key) -> None:
    pinned = ssh.fingerprint(server_key.asbytes())
    with ssh_server(server_key) as port:
        outcome = run(port, pinned)
    assert outcome.status is Status.passed, outcome
    assert outcome.metrics["fingerprint"] == pinned
    assert str(outcome.metrics["banner"]).startswith("SSH-2.0-")


def test_changed_key_fails_with_do_not_log_in_and_both_fingerprints(
    server_key: paramiko.Ed25519Key,
) -> None:
    pinned = "SHA256:" + "A" * 43
    with ssh_server(server_key) as port:
        outcome = run(port, pinned)
    now = ssh.fingerprint(server_key.asbytes())
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "do not log in" in outcome.summary and outcome.fix and "do not log in" in outcome.fix
    assert pinned in outcome.fix and now in outcome.fix


def test_unpinned_key_warns_showing_the_fingerprint(server_key: paramiko.Ed25519Key) -> None:
    with ssh_server(server_key) as port:
        outcome = run(port)
    assert outcome.status is Status.warn
    assert ssh.fingerprint(server_key.asbytes()) in outcome.summary


def test_port_that_is_not_ssh_fails() -> None:
    def http(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with tcp_server(http) as port:
        outcome = run(port)
    assert outcome.status is Status.fail and "not an SSH server" in outcome.summary


def test_refused_fails_for_it() -> None:
    outcome = run(closed_port())
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "refuses connections" in outcome.summary


def test_silent_port_ends_within_the_budget() -> None:
    import time

    def silent(conn: socket.socket) -> None:
        time.sleep(3)

    with tcp_server(silent) as port:
        started = time.monotonic()
        outcome = run(port, budget=1.0)
        assert time.monotonic() - started < 1.5
    assert outcome.status is Status.fail and "not an SSH server" in outcome.summary
