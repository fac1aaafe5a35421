"""How long from `netsetup lab up` to the assistant's first WireGuard handshake.

Runs the lab N times (default 3) from acme-dental: build (namespaces, gateway, services), then
`netsetup provision`, `render` + `wg syncconf`, `wg-quick up` in home, first handshake. Prints the
phases of each run and the median. Needs root, like the lab.

    sudo python benchmarks/lab_bench.py [--runs 3] [--profile profiles/acme-dental] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netsetup.lab import Lab  # noqa: E402


def one_run(profile: Path) -> dict[str, float]:
    started = time.monotonic()
    lab = Lab.create(profile)
    try:
        lab.up()
        up = time.monotonic()
        config = lab.provision("bench", "dedicated")
        provisioned = time.monotonic()
        lab.tunnel_up(config)
        tunnel = time.monotonic()
        waited = lab.wait_handshake(timeout=20)
        if waited is None:
            raise SystemExit("no handshake within 20 s")
        done = time.monotonic()
    finally:
        problems = lab.down()
        if problems:
            raise SystemExit(f"the lab was not removed completely: {problems}")
    return {
        "lab_up_s": up - started,
        "provision_and_sync_s": provisioned - up,
        "wg_quick_up_s": tunnel - provisioned,
        "handshake_wait_s": done - tunnel,
        "total_s": done - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=REPO / "profiles" / "acme-dental")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [one_run(args.profile) for _ in range(args.runs)]
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"schema": "netsetup.bench.lab/1", "runs": runs, "median": median}))
        return
    for index, run in enumerate(runs, 1):
        phases = "  ".join(f"{k}={v:.2f}" for k, v in run.items())
        print(f"run {index}: {phases}")
    print(
        f"lab up -> first handshake: median {median['total_s']:.2f} s "
        f"(lab up {median['lab_up_s']:.2f} s, handshake {median['handshake_wait_s']:.3f} s "
        f"after wg-quick up) over {len(runs)} runs"
    )


if __name__ == "__main__":
    main()
