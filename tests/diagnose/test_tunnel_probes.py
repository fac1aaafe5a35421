"""The probes under the tunnel checks: the DF bit per platform, the binary search, DNS packets."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time

import pytest

from netsetup.diagnose.platform import net
from netsetup.diagnose.probes import (
    SizeResult,
    dns_answerer,
    dns_query,
    first_answer,
    is_dns_reply,
    largest_passing,
)

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def black_hole(limit: int, lossy: set[int] | None = None) -> tuple[list[int], object]:
    tried: list[int] = []

    def try_size(size: int) -> SizeResult:
        tried.append(size)
        return SizeResult(size, size <= limit and size not in (lossy or set()))

    return tried, try_size


def test_search_ends_at_once_when_the_top_size_passes() -> None:
    tried, try_size = black_hole(1500)
    best, _ = largest_passing(try_size, 576, 1380, time.monotonic() + 5)  # type: ignore[arg-type]
    assert best == 1380 and tried == [1380]


def test_search_finds_the_exact_largest_size() -> None:
    for limit in (576, 577, 1136, 1199, 1379):
        _, try_size = black_hole(limit)
        best, tried = largest_passing(try_size, 576, 1380, time.monotonic() + 5)  # type: ignore[arg-type]
        assert best == limit
        assert len(tried) <= 13  # a binary search (the top size tried twice), not a sweep


def test_one_burst_of_loss_at_the_top_size_is_not_a_black_hole() -> None:
    """All three tries of the first round lost at once (a Wi-Fi hiccup): the top size is tried
    again a moment later before anything is called a black hole."""
    answers = iter([False, True, True])  # 1380 lost once, then 576 and 1380 get through
    tried: list[int] = []

    def try_size(size: int) -> SizeResult:
        tried.append(size)
        return SizeResult(size, next(answers))

    best, _ = largest_passing(try_size, 576, 1380, time.monotonic() + 5)
    assert best == 1380 and tried == [1380, 576, 1380]


def test_search_with_nothing_passing_is_none() -> None:
    _, try_size = black_hole(100)
    assert largest_passing(try_size, 576, 1380, time.monotonic() + 5)[0] is None  # type: ignore[arg-type]


def test_search_stops_at_its_deadline_with_what_it_proved() -> None:
    _, try_size = black_hole(1000)
    best, tried = largest_passing(try_size, 576, 1380, time.monotonic() - 1)  # type: ignore[arg-type]
    assert best is None and len(tried) == 1


def test_dont_fragment_on_this_platform_and_a_reason_elsewhere() -> None:
    if sys.platform.startswith("linux"):
        assert net.dont_fragment_reason() is None
        assert net.dont_fragment_reason(socket.AF_INET6) is None
    reason = net.dont_fragment_reason(platform="plan9")
    assert reason is not None and "plan9" in reason


@pytest.mark.parametrize(
    ("platform", "family", "option"),
    [
        ("linux", socket.AF_INET, (socket.IPPROTO_IP, 10, 2)),
        ("darwin", socket.AF_INET, (socket.IPPROTO_IP, 28, 1)),
        ("win32", socket.AF_INET, (socket.IPPROTO_IP, 14, 1)),
        ("darwin", socket.AF_INET6, (socket.IPPROTO_IPV6, 62, 1)),
    ],
)
def test_df_option_numbers_per_os(platform: str, family: int, option: tuple[int, int, int]) -> None:
    assert net._df_options(family, platform) == [option]


def test_too_big_is_told_apart_from_other_send_errors() -> None:
    import errno

    assert net.is_too_big(OSError(errno.EMSGSIZE, "Message too long"))
    assert not net.is_too_big(OSError(errno.ENETUNREACH, "Network is unreachable"))


def test_route_source_and_the_interface_holding_it() -> None:
    assert net.route_source(LOOPBACK) == LOOPBACK
    found = net.interface_holding([LOOPBACK])
    assert found is not None and found.up and LOOPBACK in found.addresses
    assert net.interface_holding([ipaddress.IPv4Address("192.0.2.254")]) is None


def test_dns_query_and_reply_matching() -> None:
    query = dns_query(0x1234, "files.acme-dental.example")
    assert query[:2] == b"\x12\x34" and b"\x05files" in query
    reply = b"\x12\x34\x81\x83" + b"\0" * 8  # NXDOMAIN: still an answer
    assert is_dns_reply(reply, 0x1234)
    assert not is_dns_reply(reply, 0x1235)
    assert not is_dns_reply(query, 0x1234)  # a query is not a reply


def test_first_answer_from_a_dns_server_on_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        answerer = dns_answerer(LOOPBACK)
        answerer = type(answerer)(answerer.label, LOOPBACK, port, answerer.make)

        def reply() -> None:
            data, peer = server.recvfrom(512)
            server.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

        threading.Thread(target=reply, daemon=True).start()
        answer, sent = first_answer([answerer], 2.0, 0.5)
    assert answer is not None and answer.label == "dns 127.0.0.1" and sent >= 1


def test_first_answer_gives_up_after_the_window() -> None:
    began = time.monotonic()
    answerer = dns_answerer(LOOPBACK)
    silent = type(answerer)(answerer.label, LOOPBACK, 9, answerer.make)
    answer, sent = first_answer([silent], 0.6, 0.2)
    assert answer is None and sent >= 3
    assert 0.55 < time.monotonic() - began < 1.5


def test_a_padded_dns_query_has_the_size_asked_for_and_is_still_a_query() -> None:
    from netsetup.diagnose.probes import dns_sized

    for payload in (100, 548, 1352):
        packet, matches = dns_sized(payload, "files.acme-dental.example")
        assert len(packet) == payload
        assert packet[10:12] == b"\0\1"  # one additional record: the OPT with the padding
        reply = packet[:2] + b"\x81\x80" + packet[4:40]
        assert matches(reply) and not matches(packet)
    with pytest.raises(ValueError):
        dns_sized(20)


def test_df_probe_through_loopback_to_a_dns_server() -> None:
    from netsetup.diagnose.probes import df_probe, dns_sized

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        sizes: list[int] = []

        def reply() -> None:
            data, peer = server.recvfrom(4096)
            sizes.append(len(data))
            server.sendto(data[:2] + b"\x81\x80" + data[4:12], peer)

        threading.Thread(target=reply, daemon=True).start()
        result = df_probe(LOOPBACK, port, 1380, tries=1, timeout=2.0, make=dns_sized)
    assert result.acked and sizes == [1380 - 28]
