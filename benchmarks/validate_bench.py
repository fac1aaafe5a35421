"""How fast is `netsetup validate`, next to the floor of just reading and parsing the same files?

    python benchmarks/validate_bench.py [--repeat 7]

Builds 10,000-peer profiles in three shapes of peer file, all valid TOML and all clean:
  - canonical: exactly what `netsetup provision` writes;
  - comment: the same with a comment line in the middle and a comment after a value, as a person
    editing the file adds them;
  - crlf: the same with CRLF line endings, as an editor on Windows saves it;
and a 1,000-peer canonical profile. Prints, side by side in one run, the medians of:
  - floor: read every file and `tomllib`-parse it, nothing else (the "tomllib floor");
  - validate: `netsetup.validate.validate()` over the same folder (every rule, no findings);
and the ratios against the goals: validate(10k) <= 1.2x floor(10k) for each shape, and
validate(10k) <= 11x validate(1k). Exits 1 with a "goal missed" line when a goal is missed.
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
GOAL_FLOOR = 1.2
GOAL_SCALE = 11.0


def _commented(text: str) -> str:
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("mode = "))
    lines[at] = lines[at].rstrip("\n") + "  # checked with the office on 2026-01-09\n"
    lines.insert(at + 1, "# laptop replaced in March; same address, new key\n")
    return "".join(lines)


SHAPES: dict[str, Callable[[str], str]] = {
    "canonical": lambda text: text,
    "comment": _commented,
    "crlf": lambda text: text.replace("\n", "\r\n"),
}

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


def build_profile(root: Path, peers: int, shape: str = "canonical") -> Path:
    directory = root / f"bench-{shape}-{peers}"
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
        text = SHAPES[shape](peer_to_toml(peer))
        (directory / "peers" / f"{peer.name}.toml").write_bytes(text.encode("utf-8"))
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
    actions: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="netsetup-bench-") as tmp:
        small = build_profile(Path(tmp), 1_000)
        large = {shape: build_profile(Path(tmp), 10_000, shape) for shape in SHAPES}
        run_validate(small)  # warm imports and the page cache
        for directory in large.values():
            run_validate(directory)  # and checks that every shape is clean
            floor(directory)
        # Each 1k sample is the mean of 10 back-to-back runs: a block as long as one 10k run, so
        # both see the same stretch of machine noise (this VM has slow and fast phases lasting
        # a few hundred ms, which made single 40 ms samples swing the ratio by 30 %).
        actions["validate 1k"] = lambda: repeated(run_validate, small, 10)
        for shape, directory in large.items():
            actions[f"floor 10k {shape}"] = lambda d=directory: floor(d)
            actions[f"validate 10k {shape}"] = lambda d=directory: run_validate(d)
        results = interleaved_medians(actions, args.repeat)
    for name, seconds in results.items():
        print(f"{name:<24} {seconds * 1000:9.1f} ms  (median of {args.repeat})")
    missed: list[str] = []
    print(f"{'shape':<10} {'floor 10k':>10} {'validate 10k':>13} {'ratio':>7}  goal")
    for shape in SHAPES:
        ours, theirs = results[f"validate 10k {shape}"], results[f"floor 10k {shape}"]
        ratio = ours / theirs
        verdict = "ok" if ratio <= GOAL_FLOOR else "MISSED"
        print(
            f"{shape:<10} {theirs * 1000:7.1f} ms {ours * 1000:10.1f} ms {ratio:6.2f}x  "
            f"<= {GOAL_FLOOR:g}x {verdict}"
        )
        if ratio > GOAL_FLOOR:
            missed.append(f"validate 10k / floor 10k ({shape}) = {ratio:.2f}x > {GOAL_FLOOR:g}x")
    scale = results["validate 10k canonical"] / results["validate 1k"]
    print(
        f"validate 10k / validate 1k (canonical) = {scale:5.2f}x  (goal <= {GOAL_SCALE:g}x) "
        f"{'ok' if scale <= GOAL_SCALE else 'MISSED'}"
    )
    if scale > GOAL_SCALE:
        missed.append(f"validate 10k / validate 1k = {scale:.2f}x > {GOAL_SCALE:g}x")
    for line in missed:
        print(f"goal missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
