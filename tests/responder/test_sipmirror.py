"""The witness's SIP mirror: a valid 200 OK whose body is the request as received, never longer
than the request; over UDP on the witness port and over TCP (the 5060 listener's code)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netsetup.diagnose import sip
from netsetup.responder import sipmirror
from netsetup.responder import witness as witness_module
from netsetup.responder.witness import (
    TCP_MIRROR_CONNECTIONS,
    Witness,
    open_tcp_listeners,
    serve_tcp_mirror,
)

from .support import FakeGateway


def _invite(pad_to: int | None = 1200) -> bytes:
    return sip.invite("udp", ("192.168.1.5", 40000), ("203.0.113.1", 5060), 16384, pad_to).data


def test_the_answer_is_a_valid_200_with_the_transaction_headers_copied() -> None:
    request = _invite()
    answer = sipmirror.mirror(request)
    assert answer is not None and len(answer) <= len(request)
    message = sipmirror.parse_message(answer)
    sent = sipmirror.parse_message(request)
    assert message.start == "SIP/2.0 200 OK"
    for name in ("via", "from", "call-id", "cseq"):
        assert message.all(name) == sent.all(name), name
    assert ";tag=" in (message.first("to") or "")
    assert message.first("content-length") == str(len(message.body))
    mirrored = sipmirror.read_mirror(answer)
    assert mirrored is not None and mirrored.request == request


def test_a_request_too_small_for_its_copy_gets_the_checksum_or_nothing() -> None:
    small = _invite(pad_to=None)  # ~600 bytes: the compressed copy does not fit
    answer = sipmirror.mirror(small)
    assert answer is not None and len(answer) <= len(small)
    mirrored = sipmirror.read_mirror(answer)
    assert mirrored is not None and mirrored.request is None and mirrored.sha256
    bare = b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\nFrom: b\r\nTo: c\r\nCall-ID: d\r\nCSeq: 1 X\r\n\r\n"
    assert sipmirror.mirror(bare) is None  # even the checksum would be longer


def test_responses_and_requests_without_transaction_headers_are_not_answered() -> None:
    request = _invite()
    assert sipmirror.mirror(request.replace(b"Call-ID:", b"X-Call:")) is None
    answer = sipmirror.mirror(request)
    assert answer is not None and sipmirror.mirror(answer) is None
    assert sipmirror.mirror(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 2000) is None


def test_the_witness_mirrors_sip_on_its_udp_port() -> None:
    witness = Witness(FakeGateway(), None)
    request = _invite()
    answer = witness.handle(request, "203.0.113.9", 5060)
    assert answer is not None and sipmirror.read_mirror(answer) is not None


@pytest.fixture
def tcp_mirror() -> Iterator[int]:
    listeners = open_tcp_listeners(["127.0.0.1"], 0)
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_tcp_mirror, args=(Witness(FakeGateway(), None), listeners, stop)
    )
    thread.start()
    try:
        yield int(listeners[0].getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listeners[0].close()


def test_the_tcp_mirror_answers_one_request(tcp_mirror: int) -> None:
    request = sip.invite("tcp", ("127.0.0.1", 1), ("127.0.0.1", tcp_mirror), 16384, 1200).data
    with socket.create_connection(("127.0.0.1", tcp_mirror), timeout=5) as conn:
        conn.sendall(request[:100])  # in pieces, as a stream may deliver it
        conn.sendall(request[100:])
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    mirrored = sipmirror.read_mirror(data)
    assert mirrored is not None and mirrored.request == request
    assert len(data) <= len(request)


def test_the_tcp_mirror_drops_a_broken_request(tcp_mirror: int) -> None:
    with socket.create_connection(("127.0.0.1", tcp_mirror), timeout=8) as conn:
        conn.sendall(b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
        assert conn.recv(4096) == b""  # closed without a word


def _ask_mirror(port: int, source: str) -> bytes:
    request = sip.invite("tcp", (source, 1), ("127.0.0.1", port), 16384, 1200).data
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as c:
        c.sendall(request)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := c.recv(4096):
                data += chunk
    return data


def test_idle_connections_from_one_address_leave_the_mirror_to_others(tcp_mirror: int) -> None:
    held = [
        socket.create_connection(("127.0.0.1", tcp_mirror), timeout=5)
        for _ in range(TCP_MIRROR_CONNECTIONS)
    ]
    try:
        for conn in held:
            with contextlib.suppress(OSError):
                conn.sendall(b"I")  # then silence
        time.sleep(0.3)
        assert sipmirror.read_mirror(_ask_mirror(tcp_mirror, "127.0.0.2")) is not None
    finally:
        for conn in held:
            conn.close()


def test_a_connection_gets_one_deadline_for_its_whole_request(
    tcp_mirror: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender dripping a byte now and then is cut when the total time is up, not given a
    fresh timeout for each read."""
    monkeypatch.setattr(witness_module, "TCP_READ_TIMEOUT_S", 1.0)
    with socket.create_connection(("127.0.0.1", tcp_mirror), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(b"I")
        time.sleep(0.9)
        conn.sendall(b"N")  # just in time for a per-read timeout; then silence
        assert conn.recv(4096) == b""
        assert time.monotonic() - started < 1.5


def test_port_5060_taken_leaves_the_mirror_on_the_witness_port_only() -> None:
    """A PBX on the gateway holds 5060: the witness starts all the same and says why the 5060
    mirror is off (the CLI prints it as a warning)."""
    from types import SimpleNamespace

    from netsetup.responder.witness import SIP_PORT, _mirror_sockets

    profile = SimpleNamespace(mirrors_sip=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        # taken already: by something else, which serves the test as well
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", SIP_PORT))
        udp, tcp, state = _mirror_sockets(profile, ["127.0.0.1"])  # type: ignore[arg-type]
    assert (udp, tcp) == ([], []) and state.startswith(f"not on port {SIP_PORT} (udp")
    off = SimpleNamespace(mirrors_sip=False)
    assert _mirror_sockets(off, ["127.0.0.1"]) == ([], [], "off")  # type: ignore[arg-type]
