"""diagnose's VoIP and speed figures next to the classic tools, in the same lab, side by side.

1. voice.quality's voice-shaped probes (50 a second, ~200 bytes, through the tunnel to the office
   responder): the round trip against `ping -i 0.02` (the same rate) to the same office host, and
   the RFC 3550 jitter against ping's mean deviation (mdev: not the same statistic, shown for
   scale only);
2. speed.tunnel (speedtest-cli, 4 streams, to the office responder) against `iperf3 -P 4`
   between the same hosts, each direction, on a link limited by tbf (10 Mbit/s) so that the
   link, not the CPU, decides.

Needs root, like the lab. Not a test: it prints the figures and ratios; a goal missed (RTT off
by more than max(10 %, 0.5 ms), speed off by more than 25 %) makes it exit 1. The lab is always
removed (and a lab it could not remove stops it with an error).

    sudo python benchmarks/voice_bench.py [--rounds 3] [--profile profiles/acme-dental]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import Goal, Report  # noqa: E402
from netsetup.lab import Lab  # noqa: E402
from netsetup.lab.diagnose import run_diagnose  # noqa: E402
from netsetup.lab.measure import iperf3, iperf3_server  # noqa: E402
from netsetup.lab.proc import in_ns  # noqa: E402

RATE_MBIT = 10
_PING_SUMMARY = re.compile(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms")


def diagnose_checks(lab: Lab, only: str) -> dict[str, dict[str, Any]]:
    result = run_diagnose(lab, ["--json", "--deadline", "20", "--only", only], timeout=240)
    if result.returncode == 2 and "selects no check" in result.stderr:
        return {}  # a check this build does not have
    if result.returncode not in (0, 1):
        raise SystemExit(f"diagnose failed: {result.stderr[-500:]}")
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


def ping_figures(lab: Lab, target: str, count: int = 250) -> tuple[float, float]:
    """(average RTT, mdev) in ms of `ping -i 0.02` (50 a second, as the voice probes)."""
    argv = ["ping", "-n", "-q", "-i", "0.02", "-c", str(count), "-s", "172", target]
    done = subprocess.run(
        in_ns(lab.ns("home"), argv), capture_output=True, text=True, timeout=60, check=False
    )
    match = _PING_SUMMARY.search(done.stdout)
    if match is None:
        raise SystemExit(f"ping gave no summary: {done.stdout[-300:]} {done.stderr[-300:]}")
    return float(match.group(2)), float(match.group(4))


def voice_round(lab: Lab, responder: str) -> tuple[dict[str, Any], tuple[float, float]] | None:
    checks = diagnose_checks(lab, "voice.quality")
    voice = checks.get("voice.quality")
    if voice is None or "rtt_ms" not in voice["metrics"]:
        return None
    return voice["metrics"], ping_figures(lab, responder)


def compare_voice(lab: Lab, report: Report, rounds: int) -> None:
    responder = str(lab.profile().diagnose.responder[0])  # type: ignore[index]
    runs = [voice_round(lab, responder) for _ in range(rounds)]
    found = [r for r in runs if r is not None]
    if not found:
        print("voice.quality is not in this build (or measured nothing): no voice figures")
        return
    rtt = statistics.median(float(m["rtt_ms"]) for m, _ in found)
    ping_rtt = statistics.median(p[0] for _, p in found)
    jitter = statistics.median(
        max(float(m.get("jitter_up_ms") or 0), float(m.get("jitter_down_ms") or 0))
        for m, _ in found
    )
    mdev = statistics.median(p[1] for _, p in found)
    print(f"voice probes vs ping -i 0.02, medians of {len(found)} rounds", flush=True)
    tolerance = max(0.10, 0.5 / ping_rtt) if ping_rtt else 0.10
    report.compare(
        "voice.quality RTT vs ping RTT",
        rtt / 1000,
        ping_rtt / 1000,
        Goal(at_most=1 + tolerance, at_least=1 - tolerance),
    )
    print(
        f"{'voice.quality jitter (worse direction) vs ping mdev':<58} "
        f"{jitter:9.2f} ms vs {mdev:9.2f} ms  (different statistics: for scale)"
    )


def compare_speed(lab: Lab, report: Report) -> None:
    shaped = [
        lab.inject("shape", rate=f"{RATE_MBIT}mbit", queue_ms=50, direction=d)
        for d in ("up", "down")
    ]
    try:
        tunnel = diagnose_checks(lab, "speed.tunnel")["speed.tunnel"]
        if tunnel["status"] != "pass":
            raise SystemExit(f"speed.tunnel did not pass: {tunnel['summary']}")
        server = str(next(t.host for t in lab.profile().diagnose.targets if t.kind == "ssh"))
        with iperf3_server(lab, "office", server):
            up = iperf3(lab, "home", server, seconds=5).received_bps / 1e6
            down = iperf3(lab, "home", server, seconds=5, reverse=True).received_bps / 1e6
    finally:
        for fault in shaped:
            lab.clear(fault.id)
    print(f"speed.tunnel vs iperf3 -P 4 on a {RATE_MBIT} Mbit/s tbf link", flush=True)
    within = Goal(at_most=1.25, at_least=0.75)
    report.compare(
        "speed.tunnel download vs iperf3 -R",
        tunnel["metrics"]["download_mbps"] * 1000,
        down * 1000,
        within,
        unit=" kbit/s",
    )
    report.compare(
        "speed.tunnel upload vs iperf3",
        tunnel["metrics"]["upload_mbps"] * 1000,
        up * 1000,
        within,
        unit=" kbit/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=REPO / "profiles" / "acme-dental")
    args = parser.parse_args()
    lab = Lab.create(args.profile)
    report = Report()
    try:
        lab.up()
        if not lab.connect("voice-bench", "dedicated").ok:
            raise SystemExit("no handshake: the lab is not healthy")
        compare_voice(lab, report, args.rounds)
        compare_speed(lab, report)
    finally:
        problems = lab.down()
        if problems:
            raise SystemExit(f"the lab was not removed completely: {problems}")
    report.finish()


if __name__ == "__main__":
    main()
