"""reach.<name> against real listeners on 127.0.0.1: TCP, TLS + HTTP, RDP (X.224) and impostors."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.diagnose.checks import reach
from netsetup.diagnose.result import Owner, Status
from netsetup.lab.services import make_certificate

from .helpers import closed_port, config_text, context, tcp_server, view


def run_target(kind: str, port: int, name: str = "t", budget: float = 3.0) -> reach.Outcome:
    ctx = context(config_text([f"target={name} kind={kind} host=127.0.0.1 port={port}"]))
    (check,) = reach.checks(ctx)
    assert check.id == f"reach.{name}"
    started = time.monotonic()
    outcome = check.run(view(ctx, budget))
    assert time.monotonic() - started < budget + 0.5
    return outcome


def greeter(conn: socket.socket) -> None:
    conn.sendall(b"netsetup-lab file-service\r\n")
    conn.recv(100)


def silent(conn: socket.socket) -> None:
    time.sleep(3)


def test_tcp_target_that_accepts_passes_with_its_connect_time() -> None:
    with tcp_server(greeter) as port:
        outcome = run_target("tcp", port)
    assert outcome.status is Status.passed
    assert isinstance(outcome.metrics["connect_ms"], float)


def test_refused_port_fails_for_it_naming_the_target() -> None:
    port = closed_port()
    outcome = run_target("tcp", port, name="fileserver")
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert f"127.0.0.1:{port}" in outcome.summary and "refuses connections" in outcome.summary
    assert outcome.fix and "it@acme-dental.example" in outcome.fix


def test_target_through_tunnel_needs_the_handshake_and_local_one_does_not() -> None:
    ctx = context(
        config_text(
            [
                "target=office kind=tcp host=192.0.2.30 port=445",
                "target=local kind=tcp host=127.0.0.1 port=445",
                "target=named kind=tcp host=files.acme-dental.example port=445",
            ]
        )
    )
    needs = {c.id: c.needs for c in reach.checks(ctx)}
    assert needs == {
        "reach.office": ("tunnel.handshake",),
        "reach.local": (),
        "reach.named": ("tunnel.handshake",),
    }


def test_name_that_does_not_resolve_skips_pointing_at_dns() -> None:
    # DNS at a closed port on 127.0.0.1: the company server does not answer, the system
    # resolver does not know the .invalid name (RFC 6761: never resolves)
    ctx = context(config_text(["target=x kind=tcp host=nothing.invalid port=1"], dns="127.0.0.1"))
    (check,) = reach.checks(ctx)
    outcome = check.run(view(ctx, 3.0))
    assert outcome.status is Status.skip
    assert "dns" in outcome.summary


def _tls_server(tmp_path: Path, status: int) -> tuple[ssl.SSLContext, bytes]:
    key, cert = make_certificate(tmp_path, "portal.example", ["127.0.0.1"], datetime.now(UTC))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode()


@pytest.mark.parametrize("status", [200, 401])
def test_https_self_signed_is_a_warning_with_the_http_status(tmp_path: Path, status: int) -> None:
    tls, answer = _tls_server(tmp_path, status)

    def serve(conn: socket.socket) -> None:
        with tls.wrap_socket(conn, server_side=True) as s:
            s.recv(1000)
            s.sendall(answer)

    with tcp_server(serve) as port:
        outcome = run_target("https", port, name="portal")
    assert outcome.status is Status.warn and outcome.owner is Owner.it
    assert outcome.metrics["http_status"] == status
    assert outcome.metrics["certificate_trusted"] is False
    assert "trust" in outcome.summary


def test_https_server_error_fails(tmp_path: Path) -> None:
    tls, answer = _tls_server(tmp_path, 503)

    def serve(conn: socket.socket) -> None:
        with tls.wrap_socket(conn, server_side=True) as s:
            s.recv(1000)
            s.sendall(answer)

    with tcp_server(serve) as port:
        outcome = run_target("https", port)
    assert outcome.status is Status.fail and "HTTP 503" in outcome.summary


def test_https_on_a_plain_tcp_port_fails_the_tls_handshake() -> None:
    with tcp_server(greeter) as port:
        outcome = run_target("https", port)
    assert outcome.status is Status.fail and "TLS handshake failed" in outcome.summary


def fake_rdp(conn: socket.socket) -> None:
    """An RDP server's first answer: TPKT + X.224 Connection Confirm + RDP_NEG_RSP (TLS)."""
    request = conn.recv(100)
    assert request[0] == 3 and request[5] == 0xE0  # TPKT, X.224 Connection Request
    neg = struct.pack("<BBHI", 0x02, 0x00, 8, 0x00000001)
    x224 = bytes([6 + len(neg), 0xD0, 0, 0, 0x12, 0x34, 0]) + neg
    conn.sendall(struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224)


def test_rdp_connection_confirm_passes() -> None:
    with tcp_server(fake_rdp) as port:
        outcome = run_target("rdp", port, name="workstation")
    assert outcome.status is Status.passed
    assert "remote desktop workstation" in outcome.summary


@pytest.mark.parametrize("impostor", [greeter, silent])
def test_rdp_port_held_by_something_else_is_told_apart(impostor: object) -> None:
    with tcp_server(impostor) as port:  # type: ignore[arg-type]
        outcome = run_target("rdp", port, budget=1.5)
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "not a remote desktop" in outcome.summary


def test_connection_request_is_tpkt_with_an_rdp_negotiation() -> None:
    packet = reach.rdp_connection_request()
    assert packet[:2] == b"\x03\x00" and struct.unpack(">H", packet[2:4])[0] == len(packet)
    assert packet[5] == 0xE0 and packet[-8:-4] == b"\x01\x00\x08\x00"


def test_dropped_connection_ends_within_the_budget() -> None:
    # a listener whose backlog is full: further SYNs are dropped, connect() gets no answer
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        started = time.monotonic()
        outcome = run_target("tcp", port, budget=1.0)
        assert time.monotonic() - started < 1.5
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert outcome.status is Status.fail and "does not answer" in outcome.summary
