"""The voice clients against the real office responder (netsetup.responder.office) served on
127.0.0.1: the probe session's counts and timestamps, and the RTP range both ways."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netsetup.diagnose.voice.metrics import summarize
from netsetup.diagnose.voice.session import ProbePlan, rtp_call, rtp_open, run_probes
from netsetup.responder import office_wire as wire
from netsetup.responder.office import MediaSide, Office, serve
from netsetup.responder.witness import open_sockets

TOKEN = os.urandom(32)
PUBLIC = os.urandom(32)
KEY = wire.peer_key(TOKEN, PUBLIC)
TAG = wire.key_tag(PUBLIC)
RTP = (31000, 31999)


@pytest.fixture
def office() -> Iterator[tuple[str, int]]:
    responder = Office(lambda: {TAG: KEY}, MediaSide(["127.0.0.1"], RTP, 64), None)
    sockets = open_sockets(["127.0.0.1"], 0)
    stop = threading.Event()
    errors: list[BaseException] = []
    thread = threading.Thread(target=serve, args=(responder, sockets, stop, errors.append))
    thread.start()
    try:
        yield ("127.0.0.1", int(sockets[0].getsockname()[1]))
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close()
        assert responder.media is not None
        responder.media.close()
    assert errors == []


def test_probe_session_against_the_office_responder(office: tuple[str, int]) -> None:
    session = wire.OfficeSession(KEY, TAG)
    result = run_probes(office, session, ProbePlan(count=100), time.monotonic() + 10)
    assert result.counts is not None
    assert result.counts.rx_count == 100 and result.counts.tx_count == 100
    m = summarize(result.records, result.counts)
    assert m.answered == 100 and m.loss_up_pct == 0.0 and m.loss_down_pct == 0.0
    assert all(r.t2_ns is not None and r.t3_ns is not None for r in result.records)
    assert all(r.t3_ns >= r.t2_ns for r in result.records if r.t2_ns and r.t3_ns)
    assert m.rtt_ms is not None and m.rtt_ms > 0


def _free_ports(count: int) -> list[int]:
    """Ports of the range nothing here holds (the test binds them as the client)."""
    free = []
    for port in range(RTP[0] + 100, RTP[1]):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        free.append(port)
        if len(free) == count:
            break
    return free


def test_rtp_open_and_call_both_ways(office: tuple[str, int]) -> None:
    session = wire.OfficeSession(KEY, TAG)
    free = _free_ports(6)
    ports = [RTP[0], *free[:3], RTP[1]]
    toward = rtp_open(office, session, "127.0.0.1", ports, 1.0)
    assert toward.answered == tuple(sorted(ports))  # opened and acknowledged from each
    assert toward.reached == tuple(sorted(ports))  # and our datagram to each was answered
    # here the client and the media address share 127.0.0.1: the call uses ports not opened
    back = rtp_call(office, session, "127.0.0.1", free[3:], 1.0)
    assert back.asked == tuple(free[3:])
    assert back.answered == tuple(free[3:])  # the main port listed the ports it called
    assert back.reached == tuple(free[3:])


def test_rtp_ports_outside_the_range_are_not_opened(office: tuple[str, int]) -> None:
    session = wire.OfficeSession(KEY, TAG)
    outside = _free_ports(1)[0] - 5000  # below the range: the responder refuses it
    toward = rtp_open(office, session, "127.0.0.1", [outside], 0.3)
    assert toward.answered == () and toward.reached == ()
