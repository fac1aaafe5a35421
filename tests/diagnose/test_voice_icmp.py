"""ICMP echo without the ping command: the packet format by hand, and a real series to 127.0.0.1
(where this system lets diagnose send echoes at all)."""

from __future__ import annotations

import ipaddress
import struct
import time

import pytest

from netsetup.diagnose.platform.icmp import (
    EchoPlan,
    EchoUnavailable,
    checksum,
    echo_request,
    echo_series,
    parse_echo_reply,
)
from netsetup.diagnose.voice.metrics import summarize_round_trip


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (one's complement: 220d)
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    packet = echo_request(4, 0x1234, 7, b"T" * 8, 200)
    assert checksum(packet) == 0  # a packet with its checksum sums to zero


def test_request_size_and_reply_parsing() -> None:
    token = b"12345678"
    packet = echo_request(4, 0xBEEF, 42, token, 200)
    assert len(packet) + 20 == 200  # the IP packet is 200 bytes
    assert packet[0] == 8
    reply = bytes([0]) + packet[1:]  # type 0: echo reply, as the router sends it back
    assert parse_echo_reply(4, reply, token) == 42
    ip_header = bytes([0x45]) + bytes(19)  # raw sockets (and macOS) hand over the IP header
    assert parse_echo_reply(4, ip_header + reply, token) == 42
    assert parse_echo_reply(4, reply, b"othertok") is None  # someone else's ping
    assert parse_echo_reply(4, packet, token) is None  # our own request, looped back
    assert parse_echo_reply(4, reply[:10], token) is None
    six = echo_request(6, 1, 3, token, 200)
    assert six[0] == 128 and len(six) + 40 == 200
    assert parse_echo_reply(6, bytes([129]) + six[1:], token) == 3
    assert struct.unpack_from("!H", six, 2)[0] == 0  # the kernel fills the ICMPv6 checksum


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_echo_series_on_loopback(address: str) -> None:
    try:
        records = echo_series(
            ipaddress.ip_address(address), EchoPlan(count=20), time.monotonic() + 5
        )
    except EchoUnavailable as exc:
        pytest.skip(str(exc))
    hop = summarize_round_trip(records)
    assert hop.sent == 20 and hop.answered == 20 and hop.loss_pct == 0.0
    assert hop.rtt_ms is not None and hop.rtt_ms > 0


def test_kernel_receive_time_lies_between_send_and_read() -> None:
    import socket

    from netsetup.diagnose.platform import rxtime

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        stamped = rxtime.enable(receiver)
        before = time.monotonic_ns()
        sender.sendto(b"x", receiver.getsockname())  # on loopback, delivered within the call
        sent_from = ("127.0.0.1", sender.getsockname()[1])
        time.sleep(0.05)  # read late on purpose: the kernel's stamp is from the arrival
        data, source, arrived = rxtime.receive(receiver, 64, stamped)
        after = time.monotonic_ns()
    assert data == b"x" and source == sent_from
    assert before <= arrived <= after
    if stamped:  # the arrival, before the sleep: not the moment of reading, after it
        assert after - arrived >= 50_000_000
