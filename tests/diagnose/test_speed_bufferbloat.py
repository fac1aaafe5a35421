"""bufferbloat without a lab: the DSLReports grades, the verdict and its fix, and one real
measurement on the loopback (the gateway witness answering the RTT probes, speedtest-cli in its
child process loading the link) that shows the windows are filled: idle, upload, download."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netsetup.diagnose import bufferbloat
from netsetup.diagnose.bufferbloat import LoadedRtt, Measurement, grade
from netsetup.diagnose.checks.speed import BLOAT_WARNING, judge_bufferbloat
from netsetup.diagnose.result import Owner, Status
from netsetup.diagnose.speed import SpeedChild, SpeedResult
from netsetup.responder.speedhttp import SpeedServer
from netsetup.responder.witness import Limits, Witness, open_sockets, serve

from ..responder.support import FakeGateway


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        (0.0, "A+"),
        (4.9, "A+"),
        (5.0, "A"),
        (29.9, "A"),
        (30.0, "B"),
        (59.9, "B"),
        (60.0, "C"),
        (199.9, "C"),
        (200.0, "D"),
        (399.9, "D"),
        (400.0, "F"),
        (2000.0, "F"),
    ],
)
def test_dslreports_grades(added: float, expected: str) -> None:
    assert grade(added) == expected


def found(idle: list[float], up: list[float], down: list[float]) -> Measurement:
    speed = SpeedResult(download_bps=5e6, upload_bps=5e6)
    return Measurement(
        idle, 0, (LoadedRtt("upload", up, 1, speed), LoadedRtt("download", down, 0, speed))
    )


def test_a_deep_queue_on_the_uplink_warns_with_the_sqm_fix() -> None:
    outcome = judge_bufferbloat(found([10, 11, 12], [300, 320, 340], [15, 16, 17]))
    assert outcome.status is Status.warn
    assert outcome.metrics["grade"] == "D" and outcome.metrics["worse_direction"] == "upload"
    assert outcome.metrics["added_up_ms"] == 309.0 and outcome.metrics["added_down_ms"] == 5.0
    assert BLOAT_WARNING in outcome.summary
    assert outcome.fix is not None and "smart queue management" in outcome.fix.lower()
    assert outcome.owner is Owner.assistant
    assert outcome.metrics["probes_lost_up"] == 1


def test_the_worse_direction_counts() -> None:
    outcome = judge_bufferbloat(found([10, 10, 10], [20, 20], [110, 110]))
    assert outcome.metrics["grade"] == "C" and outcome.metrics["worse_direction"] == "download"
    assert outcome.status is Status.warn and "downloading" in outcome.summary


def test_a_managed_queue_passes() -> None:
    outcome = judge_bufferbloat(found([10, 11, 12], [40, 45, 50], [12, 13]))
    assert outcome.status is Status.passed and outcome.metrics["grade"] == "B"
    assert outcome.fix is None


def test_no_idle_answer_or_no_loaded_answer_is_unknown_not_a_grade() -> None:
    assert judge_bufferbloat(found([], [30], [30])).status is Status.unknown
    outcome = judge_bufferbloat(found([10], [], []))
    assert outcome.status is Status.unknown and "grade" not in outcome.metrics


@pytest.fixture
def witness_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sockets = open_sockets(["127.0.0.1"], port)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(FakeGateway(), Limits()), sockets, stop))
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close()


def test_a_real_measurement_on_the_loopback(
    witness_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bufferbloat, "RAMP_S", 0.3)
    loads: list[str] = []
    with SpeedServer(("127.0.0.1", 0), lambda ticket: ticket == "t") as endpoint:

        def load(direction: str) -> SpeedChild:
            loads.append(direction)
            request = {"mode": "mini", "url": endpoint.url("t"), "length_s": 1.5}
            return SpeedChild({**request, "directions": [direction]})

        measured = bufferbloat.measure(
            "127.0.0.1", witness_port, load, time.monotonic() + 20, idle_s=1.0
        )
    assert loads == ["upload", "download"]
    assert len(measured.idle_ms) >= 5, "the witness answered too few idle probes"
    for loaded in measured.loaded:
        assert loaded.rtts_ms, f"no probe timed while loading {loaded.direction}"
        assert loaded.speed.error is None
    assert measured.loaded[0].speed.upload_bps and measured.loaded[1].speed.download_bps
    outcome = judge_bufferbloat(measured)
    assert outcome.metrics["grade"] in ("A+", "A", "B", "C", "D", "F")
    assert outcome.metrics["idle_probes"] == len(measured.idle_ms)


def test_the_sqm_fix_quotes_the_measured_upload() -> None:
    bloated = found([10, 11, 12], [300, 320, 340], [15, 16, 17])
    assert "about 90 % of your 5 Mbit/s upload" in (judge_bufferbloat(bloated).fix or "")
    line = judge_bufferbloat(bloated, line_up_mbps=42.5)  # speedtest.net's upload, when it ran
    assert "about 90 % of your 42.5 Mbit/s upload" in (line.fix or "")
