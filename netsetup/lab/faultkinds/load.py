"""Lab faults for issue 9 (load): `shape`, a home internet link limited by a token bucket.

`tc qdisc replace dev <if> root tbf rate R burst B latency Q` (B 32k, less for a shallow queue:
see `burst_bytes`): on the home router's WAN side
for `up` (what the home sends), on the internet's side toward the home for `down`. A deep queue
(`--queue-ms 500`) is a real bloated link: a full uplink delays every packet behind it by up to
Q ms; a shallow one (5 ms) stands for a well-managed link (it drops instead of queueing). tbf is
what this kernel offers (netem, fq_codel and cake are not built here). The qdisc is deleted on
clear, which puts the interface's default back.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from netsetup.errors import InputError
from netsetup.lab.faults import Fault, Param, Params, define
from netsetup.lab.proc import run

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

RATE = re.compile(r"^([1-9][0-9]{0,5})(kbit|mbit|gbit)$")
BURST = 32 * 1024
MIN_BURST = 4 * 1024  # above one packet and the timer's rate/HZ at these rates
_UNIT = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def burst_bytes(rate: str, queue_ms: int) -> int:
    """32k, but never more than the queue itself holds: tbf queues up to rate * latency + burst,
    so a 32k burst would make a "5 ms" queue at 5 Mbit/s hold ~57 ms."""
    match = RATE.match(rate)
    assert match is not None
    per_s = int(match.group(1)) * _UNIT[match.group(2)] / 8
    return int(max(MIN_BURST, min(BURST, per_s * queue_ms / 1000)))


def shaped_link(lab: Lab, direction: str) -> tuple[str, str]:
    """(namespace, interface) whose egress is the shaped direction."""
    if direction == "up":
        return lab.ns("router"), lab.plan.router_wan.ifname
    return lab.ns("internet"), lab.plan.internet_router.ifname


def _prepare_shape(lab: Lab, fault: Fault) -> Fault:
    rate = str(fault.params["rate"]).lower()
    if not RATE.match(rate):
        raise InputError(f"fault shape: rate must be like 5mbit, 512kbit or 1gbit, not {rate!r}")
    return replace(fault, params={**fault.params, "rate": rate})


def _shape(lab: Lab, fault: Fault) -> Params:
    p = fault.params
    namespace, ifname = shaped_link(lab, p["direction"])
    latency = f"{p['queue_ms']}ms"
    burst = str(burst_bytes(p["rate"], int(p["queue_ms"])))
    qdisc = ["tbf", "rate", p["rate"], "burst", burst, "latency", latency]
    run(["tc", "-n", namespace, "qdisc", "replace", "dev", ifname, "root", *qdisc])
    return {}


def _clear_shape(lab: Lab, fault: Fault) -> None:
    namespace, ifname = shaped_link(lab, fault.params["direction"])
    shown = run(["tc", "-n", namespace, "qdisc", "show", "dev", ifname], check=False).stdout
    if "tbf" in shown:
        run(["tc", "-n", namespace, "qdisc", "del", "dev", ifname, "root"])


define(
    "shape",
    "the home internet link is limited to a rate with a queue of a given depth (tc tbf): a "
    "deep queue is a bloated link, a shallow one a well-managed link",
    params=(
        Param("rate", str, "the link's rate (tc units: 5mbit, 512kbit)", "5mbit"),
        Param("queue_ms", int, "how long the queue may delay a packet, ms", 500, bounds=(1, 5000)),
        Param("direction", str, "up (what the home sends) or down", "up", choices=("up", "down")),
    ),
    describe=lambda p: (
        f"home link {p['direction']} limited to {p['rate']} with a {p['queue_ms']} ms queue"
    ),
    target=lambda p: (p["direction"],),  # one shape per direction: a second would replace it
    prepare=_prepare_shape,
    apply=_shape,
    undo=_clear_shape,
)
