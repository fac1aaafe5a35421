"""`netsetup apply` of one new peer to a 1,000-peer gateway vs a full restart of its WireGuard.

    sudo python benchmarks/apply_bench.py [--rounds 3] [--peers 1000] [--clients 3] [--json]

Builds a lab from acme-dental (its tunnel widened to a /16 for the peers), puts the agent on the
gateway, writes the peers with netsetup's library and configures the gateway through `apply`;
`--clients` of them are real assistants with their tunnels up (home and further client hosts).
Then, side by side in one run (interleaved rounds, `_common.side_by_side`):

  * `netsetup apply` of one new peer, run by the admin from the office LAN over SSH, as an admin
    waits for it (whole process, wall time);
  * `wg-quick down IFACE && wg-quick up IFACE` on the gateway (in its sshd's mount namespace, on
    the config apply installed): the restart a hand-run deployment does.

For each it counts the live peers (those with a handshake) whose WireGuard session the gateway
reset: their transfer counters went back, or their handshake or endpoint was lost (what a
restart does to every peer; `wg syncconf` keeps the state of the peers it does not change).
Goal: 0 disturbed for apply (and a restart must show its disturbance, or the count measured
nothing). Wall times are for context. Exits 1 with a `goal missed:` line for a missed goal.
Needs root, like the lab; the lab is removed at the end (its removal is checked).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO, Goal, Report, side_by_side

from netsetup.lab import Lab
from netsetup.lab.proc import ns_run
from tests.lab import apply_lab

WIDE_TUNNEL = "198.18.0.0/16"  # room for the peers; the lab's own links use 198.19.0.0/16


def disturbed(lab: Lab, before: dict[str, apply_lab.Session]) -> tuple[int, int]:
    """(how many of the live sessions in `before` the gateway reset, how many there were)."""
    after = apply_lab.sessions(lab.ns("gateway"), lab.gateway_interface)
    return len(apply_lab.sessions_reset(before, after)), len(before)


def live_sessions(lab: Lab) -> dict[str, apply_lab.Session]:
    return apply_lab.sessions(lab.ns("gateway"), lab.gateway_interface)


def make_profile(root: Path) -> Path:
    """acme-dental with a /16 tunnel (its peers are the lab's, written later)."""
    target = root / "acme-dental"
    shutil.copytree(
        REPO / "profiles" / "acme-dental", target, ignore=shutil.ignore_patterns("peers")
    )
    profile = target / "profile.toml"
    profile.write_text(profile.read_text().replace("198.18.10.0/24", WIDE_TUNNEL))
    return target


def wait_sessions(lab: Lab, hosts: list[str], timeout: float = 60.0) -> None:
    """Every client tunnel has a session with the gateway again (after a restart a client
    notices only when its packets go unanswered: a ping from each makes it handshake anew)."""
    gateway = str(lab.profile().network.gateway_address_v4)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(live_sessions(lab)) >= len(hosts):
            return
        for host in hosts:
            ping = ["ping", "-n", "-c", "1", "-W", "1", gateway]
            ns_run(lab.ns(host), ping, check=False)
    raise SystemExit(f"the client tunnels did not all get a session within {timeout:.0f} s")


def build(lab: Lab, peers: int, clients: int) -> list[str]:
    """The gateway with the agent and `peers` peers by `apply`; `clients` tunnels up. Returns
    the client hosts."""
    apply_lab.install_agent(lab)
    names = [f"client-{index}" for index in range(clients)]
    for name in names:
        lab.provision(name, "dedicated", sync=False)
    apply_lab.add_peers(lab, peers - clients)
    result = apply_lab.apply(lab)
    if result.returncode != 0:
        raise SystemExit("the first apply failed:\n" + apply_lab.explain(result))
    hosts = ["home"] + [f"assistant{index}" for index in range(1, clients)]
    for name, host in zip(names, hosts, strict=True):
        if not lab.connect(name, "dedicated", host).ok:
            raise SystemExit(f"no handshake for {name} on {host}")
    return hosts


def contenders(
    lab: Lab, hosts: list[str], counts: dict[str, list[tuple[int, int]]]
) -> dict[str, Callable[[int], float]]:
    interface = lab.gateway_interface

    def apply_one_peer(round_: int) -> float:
        apply_lab.add_peers(lab, 1, stem="bench-new")
        before = live_sessions(lab)
        started = time.perf_counter()
        result = apply_lab.apply(lab)
        elapsed = time.perf_counter() - started
        counts["apply"].append(disturbed(lab, before))
        if result.returncode != 0:
            raise SystemExit("apply failed:\n" + apply_lab.explain(result))
        return elapsed

    def restart(round_: int) -> float:
        before = live_sessions(lab)
        script = f"wg-quick down {interface} && wg-quick up {interface}"
        started = time.perf_counter()
        apply_lab.gateway_run(lab, ["sh", "-c", script], timeout=120)
        elapsed = time.perf_counter() - started
        counts["restart"].append(disturbed(lab, before))
        wait_sessions(lab, hosts)  # the next contender starts with every session up
        return elapsed

    return {"apply": apply_one_peer, "restart": restart}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts: dict[str, list[tuple[int, int]]] = {"apply": [], "restart": []}
    with tempfile.TemporaryDirectory(prefix="netsetup-apply-bench-") as temporary:
        lab = Lab.create(make_profile(Path(temporary)))
        try:
            lab.up()
            hosts = build(lab, args.peers, args.clients)
            wait_sessions(lab, hosts)
            medians = side_by_side(args.rounds, contenders(lab, hosts, counts))
        finally:
            problems = lab.down()
        if problems:
            raise SystemExit(f"the lab was not removed completely: {problems}")
    apply_reset = max(reset for reset, _ in counts["apply"])
    restart_reset = min(reset for reset, _ in counts["restart"])
    live = min(live for _, live in counts["apply"] + counts["restart"])
    if args.json:
        document = {
            "schema": "netsetup.bench.apply/1",
            "peers": args.peers,
            "rounds": args.rounds,
            "median_s": medians,
            "disturbed": {k: [list(pair) for pair in v] for k, v in counts.items()},
        }
        print(json.dumps(document))
    report = Report()
    report.compare(
        f"apply of 1 peer vs wg-quick down+up, {args.peers:,} peers",
        medians["apply"],
        medians["restart"],
        Goal(),
    )
    print(
        f"{'live peers whose session the gateway reset':<58} apply {apply_reset} of {live}, "
        f"restart {restart_reset} of {live} (worst apply round, mildest restart round)",
        flush=True,
    )
    if apply_reset:
        report.missed.append(f"apply reset {apply_reset} of {live} live sessions: goal 0")
    if live == 0 or restart_reset == 0:
        report.missed.append(
            "a restart showed no reset session: the count measured nothing (no live peers?)"
        )
    report.finish()


if __name__ == "__main__":
    main()
