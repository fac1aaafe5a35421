"""bufferbloat in the real lab: the home uplink limited to 5 Mbit/s by tbf, with a deep queue
(500 ms: a bloated link) or a shallow one (5 ms: a well-managed link), the downlink with a
shallow queue in both. The deep queue grades C or worse and warns that calls will break up; the
shallow one grades A or B. The added latency diagnose reports (with --long: 10 s windows) agrees
within 25 % with `ping` through the tunnel while a 4-stream `iperf3` upload fills the same link."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netsetup.diagnose.checks.speed import BLOAT_WARNING
from netsetup.lab import Lab
from netsetup.lab.diagnose import run_diagnose
from netsetup.lab.measure import iperf3_server, median, ping_rtts, start_iperf3

pytestmark = pytest.mark.lab

ASSISTANT = "bloaty-bea"
TOLERANCE = 0.25


def diagnose_bufferbloat(lab: Lab, *args: str) -> dict[str, Any]:
    """bufferbloat's result (`--long` for the accuracy-grade run: 12 s of load each way)."""
    result = run_diagnose(lab, ["--json", "--only", "bufferbloat", *args], timeout=180)
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    found: dict[str, Any] = next(c for c in document["checks"] if c["id"] == "bufferbloat")
    return found


@pytest.fixture(scope="module")
def bea(lab: Lab) -> Iterator[str]:
    assert lab.connect(ASSISTANT, "dedicated").ok
    yield ASSISTANT
    with contextlib.suppress(Exception):
        lab.tunnel_down("home")


@contextlib.contextmanager
def home_link(lab: Lab, up_queue_ms: int) -> Iterator[None]:
    shaped = [
        lab.inject("shape", rate="5mbit", queue_ms=up_queue_ms, direction="up"),
        lab.inject("shape", rate="20mbit", queue_ms=5, direction="down"),
    ]
    try:
        yield
    finally:
        for fault in shaped:
            lab.clear(fault.id)


def ping_added_during_upload(lab: Lab) -> tuple[float, float]:
    """(idle median RTT, median RTT during a 4-stream iperf3 upload), by ping through the tunnel
    to the gateway's tunnel address (the path the witness probes take)."""
    gateway = str(lab.profile().network.gateway_address_v4)
    server = str(next(t.host for t in lab.profile().diagnose.targets if t.kind == "ssh"))
    idle = median(ping_rtts(lab, "home", gateway, count=20))
    with iperf3_server(lab, "office", server):
        load = start_iperf3(lab, "home", server, seconds=14, streams=4)
        try:
            time.sleep(2.0)  # the queue fills; then 10 s, as bufferbloat's --long window
            loaded = median(ping_rtts(lab, "home", gateway, count=100, interval=0.1))
        finally:
            load.wait(30)
    return idle, loaded


def test_a_deep_uplink_queue_grades_c_or_worse_warns_and_agrees_with_ping(
    lab: Lab, bea: str
) -> None:
    with home_link(lab, up_queue_ms=500):
        found = diagnose_bufferbloat(lab, "--long")
        idle, loaded = ping_added_during_upload(lab)
    metrics = found["metrics"]
    ping_added = loaded - idle
    print(
        f"\nbufferbloat, 5 Mbit/s up with a 500 ms queue: grade {metrics.get('grade')}, "
        f"added up {metrics.get('added_up_ms')} ms, down {metrics.get('added_down_ms')} ms; "
        f"ping during iperf3 -P 4 upload: {idle:.1f} -> {loaded:.1f} ms (+{ping_added:.1f})"
    )
    assert found["status"] == "warn", found
    assert metrics["grade"] in ("C", "D", "F")
    assert metrics["worse_direction"] == "upload"
    assert BLOAT_WARNING in found["summary"]
    assert "smart queue management" in found["fix"].lower()
    assert found["owner"] == "assistant"
    assert abs(metrics["added_up_ms"] - ping_added) <= TOLERANCE * ping_added, (
        metrics["added_up_ms"],
        ping_added,
    )


def test_a_shallow_uplink_queue_grades_a_or_b(lab: Lab, bea: str) -> None:
    with home_link(lab, up_queue_ms=5):
        found = diagnose_bufferbloat(lab)
    metrics = found["metrics"]
    print(
        f"\nbufferbloat, 5 Mbit/s up with a 5 ms queue: grade {metrics.get('grade')}, "
        f"added up {metrics.get('added_up_ms')} ms, down {metrics.get('added_down_ms')} ms"
    )
    assert found["status"] == "pass", found
    assert metrics["grade"] in ("A+", "A", "B")
    assert metrics["probes_up"] >= 20 and metrics["probes_down"] >= 20
