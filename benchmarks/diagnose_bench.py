"""`netsetup diagnose` on a healthy lab, side by side in one run with what it replaces.

1. diagnose's run against its longest single check: the checks run concurrently, so the whole run
   should take little more than the slowest one (goal <= 1.3x). Both from the same runs' report.
2. diagnose as a whole process (interpreter start included) against the classic tools run one
   after another for the same questions (goal <= 0.5x): `wg show`, `ping -c 3` to the gateway's
   tunnel address, a DF ping sweep (`ping -M do -s SIZE`), `nc -z` per target, `ssh-keyscan` per
   SSH target, `dig @dns name` per company name.

Needs root, like the lab. Not a test: it prints the ratios and exits 1 when a goal is missed.

    sudo python benchmarks/diagnose_bench.py [--rounds 5] [--profile profiles/acme-dental]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import Goal, Report, side_by_side  # noqa: E402
from netsetup.lab import Lab  # noqa: E402
from netsetup.lab.proc import in_ns  # noqa: E402

# the check families the classic commands answer (wg show, ping, the DF sweep, nc, ssh-keyscan, dig)
CLASSIC_FAMILIES = "interfaces,tunnel,dns,reach,ssh"

# payload sizes of the DF sweep: up to the tunnel MTU's largest ICMP payload (1380 - 28)
DF_SIZES = (1200, 1280, 1320, 1340, 1352)


def classic_commands(lab: Lab, interface: str) -> list[tuple[list[str], bool]]:
    """(argv, must succeed) for each question diagnose answers, as one would ask it by hand."""
    profile = lab.profile()
    gateway = str(profile.network.gateway_address_v4)
    commands: list[tuple[list[str], bool]] = [
        (["wg", "show", interface], True),
        (["ping", "-n", "-c", "3", gateway], True),
    ]
    commands += [
        (["ping", "-n", "-M", "do", "-c", "1", "-W", "1", "-s", str(size), gateway], False)
        for size in DF_SIZES
    ]
    for target in profile.diagnose.targets:
        host, port = str(target.host), str(target.port)
        commands.append((["nc", "-z", "-w", "2", host, port], True))
        if target.kind == "ssh":
            commands.append((["ssh-keyscan", "-T", "2", "-p", port, host], True))
    for server in profile.dns.servers:
        for name, _ in profile.dns.records:
            commands.append((["dig", f"@{server}", name, "+time=2", "+tries=1"], True))
    return commands


def run_in(ns: str, argv: list[str], must_succeed: bool) -> float:
    started = time.perf_counter()
    result = subprocess.run(in_ns(ns, argv), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if must_succeed and result.returncode != 0:
        raise SystemExit(f"classic tool failed: {' '.join(argv)}\n{result.stderr}")
    return elapsed


class DiagnoseRuns:
    """Runs diagnose in the assistant's namespace; keeps each run's report."""

    def __init__(self, lab: Lab, config: Path) -> None:
        self.ns = lab.ns("home")
        # the questions the classic tools below answer: the connectivity checks. The phone and
        # load phases (voice probes, speed, bufferbloat: a minute of measuring by design) have
        # their own benchmark against ping and iperf3 (voice_bench.py)
        self.argv = [sys.executable, "-m", "netsetup", "diagnose", "--config", str(config)]
        self.argv += ["--only", CLASSIC_FAMILIES]
        self.reports: list[dict[str, object]] = []

    def __call__(self, round_: int) -> float:
        started = time.perf_counter()
        result = subprocess.run(
            in_ns(self.ns, [*self.argv, "--json"]), capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - started
        report = json.loads(result.stdout)
        if result.returncode != 0:
            failed = [
                f"  {c['id']}: {c['status']}: {c['summary']}"
                for c in report["checks"]
                if c["status"] in ("fail", "unknown")
            ]
            raise SystemExit("diagnose failed on the healthy lab:\n" + "\n".join(failed))
        self.reports.append(report)
        return elapsed


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def compare(lab: Lab, interface: str, config: Path, rounds: int) -> None:
    diagnose = DiagnoseRuns(lab, config)
    commands = classic_commands(lab, interface)
    ns = lab.ns("home")

    def classic(round_: int) -> float:
        return sum(run_in(ns, argv, must) for argv, must in commands)

    contenders: dict[str, Callable[[int], float]] = {"diagnose": diagnose, "classic": classic}
    medians = side_by_side(rounds, contenders)
    runs = [float(r["duration_s"]) for r in diagnose.reports]  # type: ignore[arg-type]
    longest = [
        max(float(c["duration_s"]) for c in r["checks"])  # type: ignore[attr-defined]
        for r in diagnose.reports
        if r["checks"]
    ]
    if not longest:
        raise SystemExit("diagnose ran no check: nothing to compare")
    checks = len(diagnose.reports[0]["checks"])  # type: ignore[arg-type]
    print(
        f"diagnose: {checks} checks; classic: {len(commands)} commands; "
        f"medians of {rounds} interleaved rounds",
        flush=True,
    )
    report = Report()
    report.compare(
        "diagnose's run vs its longest single check",
        median(runs),
        median(longest),
        Goal(at_most=1.3),
    )
    report.compare(
        "diagnose (whole process) vs the classic tools in a row",
        medians["diagnose"],
        medians["classic"],
        Goal(at_most=0.5),
    )
    report.compare(
        "diagnose's whole process vs its run (start-up cost)",
        medians["diagnose"],
        median(runs),
        Goal(),
    )
    report.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, default=REPO / "profiles" / "acme-dental")
    args = parser.parse_args()
    lab = Lab.create(args.profile)
    try:
        lab.up()
        connected = lab.connect("bench")
        if not connected.ok:
            raise SystemExit("no handshake: the lab is not healthy")
        config = Path(lab.record.clients["home"].config)
        compare(lab, connected.interface, config, args.rounds)
    finally:
        problems = lab.down()
        if problems:
            raise SystemExit(f"the lab was not removed completely: {problems}")


if __name__ == "__main__":
    main()
