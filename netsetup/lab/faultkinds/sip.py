"""Lab faults for issue 9 (sip): a real SIP ALG in the home router, fragments dropped at the
gateway, and a home router that forgets quiet UDP flows quickly.

- `sip-alg`: the kernel's own SIP helper (nf_conntrack_sip with nf_nat_sip, what consumer
  routers running Linux use) assigned in the router namespace to UDP 5060 from the LAN with an
  nft `ct helper`: with the router's masquerade it rewrites Via, Contact and the SDP's c=/o=/m=
  of SIP leaving the home, as a consumer router's "SIP ALG" does.
- `drop-fragments`: IP fragments arriving from the tunnel are dropped in the gateway at
  prerouting priority -500, before the kernel reassembles them (nf_defrag runs at -400): a
  path that loses fragments, so a ~1,500-byte SIP message over UDP never arrives while TCP
  (segmented, not fragmented) and small packets do.
- `nat-timeout --seconds N`: the router namespace's conntrack UDP timeout
  (`net.netfilter.nf_conntrack_udp_timeout`, what a flow with one exchange gets) is N seconds;
  the value before is restored on clear.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from netsetup.lab.faults import Fault, Param, _drop_table, define, table_name
from netsetup.lab.proc import nft_load, ns_run

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

Params = dict[str, object]
UDP_TIMEOUT = "net.netfilter.nf_conntrack_udp_timeout"


# -- sip-alg ------------------------------------------------------------------------------------


def sip_alg_ruleset(table: str, lan: str) -> str:
    return (
        f"table inet {table} {{\n"
        "\tct helper sip_5060 {\n"
        '\t\ttype "sip" protocol udp;\n'
        "\t\tl3proto ip;\n"
        "\t}\n"
        "\tchain prerouting {\n"
        "\t\ttype filter hook prerouting priority filter; policy accept;\n"
        f'\t\tiifname "{lan}" udp dport 5060 ct helper set "sip_5060"\n'
        "\t}\n"
        "}\n"
    )


def _sip_alg(lab: Lab, fault: Fault) -> Params:
    router = lab.ns("router")
    nft_load(router, sip_alg_ruleset(table_name(fault.id), lab.plan.router_lan.ifname))
    return {}


define(
    "sip-alg",
    "the home router rewrites SIP on UDP 5060 (the kernel's SIP helper, nf_nat_sip): a SIP ALG",
    describe=lambda p: "SIP ALG in the home router (UDP 5060)",
    apply=_sip_alg,
    undo=lambda lab, fault: _drop_table(lab, fault, "router"),
)


# -- drop-fragments ------------------------------------------------------------------------------


def fragments_ruleset(table: str, tunnel: str) -> str:
    return (
        f"table inet {table} {{\n"
        "\tchain prerouting {\n"
        "\t\ttype filter hook prerouting priority -500; policy accept;\n"
        f'\t\tiifname "{tunnel}" ip frag-off & 0x3fff != 0 drop\n'
        f'\t\tiifname "{tunnel}" exthdr frag exists drop\n'
        "\t}\n"
        "}\n"
    )


def _drop_fragments(lab: Lab, fault: Fault) -> Params:
    nft_load(lab.ns("gateway"), fragments_ruleset(table_name(fault.id), lab.gateway_interface))
    return {}


define(
    "drop-fragments",
    "IP fragments from the tunnel are dropped in the gateway (before reassembly): large UDP "
    "messages (a padded SIP INVITE) are lost, TCP and small packets pass",
    describe=lambda p: "fragments from the tunnel dropped in the gateway",
    apply=_drop_fragments,
    undo=lambda lab, fault: _drop_table(lab, fault, "gateway"),
)


# -- nat-timeout ---------------------------------------------------------------------------------


def _read_timeout(lab: Lab) -> int:
    shown = ns_run(lab.ns("router"), ["sysctl", "-n", UDP_TIMEOUT]).stdout.strip()
    return int(shown)


def _set_timeout(lab: Lab, seconds: int) -> None:
    ns_run(lab.ns("router"), ["sysctl", "-q", "-w", f"{UDP_TIMEOUT}={seconds}"])


def _prepare_nat_timeout(lab: Lab, fault: Fault) -> Fault:
    return replace(fault, undo={"udp_timeout": _read_timeout(lab)})


def _nat_timeout(lab: Lab, fault: Fault) -> Params:
    _set_timeout(lab, int(str(fault.params["seconds"])))
    return {}


def _clear_nat_timeout(lab: Lab, fault: Fault) -> None:
    before = fault.undo.get("udp_timeout")
    if isinstance(before, int):
        _set_timeout(lab, before)


define(
    "nat-timeout",
    "the home router forgets a quiet UDP flow after N seconds (conntrack UDP timeout)",
    params=(Param("seconds", int, "seconds a quiet UDP flow is kept", bounds=(1, 600)),),
    describe=lambda p: f"the home router forgets quiet UDP flows after {p['seconds']} s",
    prepare=_prepare_nat_timeout,
    apply=_nat_timeout,
    undo=_clear_nat_timeout,
)
