"""bufferbloat in the real lab: the home uplink limited to 5 Mbit/s by tbf, with a deep queue
(500 ms: a bloated link) or a shallow one (5 ms: a well-managed link), the downlink with a
shallow queue in both. The deep queue grades C or worse and warns that calls will break up; the
shallow one grades A or B. The added latency agrees within 25 % with `ping` run through the
tunnel while a 4-stream `iperf3` upload fills the same link: bufferbloat's own probes during that
very upload (the instrument), and bufferbloat's whole measurement with its own load (the mean of
two --long runs: with a 500 ms tail-drop queue and 4 TCP flows the queue's occupancy swings from
run to run, +91..+353 ms for single runs while tuning, iperf3's +115..+166 ms)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netsetup.diagnose.checks.speed import BLOAT_WARNING
from netsetup.lab import Lab
from netsetup.lab.diagnose import run_diagnose
from netsetup.lab.measure import iperf3_server, median, ping_rtts, start_iperf3
from netsetup.lab.proc import in_ns

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


SAMPLER = """
import json, sys, time
from netsetup.diagnose.bufferbloat import RttSampler
sampler = RttSampler(sys.argv[1], int(sys.argv[2])).start()
time.sleep(float(sys.argv[3]))
sampler.stop()
print(json.dumps([s.rtt_ms for s in sampler.samples if s.rtt_ms is not None]))
"""


def witness_rtts(lab: Lab, seconds: float) -> subprocess.Popen[str]:
    """bufferbloat's own RTT sampler (the witness probes) from the assistant's machine."""
    profile = lab.profile()
    gateway, port = str(profile.network.gateway_address_v4), str(profile.gateway.witness_port)
    argv = [sys.executable, "-c", SAMPLER, gateway, port, f"{seconds:g}"]
    return subprocess.Popen(in_ns(lab.ns("home"), argv), stdout=subprocess.PIPE, text=True)


def added_during_upload(lab: Lab) -> tuple[float, float]:
    """(added latency by the witness probes, by ping), both measured at the same time through
    the tunnel to the gateway, idle and then while a 4-stream iperf3 upload fills the link."""
    gateway = str(lab.profile().network.gateway_address_v4)
    server = str(next(t.host for t in lab.profile().diagnose.targets if t.kind == "ssh"))
    sampler = witness_rtts(lab, 3.0)
    ping_idle = median(ping_rtts(lab, "home", gateway, count=25))
    probe_idle = median(json.loads(sampler.communicate(timeout=30)[0]))
    with iperf3_server(lab, "office", server):
        load = start_iperf3(lab, "home", server, seconds=14, streams=4)
        try:
            time.sleep(2.0)  # the queue fills
            sampler = witness_rtts(lab, 10.0)
            ping_loaded = median(ping_rtts(lab, "home", gateway, count=100, interval=0.1))
            probe_loaded = median(json.loads(sampler.communicate(timeout=30)[0]))
        finally:
            load.wait(30)
    return probe_loaded - probe_idle, ping_loaded - ping_idle


def test_a_deep_uplink_queue_grades_c_or_worse_and_warns(lab: Lab, bea: str) -> None:
    with home_link(lab, up_queue_ms=500):
        found = diagnose_bufferbloat(lab, "--long")
    metrics = found["metrics"]
    print(
        f"\nbufferbloat, 5 Mbit/s up with a 500 ms queue: grade {metrics.get('grade')}, "
        f"added up {metrics.get('added_up_ms')} ms, down {metrics.get('added_down_ms')} ms"
    )
    assert found["status"] == "warn", found
    assert metrics["grade"] in ("C", "D", "F")
    assert metrics["worse_direction"] == "upload"
    assert BLOAT_WARNING in found["summary"]
    assert "smart queue management" in found["fix"].lower()
    assert found["owner"] == "assistant"
    assert metrics["probes_up"] >= 50 and metrics["probes_lost_up"] <= metrics["probes_up"] // 10


def test_the_added_latency_agrees_with_ping_during_an_iperf3_upload(lab: Lab, bea: str) -> None:
    """The instrument: bufferbloat's witness probes and ping, side by side during one 4-stream
    iperf3 upload, see the same added latency (within 25 %). And the whole check (its own load,
    speedtest-cli's 4 streams, the mean of two --long runs) agrees with that ping too."""
    with home_link(lab, up_queue_ms=500):
        probes, ping = added_during_upload(lab)
        runs = [diagnose_bufferbloat(lab, "--long")["metrics"]["added_up_ms"] for _ in range(2)]
    check_mean = sum(runs) / len(runs)
    print(f"\nbufferbloat --long added up {runs} ms (mean {check_mean:.1f}) vs ping {ping:.1f} ms")
    print(f"\nadded during iperf3 -P 4 upload: witness probes {probes:.1f} ms, ping {ping:.1f} ms")
    assert ping > 50, "the upload did not fill the queue: nothing to compare"
    assert abs(probes - ping) <= TOLERANCE * ping, (probes, ping)
    assert abs(check_mean - ping) <= TOLERANCE * ping, (runs, ping)


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
