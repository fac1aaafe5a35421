"""speed.tunnel in the real lab: speedtest-cli (in diagnose's child process) against the office
responder's speed endpoint, through wireguard-go and the gateway's firewall, compared with
`iperf3 -P 4` between the same hosts on a link limited by tbf (so that the two cores do not
decide the result): within 25 % in each direction. And in the lab speed.internet skips (every lab
run is NETSETUP_OFFLINE=1: nothing reaches the internet)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from netsetup.lab import Lab
from netsetup.lab.diagnose import run_diagnose
from netsetup.lab.measure import iperf3, iperf3_server

pytestmark = pytest.mark.lab

ASSISTANT = "speedy-sam"
RATE_MBIT = 10
TOLERANCE = 0.25


def office_host(lab: Lab) -> str:
    """An office address (in the office namespace) a dedicated assistant reaches on any port:
    iperf3 runs there, beside the responder."""
    targets = [t for t in lab.profile().diagnose.targets if t.kind == "ssh"]
    return str(targets[0].host)


def diagnose(lab: Lab, *args: str) -> dict[str, Any]:
    result = run_diagnose(lab, ["--json", "--deadline", "20", *args], timeout=180)
    assert result.returncode in (0, 1), result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def check(document: dict[str, Any], check_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in document["checks"] if c["id"] == check_id)
    return found


@pytest.fixture(scope="module")
def sam(lab: Lab) -> Iterator[str]:
    assert lab.connect(ASSISTANT, "dedicated").ok
    yield ASSISTANT
    with contextlib.suppress(Exception):
        lab.tunnel_down("home")


def test_speed_tunnel_passes_and_speed_internet_skips_in_the_lab(lab: Lab, sam: str) -> None:
    document = diagnose(lab, "--only", "speed.internet,speed.tunnel")
    internet = check(document, "speed.internet")
    assert internet["status"] == "skip", internet
    assert "off in this environment" in internet["summary"]
    tunnel = check(document, "speed.tunnel")
    assert tunnel["status"] == "pass", tunnel
    assert tunnel["metrics"]["download_mbps"] > 1 and tunnel["metrics"]["upload_mbps"] > 1
    assert [p["name"] for p in document["phases"]] == ["connectivity", "voip", "load"]


@pytest.fixture
def limited(lab: Lab) -> Iterator[None]:
    """The home link limited to RATE_MBIT each way, with a short queue."""
    shaped = [
        lab.inject("shape", rate=f"{RATE_MBIT}mbit", queue_ms=50, direction=direction)
        for direction in ("up", "down")
    ]
    try:
        yield
    finally:
        for fault in shaped:
            lab.clear(fault.id)


def within(measured: float, reference: float) -> bool:
    return abs(measured - reference) <= TOLERANCE * reference


def test_speed_tunnel_agrees_with_iperf3_on_a_limited_link(
    lab: Lab, sam: str, limited: None
) -> None:
    document = diagnose(lab, "--only", "speed.tunnel")
    tunnel = check(document, "speed.tunnel")
    assert tunnel["status"] == "pass", tunnel
    down, up = tunnel["metrics"]["download_mbps"], tunnel["metrics"]["upload_mbps"]
    server = office_host(lab)
    with iperf3_server(lab, "office", server):
        iperf_up = iperf3(lab, "home", server, seconds=5).received_bps / 1e6
        iperf_down = iperf3(lab, "home", server, seconds=5, reverse=True).received_bps / 1e6
    print(
        f"\nspeed.tunnel vs iperf3 -P 4 on a {RATE_MBIT} Mbit/s tbf link: "
        f"down {down:.2f} vs {iperf_down:.2f} Mbit/s, up {up:.2f} vs {iperf_up:.2f} Mbit/s"
    )
    # the link, not the CPU, decides: both tools stay below the shaped rate
    assert iperf_up < RATE_MBIT and iperf_down < RATE_MBIT
    assert iperf_up > RATE_MBIT / 2 and iperf_down > RATE_MBIT / 2
    assert within(down, iperf_down), (down, iperf_down)
    assert within(up, iperf_up), (up, iperf_up)
