"""The witness over real sockets on the loopback: the client API against `serve`, and
`netsetup responder` as a process (its key from --key-file when no interface has one)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.keys import fingerprint, generate_keypair
from netsetup.responder import auth
from netsetup.responder.client import KeyMismatch, WitnessStatus, ask_witness, probe
from netsetup.responder.witness import Limits, Witness, open_sockets, serve

from ..cli.support import run_main
from .support import FakeGateway


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[tuple[FakeGateway, int]]:
    gateway = FakeGateway(seen={"127.0.0.1": 2.0})
    port = free_udp_port()
    sockets = open_sockets(["127.0.0.1", "::1"], port)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(gateway, Limits()), sockets, stop))
    thread.start()
    try:
        yield gateway, port
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close()


def test_ask_and_probe_over_v4_and_v6(served: tuple[FakeGateway, int]) -> None:
    gateway, port = served
    client = generate_keypair()
    gateway.handshakes[client.public] = int(time.time()) - 5
    for host in ("127.0.0.1", "::1", "localhost"):
        found = ask_witness(host, port, client.private, gateway.key.public, 2)
        assert isinstance(found, WitnessStatus), host
        assert found.key_state == "active" and found.listen_port == 51820
    found = ask_witness("127.0.0.1", port, client.private, gateway.key.public, 2)
    assert isinstance(found, WitnessStatus) and found.seen_recently is True
    assert found.public_address == "127.0.0.1"
    other = generate_keypair()
    assert ask_witness("::1", port, client.private, other.public, 2) == KeyMismatch(
        fingerprint(gateway.key.public)
    )
    assert probe("127.0.0.1", port, 1400, 2) == 1400
    assert probe("::1", port, 60000, 2) == 60000
    assert probe("127.0.0.1", port, auth.PROBE_MIN_SIZE, 2) == auth.PROBE_MIN_SIZE


def test_no_witness_is_none_within_the_timeout() -> None:
    port = free_udp_port()  # nobody listens there
    client, gateway = generate_keypair(), generate_keypair()
    started = time.monotonic()
    assert ask_witness("127.0.0.1", port, client.private, gateway.public, 0.5) is None
    assert probe("127.0.0.1", port, 100, 0.5) is None
    assert time.monotonic() - started < 1.5
    assert ask_witness("no-such-host.invalid", port, client.private, gateway.public, 0.5) is None


def test_sock_setup_is_called_before_sending(served: tuple[FakeGateway, int]) -> None:
    _, port = served
    seen: list[int] = []
    assert probe("127.0.0.1", port, 500, 2, sock_setup=lambda s: seen.append(s.family)) == 500
    assert seen == [socket.AF_INET]


def _profile_with(acme: Path, port: int, interface: str) -> Path:
    text = (acme / "profile.toml").read_text()
    text = text.replace('interface = "wg0"', f'interface = "{interface}"')
    text = text.replace("listen_port = 51820", f"listen_port = 51820\nwitness_port = {port}")
    (acme / "profile.toml").write_text(text)
    return acme


def test_the_command_serves_with_its_key_file_and_stops_on_sigterm(
    acme: Path, tmp_path: Path
) -> None:
    port = free_udp_port()
    profile = _profile_with(acme, port, "nswtest0")  # an interface no machine has
    gateway, client = generate_keypair(), generate_keypair()
    key_file = tmp_path / "gateway.key"
    key_file.write_text(gateway.private.reveal() + "\n")
    argv = [sys.executable, "-m", "netsetup", "responder", "--profile", str(profile)]
    argv += ["--role", "gateway", "--listen", "127.0.0.1", "--key-file", str(key_file)]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert f"listening on udp 127.0.0.1:{port}" in first, first
        second = process.stderr.readline()
        assert "cannot read the key of nswtest0" in second and "fallback key" in second
        found = ask_witness("127.0.0.1", port, client.private, gateway.public, 3)
        assert isinstance(found, WitnessStatus)
        assert found.key_state == "unknown" and found.seen_recently is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert gateway.private.reveal() not in first + second + err


def test_office_role_without_a_token_says_how_to_get_one(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["responder", "--profile", str(acme), "--role", "office"]
    code, _, err = run_main([*argv, "--listen", f"127.0.0.1:{free_udp_port()}"], capsys)
    assert code == 2 and "no responder token yet" in err


def test_a_profile_without_a_witness_is_refused(
    acme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = _profile_with(acme, 0, "wg0")
    code, _, err = run_main(["responder", "--profile", str(profile), "--role", "gateway"], capsys)
    assert code == 2 and "witness_port = 0" in err


def test_a_wildcard_socket_answers_from_the_address_it_was_asked_on() -> None:
    """A NAT on the way drops an answer from another address of the gateway: on 0.0.0.0 the
    answer must leave from the address the query went to (127.0.0.2 here, where the route back
    would pick 127.0.0.1)."""
    port = free_udp_port()
    sockets = open_sockets(["0.0.0.0", "::"], port)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(FakeGateway(), Limits()), sockets, stop))
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.2", port))  # a connected socket takes answers from there only
            sock.settimeout(2)
            packet = auth.build_probe(100, bytes(range(16)))
            sock.send(packet)
            assert auth.parse_ack(sock.recv(100), bytes(range(16))) == 100
        assert probe("::1", port, 100, 2) == 100
    finally:
        stop.set()
        thread.join(5)
        for one in sockets:
            one.close()


def test_office_default_address_not_on_this_host_says_where_it_came_from(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """acme's [diagnose] responder is 192.0.2.50, which this machine does not have."""
    code, _, err = run_main(["responder", "--profile", str(acme), "--role", "office"], capsys)
    assert code == 2, err
    assert "192.0.2.50 is not an address of this host ([diagnose] responder in" in err
    assert "profile.toml" in err and "give --listen" in err
    assert "cannot assign" not in err.lower()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("bogus:80", "--listen bogus:80: bogus is not an IP address"),
        ("bogus", "--listen bogus:"),
        ("192.0.2.50:4789", "192.0.2.50 is not an address of this host (--listen 192.0.2.50:4789)"),
    ],
)
def test_office_listen_errors_name_the_value_and_the_option(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str], value: str, words: str
) -> None:
    argv = ["responder", "--profile", str(acme), "--role", "office", "--listen", value]
    code, _, err = run_main(argv, capsys)
    assert code == 2 and words in err, err


def test_one_active_peer_is_singular() -> None:
    from netsetup.cli.responder import _peers

    assert _peers(1) == "1 active peer"
    assert _peers(0) == "0 active peers" and _peers(2) == "2 active peers"
