"""Provisioning speed, measured side by side in one run.

    python benchmarks/provision_bench.py [--rounds 15]

Prints medians of whole-process runs and their ratios:
  * `netsetup provision` vs `wg-meshconf addpeer`, 0 and 1,000 existing peers (goal <= 1.0x, 0.7x)
  * `netsetup provision` at 10,000 existing peers vs at 0 (goal <= 1.3x: independent of inventory)
  * `netsetup --help` vs `wg-meshconf --help` (goal <= 1.2x)
  * key pairs per second: netsetup (cryptography) vs WireguardKey.generate() (goal >= 40x)
Everything runs on local files in a temporary folder; nothing touches the network.
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
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO, netsetup_command, precompile, report, side_by_side, time_process

from netsetup.keys import generate_keypair
from netsetup.profile.model import Peer
from netsetup.profile.store import peer_to_toml

MESHCONF_FIELDS = [
    "Name", "Address", "Endpoint", "AllowedIPs", "ListenPort", "PersistentKeepalive", "FwMark",
    "PrivateKey", "DNS", "MTU", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig",
]  # fmt: skip


def make_profile(root: Path, existing: int) -> Path:
    """A copy of the example profile with a /16 tunnel and `existing` peer files."""
    target = root / f"bench-{existing}"
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


def keypairs_per_second(make: object, seconds: float = 1.0) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        make()  # type: ignore[operator]
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    meshconf = shutil.which("wg-meshconf")
    if meshconf is None:
        raise SystemExit("wg-meshconf is not installed: pip install wg-meshconf")
    ours = netsetup_command()
    precompile()
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="netsetup-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "NETSETUP_STATE_DIR": str(root / "state"), "NETSETUP_ACTOR": "bench"}
        profiles = {n: make_profile(root, n) for n in (0, 1000, 10000)}
        dbs = {n: make_meshconf_db(root, n) for n in (0, 1000)}
        for path in profiles.values():  # the address index is a cache: build it once, untimed
            time_process([*ours, "provision", str(path), "warm-up", "--mode", "dedicated"], env)
        counter = {"n": 0}

        def ns(existing: int):  # type: ignore[no-untyped-def]
            def run(_: int) -> float:
                counter["n"] += 1
                name = f"b{counter['n']}"
                args = ["provision", str(profiles[existing]), name, "--mode", "dedicated"]
                return time_process([*ours, *args], env)

            return run

        def wm(existing: int):  # type: ignore[no-untyped-def]
            def run(_: int) -> float:
                counter["n"] += 1
                address = f"198.19.{counter['n'] // 250}.{counter['n'] % 250 + 1}/16"
                argv = [meshconf, "-d", str(dbs[existing]), "addpeer", f"m{counter['n']}",
                        "--address", address, "--endpoint", "vpn.acme-dental.example"]  # fmt: skip
                return time_process(argv)

            return run

        print(f"medians of {args.rounds} whole-process runs, interleaved", flush=True)
        m = side_by_side(
            args.rounds, {"ns0": ns(0), "wm0": wm(0), "ns1k": ns(1000), "wm1k": wm(1000)}
        )
        results.append(
            report("provision vs wg-meshconf addpeer, 0 peers", m["ns0"], m["wm0"], "<= 1.0x")
        )
        results.append(
            report("provision vs wg-meshconf addpeer, 1,000 peers", m["ns1k"], m["wm1k"], "<= 0.7x")
        )
        m = side_by_side(args.rounds, {"ns10k": ns(10000), "ns0": ns(0)})
        results.append(report("provision at 10,000 peers vs at 0", m["ns10k"], m["ns0"], "<= 1.3x"))
        m = side_by_side(
            args.rounds,
            {
                "ours": lambda _: time_process([*ours, "--help"]),
                "theirs": lambda _: time_process([meshconf, "--help"]),
            },
        )
        results.append(
            report("netsetup --help vs wg-meshconf --help", m["ours"], m["theirs"], "<= 1.2x")
        )

    from wireguard_tools import WireguardKey

    def theirs_pair() -> None:
        WireguardKey.generate().public_key()

    # alternate half-second slices so both see the same machine load
    ours_rates, theirs_rates = [], []
    for _ in range(4):
        ours_rates.append(keypairs_per_second(generate_keypair, 0.5))
        theirs_rates.append(keypairs_per_second(theirs_pair, 0.5))
    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    print(
        f"{'key pairs per second: cryptography vs wireguard_tools':<58} {ours_rate:9.0f}/s vs "
        f"{theirs_rate:9.0f}/s  ratio {ours_rate / theirs_rate:5.1f}x  (goal >= 40x)"
    )


if __name__ == "__main__":
    main()
