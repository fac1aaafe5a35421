"""NS106, NS107, NS113: the ranges an assistant's client routes into the tunnel (its AllowedIPs)."""

from __future__ import annotations

import ipaddress

from netsetup.profile.model import AccessRule
from netsetup.profile.tomlpos import KeyPath
from netsetup.profile.values import IPNetwork
from netsetup.validate.context import (
    Context,
    ProfileEntry,
    indexed_networks,
    indexed_rules,
    tunnel_subnets,
)
from netsetup.validate.findings import Severity
from netsetup.validate.ranges import covers, nested, overlaps
from netsetup.validate.registry import define, profile_check

NESTED = define(
    "NS106",
    "allowedips-nested",
    Severity.WARNING,
    "An entry of access.dedicated, access.agency or voip.media lies inside (or repeats) another "
    "entry of the same list that already allows everything it allows.",
    "The client's AllowedIPs then hold overlapping ranges: the narrower one does nothing, and "
    "whoever narrows the wide entry later believes the narrow one still grants access it never "
    "governed. Keep one entry per range.",
    """
    [access]
    dedicated = ["192.0.2.0/24", "192.0.2.20/32 tcp/443"]
    """,
    """
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
)
HOME_LAN = define(
    "NS107",
    "home-lan-collision",
    Severity.WARNING,
    "A company range (tunnel subnet, access list, DNS server, portal, VoIP) overlaps a network "
    "that home routers use by default, such as 192.168.0.0/24, 192.168.1.0/24, 192.168.178.0/24 or "
    "10.0.0.0/24.",
    "At home the assistant's own LAN has the same addresses: the company hosts in that range "
    "become unreachable, or the home printer and router do. Prefer a less common private range.",
    """
    [access]
    dedicated = ["192.168.1.0/24"]
    """,
    """
    [access]
    dedicated = ["172.22.14.0/24"]
    """,
)
FULL_TUNNEL_V6 = define(
    "NS113",
    "full-tunnel-without-ipv6",
    Severity.ERROR,
    "An access list routes all IPv4 traffic (0.0.0.0/0) into the tunnel but not all IPv6 (::/0).",
    "The assistant believes all traffic goes through the company, while everything that speaks "
    "IPv6 (most large sites, many cloud services) leaves through the home connection.",
    """
    [access]
    dedicated = ["0.0.0.0/0"]
    """,
    """
    [access]
    dedicated = ["0.0.0.0/0", "::/0"]
    """,
)

HOME_LANS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.168.0.0/24",
        "192.168.1.0/24",
        "192.168.2.0/24",
        "192.168.8.0/24",
        "192.168.10.0/24",
        "192.168.50.0/24",
        "192.168.86.0/24",
        "192.168.100.0/24",
        "192.168.178.0/24",
        "192.168.188.0/24",
        "10.0.0.0/24",
        "10.0.1.0/24",
        "10.1.1.0/24",
        "172.16.0.0/24",
    )
)

LISTS = (("access", "dedicated"), ("access", "agency"), ("voip", "media"))


def _rules(entry: ProfileEntry, table: str, key: str) -> list[tuple[int, AccessRule]]:
    if table == "access":
        return indexed_rules(entry, key)
    return [(i, AccessRule(net)) for i, net in indexed_networks(entry, table, key)]


@profile_check
def check_routes(entry: ProfileEntry, ctx: Context) -> None:
    if entry.profile is None:
        return
    routed: list[tuple[KeyPath, IPNetwork]] = []
    for table, key in LISTS:
        rules = _rules(entry, table, key)
        routed.extend(((table, key, i), rule.network) for i, rule in rules)
        _check_nested(entry, ctx, table, key, rules)
        if table == "access":
            _check_full_tunnel(entry, ctx, key, rules)
    # every site's IPv4 tunnel subnet (HOME_LANS are IPv4)
    routed.extend(
        (keypath, subnet)
        for subnet, keypath, _ in tunnel_subnets(entry.profile)
        if subnet.version == 4
    )
    routed.extend(
        (("dns", "servers", i), net) for i, net in indexed_networks(entry, "dns", "servers")
    )
    for index, portal in enumerate(entry.profile.portals):
        routed.append((("portal", index, "host"), ipaddress.ip_network(portal.host)))
    if entry.profile.voip is not None:
        routed.append((("voip", "sip_server"), ipaddress.ip_network(entry.profile.voip.sip_server)))
    for keypath, net in routed:
        if net.prefixlen == 0:
            continue  # a full tunnel: the home LAN's own, more specific route still wins
        home = next((lan for lan in HOME_LANS if overlaps(net, lan)), None)
        if home is not None:
            ctx.report(
                entry.file,
                keypath,
                HOME_LAN.code,
                f"{_dotted(keypath)} {net} overlaps {home}, a common home-router LAN; at home the "
                "assistant could not reach these company hosts (or their own router)",
            )


def _check_nested(
    entry: ProfileEntry, ctx: Context, table: str, key: str, rules: list[tuple[int, AccessRule]]
) -> None:
    for (index, rule), enclosers in nested((rule.network, (i, rule)) for i, rule in rules):
        wide = next(((i, w) for i, w in enclosers if covers(w, rule)), None)
        if wide is None:
            continue
        ctx.report(
            entry.file,
            (table, key, index),
            NESTED.code,
            f"{table}.{key}[{index}] {rule} is inside {table}.{key}[{wide[0]}] {wide[1]}, which "
            "already allows it; remove the narrower entry",
        )


def _check_full_tunnel(
    entry: ProfileEntry, ctx: Context, mode: str, rules: list[tuple[int, AccessRule]]
) -> None:
    full_v4 = [i for i, r in rules if r.network.prefixlen == 0 and r.network.version == 4]
    full_v6 = any(r.network.prefixlen == 0 and r.network.version == 6 for _, r in rules)
    if full_v4 and not full_v6:
        ctx.report(
            entry.file,
            ("access", mode, full_v4[0]),
            FULL_TUNNEL_V6.code,
            f'access.{mode} routes all IPv4 (0.0.0.0/0) but not all IPv6: add "::/0" or IPv6 '
            "traffic leaves outside the tunnel",
        )


def _dotted(keypath: KeyPath) -> str:
    out = ""
    for part in keypath:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
