"""How fast is `netsetup validate`, next to the floor of just reading and parsing the same files?

    python benchmarks/validate_bench.py [--repeat 5]

Builds a 1,000-peer and a 10,000-peer profile under a temporary folder and prints, side by side in
one run, the medians of:
  - floor: read every file and `tomllib`-parse it, nothing else;
  - validate: `netsetup.validate.validate()` over the same folder (every rule, no findings);
and the ratios against the goals: validate(10k) <= 2x floor(10k), validate(10k) <= 11x validate(1k).
Only documentation addresses and random public keys are used; nothing touches the network.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from netsetup.profile.model import Peer
from netsetup.profile.store import peer_to_toml
from netsetup.validate import validate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GOAL_FLOOR = 2.0
GOAL_SCALE = 11.0

PROFILE = """[company]
name = "Benchmark Co"

[gateway]
endpoint = "vpn.bench.example:51820"
public_key = "{gateway_key}"

[network]
tunnel_v4 = "198.18.0.0/16"
tunnel_v6 = "2001:db8:100::/64"
mtu = 1380
keepalive = 25

[dns]
servers = ["192.0.2.53"]

[access]
dedicated = ["192.0.2.0/24", "2001:db8:20::/64"]
agency = ["192.0.2.20/32 tcp/443"]

[[portal]]
name = "documents"
host = "192.0.2.20"
proto = "tcp"
port = 443

[voip]
sip_server = "192.0.2.40"
rtp_ports = "10000-20000"
"""


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


def build_profile(root: Path, peers: int) -> Path:
    directory = root / f"bench-{peers}"
    (directory / "peers").mkdir(parents=True)
    (directory / "profile.toml").write_text(PROFILE.format(gateway_key=random_key()))
    base_v4 = ipaddress.IPv4Address("198.18.0.10")
    base_v6 = ipaddress.IPv6Address("2001:db8:100::10")
    created = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(peers):
        peer = Peer(
            name=f"assistant-{index:05d}",
            mode="agency" if index % 3 == 0 else "dedicated",
            public_key=random_key(),
            address_v4=base_v4 + index,
            address_v6=base_v6 + index,
            created=created,
            expires=created + timedelta(days=3650) if index % 3 == 0 else None,
        )
        (directory / "peers" / f"{peer.name}.toml").write_text(peer_to_toml(peer))
    return directory


def floor(directory: Path) -> None:
    """The least any validator must do: read every file and parse its TOML."""
    tomllib.loads((directory / "profile.toml").read_bytes().decode("utf-8"))
    for entry in sorted(os.scandir(directory / "peers"), key=lambda e: e.name):
        with open(entry.path, "rb") as handle:
            tomllib.loads(handle.read().decode("utf-8"))


def run_validate(directory: Path) -> None:
    report = validate([directory], now=NOW)
    if report.findings:
        raise SystemExit(f"benchmark profile is not clean: {report.findings[:3]}")


def repeated(action: Callable[[Path], None], directory: Path, times: int) -> float:
    """Mean seconds of `times` back-to-back runs."""
    start = time.perf_counter()
    for _ in range(times):
        action(directory)
    return (time.perf_counter() - start) / times


def interleaved_medians(actions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each action (or the seconds it returns), run in turns so that machine
    noise hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            start = time.perf_counter()
            measured = action()
            elapsed = time.perf_counter() - start
            times[name].append(measured if isinstance(measured, float) else elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netsetup-bench-") as tmp:
        small = build_profile(Path(tmp), 1_000)
        large = build_profile(Path(tmp), 10_000)
        run_validate(small)  # warm imports and the page cache
        floor(large)
        # Each 1k sample is the mean of 10 back-to-back runs: a block as long as one 10k run, so
        # both see the same stretch of machine noise (this VM has slow and fast phases lasting
        # a few hundred ms, which made single 40 ms samples swing the ratio by 30 %).
        results = interleaved_medians(
            {
                "floor 1k": lambda: repeated(floor, small, 10),
                "validate 1k": lambda: repeated(run_validate, small, 10),
                "floor 10k": lambda: floor(large),
                "validate 10k": lambda: run_validate(large),
            },
            args.repeat,
        )
    for name, seconds in results.items():
        print(f"{name:<14} {seconds * 1000:9.1f} ms  (median of {args.repeat})")
    vs_floor = results["validate 10k"] / results["floor 10k"]
    scale = results["validate 10k"] / results["validate 1k"]
    ok_floor = vs_floor <= GOAL_FLOOR
    ok_scale = scale <= GOAL_SCALE
    print(
        f"validate 10k / floor 10k    = {vs_floor:5.2f}x  (goal <= {GOAL_FLOOR:g}x)  "
        f"{'ok' if ok_floor else 'MISSED'}"
    )
    print(
        f"validate 10k / validate 1k  = {scale:5.2f}x  (goal <= {GOAL_SCALE:g}x) "
        f"{'ok' if ok_scale else 'MISSED'}"
    )
    print(
        f"(for context: floor 10k / floor 1k = "
        f"{results['floor 10k'] / results['floor 1k']:5.2f}x, the file system's own scaling)"
    )
    return 0 if ok_floor and ok_scale else 1


if __name__ == "__main__":
    sys.exit(main())
