"""Lab faults for issue 9 (voice): loss whose every drop is counted, loss on the home LAN, and a
blocked RTP range.

- `counted-loss --percent N --direction up|down`: random loss in the internet (like `loss`) with
  two named nftables counters, `seen` (every packet of that direction) and `dropped`, so a test
  compares what diagnose measured with what was really dropped (`loss_counters`);
- `lan-loss --percent N [--direction both|up|down]`: random loss on the home router's LAN side
  (the home Wi-Fi's place): what comes in from the LAN (up) and what goes out to it (down),
  pings to the router included; counted the same way;
- `drop-range --ports A-B [--host office]`: UDP to the ports A-B dropped in a host (the office's
  phone system by default): call audio blocked.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from netsetup.errors import InputError
from netsetup.lab.faults import Fault, Param, Params, _drop_table, define, table_name
from netsetup.lab.proc import nft_load, ns_run

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

PERCENT = Param("percent", int, "percent lost", bounds=(1, 100))


def _chance(percent: int) -> str:
    # `numgen random mod 100` gives 0-99; nft refuses `< 100` as out of range: all is a drop
    return "" if percent == 100 else f"numgen random mod 100 < {percent} "


def counted_table(table: str, matches: list[str], hooks: tuple[str, ...], percent: int) -> str:
    """A table that drops `percent` % of the packets each match selects, at random, counting
    every packet seen (`seen`) and every one dropped (`dropped`)."""
    rules = [
        f'{match} counter name "seen" {_chance(percent)}counter name "dropped" drop'
        for match in matches
    ]
    lines = [f"table inet {table} {{", "\tcounter seen { }", "\tcounter dropped { }"]
    for hook in hooks:
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype filter hook {hook} priority -10; policy accept;",
            *[f"\t\t{r}" for r in rules],
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def loss_counters(lab: Lab, fault: Fault) -> tuple[int, int]:
    """(seen, dropped) packets of a counted-loss or lan-loss fault, from `nft -j`."""
    host = _COUNTED_HOSTS[fault.kind]
    listed = ns_run(lab.ns(host), ["nft", "-j", "list", "table", "inet", table_name(fault.id)])
    counts = {"seen": 0, "dropped": 0}
    for item in json.loads(listed.stdout).get("nftables", []):
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") in counts:
            counts[counter["name"]] = int(counter.get("packets", 0))
    return counts["seen"], counts["dropped"]


# -- counted loss in the internet ------------------------------------------------------------


def _counted_loss(lab: Lab, fault: Fault) -> Params:
    percent, direction = fault.params["percent"], fault.params["direction"]
    toward_home = lab.plan.internet_router.ifname
    match = f'iifname "{toward_home}"' if direction == "up" else f'oifname "{toward_home}"'
    table = counted_table(table_name(fault.id), [match], ("forward",), percent)
    nft_load(lab.ns("internet"), table)
    return {}


define(
    "counted-loss",
    "N % of the packets through the internet in one direction are lost at random, every "
    "packet seen and dropped counted (nft named counters `seen`, `dropped`)",
    params=(
        PERCENT,
        Param("direction", str, "up (home to internet) or down", "up", choices=("up", "down")),
    ),
    describe=lambda p: f"{p['percent']}% counted random loss in the internet ({p['direction']})",
    target=lambda p: None,
    apply=_counted_loss,
    undo=lambda lab, fault: _drop_table(lab, fault, "internet"),
)


# -- loss on the home LAN ---------------------------------------------------------------------


def _lan_loss(lab: Lab, fault: Fault) -> Params:
    percent, direction = fault.params["percent"], fault.params["direction"]
    lan = lab.plan.router_lan.ifname
    up, down = f'iifname "{lan}"', f'oifname "{lan}"'
    matches = {"up": [up], "down": [down], "both": [up, down]}[direction]
    hooks = {"up": ("input", "forward"), "down": ("output", "forward")}.get(
        direction, ("input", "output", "forward")
    )
    nft_load(lab.ns("router"), counted_table(table_name(fault.id), matches, hooks, percent))
    return {}


define(
    "lan-loss",
    "N % of the packets on the home router's LAN side are lost at random (the home Wi-Fi's "
    "place): pings to the router and everything through it; counted like counted-loss",
    params=(
        PERCENT,
        Param("direction", str, "both, up or down", "both", choices=("both", "up", "down")),
    ),
    describe=lambda p: f"{p['percent']}% random loss on the home LAN ({p['direction']})",
    apply=_lan_loss,
    undo=lambda lab, fault: _drop_table(lab, fault, "router"),
)


_COUNTED_HOSTS = {"counted-loss": "internet", "lan-loss": "router"}


# -- a blocked RTP range ------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise InputError(f"fault drop-range: ports must be A-B, not {text!r}") from None
    if not 0 < first <= last < 65536:
        raise InputError(f"fault drop-range: {text!r} is not a range of ports 1-65535")
    return first, last


def _prepare_drop_range(lab: Lab, fault: Fault) -> Fault:
    _port_range(fault.params["ports"])
    host = fault.params["host"]
    if host not in lab.hosts():
        raise InputError(f"fault drop-range: no host {host!r} (hosts: {', '.join(lab.hosts())})")
    return fault


def _drop_range(lab: Lab, fault: Fault) -> Params:
    first, last = _port_range(fault.params["ports"])
    rule = f"udp dport {first}-{last} drop"
    hooks = ("input", "output", "forward")
    lines = [f"table inet {table_name(fault.id)} {{"]
    for hook in hooks:
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype filter hook {hook} priority -10; policy accept;",
            f"\t\t{rule}",
            "\t}",
        ]
    nft_load(lab.ns(fault.params["host"]), "\n".join([*lines, "}"]) + "\n")
    return {}


define(
    "drop-range",
    "UDP to a range of ports (the RTP range) is dropped in a host (default: the office)",
    params=(
        Param("ports", str, "the range, A-B", "10000-20000"),
        Param("host", str, "where (office, gateway ...)", "office"),
    ),
    describe=lambda p: f"udp ports {p['ports']} dropped in {p['host']}",
    target=lambda p: (p["host"], p["ports"]),
    prepare=_prepare_drop_range,
    apply=_drop_range,
    undo=lambda lab, fault: _drop_table(lab, fault, fault.params["host"]),
)
