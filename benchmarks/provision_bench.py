"""Provisioning speed as users meet it: whole processes, measured side by side in one run.

    python benchmarks/provision_bench.py [--rounds 21] [--clock wall|cpu]

Prints medians of interleaved whole-process runs, their ratios and each goal; exits 1 with a
`goal missed:` line for every goal missed:
  * `netsetup provision` vs `wg-meshconf addpeer`, 0 existing peers       (goal <= 1.0x)
  * `netsetup provision` vs `wg-meshconf addpeer`, 1,000 existing peers   (goal <= 0.85x)
  * provision at 10,000 peers, cold address index vs warm                 (goal <= 1.5x)
    (cold: no index file, as in a fresh clone or for another admin; warm: the index of the
    previous run, which is what one admin meets from the second provision on)
  * provision at 10,000 peers vs at 0, warm index                         (goal <= 1.3x)
    and the extra time for 10,000 peers next to its floor: a process that only lists and
    stats 10,000 peer files, minus one that lists none (for context, no goal)
  * `netsetup --help` vs `wg-meshconf --help`                             (goal <= 1.2x)
  * key pairs per second: netsetup (cryptography) vs wireguard_tools      (goal >= 40x)
Both tools run from the console scripts pip installed beside this interpreter (see
_common.console_script). Everything runs on local files in a temporary folder; nothing touches
the network.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common
from _common import (
    REPO,
    Goal,
    Report,
    console_script,
    netsetup_command,
    precompile,
    side_by_side,
    time_process,
)

from netsetup.keys import generate_keypair
from netsetup.profile.model import Peer
from netsetup.profile.store import peer_to_toml
from netsetup.provision.addresses import INDEX_FILE

MESHCONF_FIELDS = [
    "Name", "Address", "Endpoint", "AllowedIPs", "ListenPort", "PersistentKeepalive", "FwMark",
    "PrivateKey", "DNS", "MTU", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig",
]  # fmt: skip


def make_profile(root: Path, existing: int, label: str = "") -> Path:
    """A copy of the example profile with a /16 tunnel and `existing` peer files."""
    target = root / f"bench-{existing}{label}"
    shutil.copytree(
        REPO / "profiles" / "acme-dental", target, ignore=shutil.ignore_patterns("peers")
    )
    text = (target / "profile.toml").read_text().replace("198.18.10.0/24", "198.18.0.0/16")
    (target / "profile.toml").write_text(text)
    peers = target / "peers"
    peers.mkdir()
    network = IPv4Network("198.18.0.0/16")
    public = generate_keypair().public
    now = datetime(2026, 11, 26, tzinfo=UTC)
    for i in range(existing):
        peer = Peer(f"seed-{i}", "dedicated", public, IPv4Address(int(network[2]) + i), None, now)
        (peers / f"seed-{i}.toml").write_text(peer_to_toml(peer))
    return target


def make_meshconf_db(root: Path, existing: int) -> Path:
    path = root / f"mesh-{existing}.csv"
    private = generate_keypair().private.reveal()
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, MESHCONF_FIELDS, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for i in range(existing):
            row = dict.fromkeys(MESHCONF_FIELDS, "")
            address = IPv4Address(int(IPv4Address("198.18.0.2")) + i)
            row.update(Name=f"seed-{i}", Address=f"{address}/16", ListenPort="51820")
            row["PrivateKey"] = private
            writer.writerow(row)
    return path


def keypairs_per_second(make: Callable[[], object], seconds: float = 1.0) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        make()
        count += 1
    return count / (time.perf_counter() - start)


class Runs:
    """The commands compared, each a function of the round that returns seconds."""

    def __init__(self, root: Path, ours: list[str], meshconf: list[str]) -> None:
        self.ours = ours
        self.meshconf = meshconf
        self.env = {
            **os.environ,
            "NETSETUP_STATE_DIR": str(root / "state"),
            "NETSETUP_ACTOR": "bench",
        }
        self.counter = 0
        self.profiles = {
            "0": make_profile(root, 0),
            "1k": make_profile(root, 1000),
            "10k": make_profile(root, 10000),
            "10k-cold": make_profile(root, 10000, "-cold"),
        }
        self.dbs = {n: make_meshconf_db(root, n) for n in (0, 1000)}
        for path in self.profiles.values():  # the first provision builds the index, untimed
            self._provision(path)
            self._provision(path)

    def _provision(self, profile: Path) -> float:
        self.counter += 1
        argv = [*self.ours, "provision", str(profile), f"b{self.counter}", "--mode", "dedicated"]
        return time_process(argv, self.env)

    def netsetup(self, profile: str) -> Callable[[int], float]:
        return lambda _: self._provision(self.profiles[profile])

    def netsetup_cold(self) -> Callable[[int], float]:
        def run(_: int) -> float:
            # untimed: a fresh clone has none
            (self.profiles["10k-cold"] / INDEX_FILE).unlink(missing_ok=True)
            return self._provision(self.profiles["10k-cold"])

        return run

    def stat_floor(self, profile: str) -> Callable[[int], float]:
        """A Python process that only lists peers/ and stats every file: what a warm index
        cannot avoid (a file edited in place changes nothing but its own stat)."""
        code = (
            "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "for name in os.listdir(fd): os.stat(name, dir_fd=fd)"
        )
        argv = [sys.executable, "-c", code, str(self.profiles[profile] / "peers")]
        return lambda _: time_process(argv)

    def meshconf_addpeer(self, existing: int) -> Callable[[int], float]:
        def run(_: int) -> float:
            self.counter += 1
            n = self.counter
            address = f"198.19.{n // 250 % 250}.{n % 250 + 1}/16"
            argv = [*self.meshconf, "-d", str(self.dbs[existing]), "addpeer", f"m{n}",
                    "--address", address, "--endpoint", "vpn.acme-dental.example"]  # fmt: skip
            return time_process(argv)

        return run


def compare_processes(rounds: int, report: Report, runs: Runs) -> None:
    m = side_by_side(
        rounds,
        {
            "ns0": runs.netsetup("0"),
            "wm0": runs.meshconf_addpeer(0),
            "ns1k": runs.netsetup("1k"),
            "wm1k": runs.meshconf_addpeer(1000),
        },
    )
    report.compare(
        "provision vs wg-meshconf addpeer, 0 peers", m["ns0"], m["wm0"], Goal(at_most=1.0)
    )
    report.compare(
        "provision vs wg-meshconf addpeer, 1,000 peers", m["ns1k"], m["wm1k"], Goal(at_most=0.85)
    )
    m = side_by_side(
        rounds,
        {
            "cold": runs.netsetup_cold(),
            "warm": runs.netsetup("10k"),
            "zero": runs.netsetup("0"),
            "stat10k": runs.stat_floor("10k"),
            "stat0": runs.stat_floor("0"),
        },
    )
    report.compare(
        "provision at 10,000 peers, cold index vs warm", m["cold"], m["warm"], Goal(at_most=1.5)
    )
    report.compare(
        "provision at 10,000 peers vs at 0 (warm index)", m["warm"], m["zero"], Goal(at_most=1.3)
    )
    report.compare(
        "  its extra time vs listing + stat of 10,000 files alone",
        m["warm"] - m["zero"],
        m["stat10k"] - m["stat0"],
        Goal(),
    )
    m = side_by_side(
        rounds,
        {
            "ours": lambda _: time_process([*runs.ours, "--help"]),
            "theirs": lambda _: time_process([*runs.meshconf, "--help"]),
        },
    )
    report.compare(
        "netsetup --help vs wg-meshconf --help", m["ours"], m["theirs"], Goal(at_most=1.2)
    )


def compare_keypairs(report: Report) -> None:
    from wireguard_tools import WireguardKey

    def theirs_pair() -> None:
        WireguardKey.generate().public_key()

    # alternate half-second slices so both see the same machine load
    ours_rates, theirs_rates = [], []
    for _ in range(4):
        ours_rates.append(keypairs_per_second(generate_keypair, 0.5))
        theirs_rates.append(keypairs_per_second(theirs_pair, 0.5))
    report.compare(
        "key pairs per second: cryptography vs wireguard_tools",
        statistics.median(ours_rates),
        statistics.median(theirs_rates),
        Goal(at_least=40.0),
        unit="/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time whole processes as the user waits (wall) or by their user + system CPU time "
        "(steadier on a shared machine)",
    )
    args = parser.parse_args()
    _common.CLOCK = args.clock
    meshconf = console_script("wg-meshconf")
    if meshconf is None:
        raise SystemExit("wg-meshconf is not installed: pip install -e '.[dev]'")
    ours = netsetup_command()
    precompile()
    report = Report()
    print(f"{' '.join(ours)} vs {' '.join(meshconf)}", flush=True)
    print(f"medians of {args.rounds} whole-process runs, interleaved, {args.clock} time")
    with tempfile.TemporaryDirectory(prefix="netsetup-bench-") as tmp:
        compare_processes(args.rounds, report, Runs(Path(tmp), ours, meshconf))
    compare_keypairs(report)
    report.finish()


if __name__ == "__main__":
    main()
