"""The gateway's nftables ruleset: what each assistant may reach through the tunnel.

The client's AllowedIPs only decide what the assistant's machine routes into the tunnel; anyone can
edit them. This ruleset is the enforcement: everything arriving from the tunnel interface is dropped
unless it is return traffic of an established flow or goes to a destination the sender's mode
allows (`profile.access_for(mode)`, plus DNS and the VoIP path). Peers never reach each other.
Revoked and expired peers are not in the address maps, so their packets fall through to the
final drop.

The output is one `nft -f` file that atomically replaces the `netsetup` table (its name includes
the interface, so two tunnels on one gateway keep separate tables).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from netsetup.profile.model import MODES, AccessRule, Peer, Profile
from netsetup.profile.values import IPNetwork, format_time

_SAFE_COMMENT = re.compile(r"[^A-Za-z0-9 ._:/@()+,-]")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


def table_name(interface: str) -> str:
    """The nftables table that holds the ruleset of one tunnel interface."""
    return "netsetup_" + _SAFE_NAME.sub("_", interface)


def render_firewall(profile: Profile, peers: Sequence[Peer], now: datetime) -> str:
    """nftables ruleset for the gateway of `profile`: one chain per access mode, and a map from
    each active peer's tunnel address to its mode's chain.

    Rules are written once per mode, not once per peer, so the ruleset grows by one map element
    per peer and loads in time linear in the inventory. Load it with `nft -f FILE`; loading again
    replaces the previous version atomically.
    """
    iface = profile.gateway.interface
    table = table_name(iface)
    active = [p for p in peers if p.is_active(now)]
    inactive = [p for p in peers if not p.is_active(now)]
    gateway_addresses: list[str] = [str(profile.network.gateway_address_v4)]
    if profile.network.gateway_address_v6 is not None:
        gateway_addresses.append(str(profile.network.gateway_address_v6))

    lines = [
        f"# netsetup: gateway firewall of {_comment(profile.id)} on {_comment(iface)}",
        f"# rendered {format_time(now)}: {len(active)} active peer(s); "
        f"{len(inactive)} revoked or expired peer(s) get nothing",
        "# load with: nft -f FILE (replaces the previous version atomically)",
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
    ]
    for mode in MODES:
        lines.append(f"\t# what an assistant in {mode} mode may reach")
        lines.append(f"\tchain {mode_chain(mode)} {{")
        lines.extend(f"\t\t{rule}" for rule in peer_rules(profile, mode))
        lines.append("\t}")
        lines.append("")
    lines.append("\t# the active peers, by tunnel address")
    lines.extend(
        f"\t#   {_comment(p.name)} ({p.mode}): {p.address_v4}"
        + (f", {p.address_v6}" if p.address_v6 else "")
        for p in active
    )
    v4_map = [(str(p.address_v4), mode_chain(p.mode), _timeout(p, now)) for p in active]
    v6_map = [
        (str(p.address_v6), mode_chain(p.mode), _timeout(p, now)) for p in active if p.address_v6
    ]
    lines.extend(_map("peers_v4", "ipv4_addr", v4_map))
    lines.extend(_map("peers_v6", "ipv6_addr", v6_map))
    lines += [
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f'\t\tiifname "{iface}" jump from_tunnel',
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f'\t\tiifname "{iface}" jump from_tunnel',
        "\t}",
        "",
        "\t# everything from the tunnel: peers isolated, replies allowed, then the sender's mode",
        "\tchain from_tunnel {",
        f'\t\toifname "{iface}" drop comment "peers never reach each other"',
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
    ]
    lines.extend(_gateway_ping(gateway_addresses))
    lines += [
        "\t\tip saddr vmap @peers_v4",
        "\t\tip6 saddr vmap @peers_v6",
        '\t\tdrop comment "default: unknown, revoked and expired peers get nothing"',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def mode_chain(mode: str) -> str:
    return f"mode_{_SAFE_NAME.sub('_', mode)}"


# Expiry is enforced by the kernel too: a peer's map elements carry a timeout that ends at its
# expiry, so its traffic stops then even if nobody re-renders the gateway (its WireGuard peer
# stays until the next render, but reaches nothing). nft refuses timeouts beyond a few years;
# expiries further out than a year get none and rely on the next render.
MAX_TIMEOUT = timedelta(days=365)


def _timeout(peer: Peer, now: datetime) -> int | None:
    if peer.expires is None or peer.expires - now > MAX_TIMEOUT:
        return None
    return max(1, int((peer.expires - now).total_seconds()))


def _map(name: str, kind: str, entries: list[tuple[str, str, int | None]]) -> list[str]:
    out = [f"\tmap {name} {{", f"\t\ttype {kind} : verdict", "\t\tflags timeout"]
    if entries:
        out.append("\t\telements = {")
        for address, chain, timeout in entries:
            expiry = f" timeout {timeout}s" if timeout is not None else ""
            out.append(f"\t\t\t{address}{expiry} : jump {chain},")
        out.append("\t\t}")
    out.append("\t}")
    return out


def peer_rules(profile: Profile, mode: str) -> list[str]:
    """The accept rules of one mode: its destinations, DNS and the VoIP path."""
    rules: list[str] = []
    for rule in profile.access_for(mode):
        rules.append(_access(rule) + f' comment "{_comment(mode)}: {_comment(str(rule))}"')
    for server in profile.dns.servers:
        rules.append(
            f"{_family(server)} daddr {server} meta l4proto {{ tcp, udp }} th dport 53 "
            'accept comment "DNS"'
        )
    voip = profile.voip
    if voip is not None:
        server = voip.sip_server
        ports: dict[str, set[int]] = {}
        for transport in voip.transports:
            proto = "udp" if transport == "udp" else "tcp"
            port = voip.tls_port if transport == "tls" else voip.sip_port
            ports.setdefault(proto, set()).add(port)
        for proto in sorted(ports):
            rules.append(
                f"{_family(server)} daddr {server} {proto} dport {_set(sorted(ports[proto]))} "
                'accept comment "SIP"'
            )
        low, high = voip.rtp_ports
        for network in voip.media_networks:
            rules.append(
                f'{_family(network)} daddr {network} udp dport {low}-{high} accept comment "RTP"'
            )
    return rules


def _access(rule: AccessRule) -> str:
    match = f"{_family(rule.network)} daddr {rule.network}"
    if rule.proto is None:
        return f"{match} accept"
    if not rule.ports:
        return f"{match} meta l4proto {rule.proto} accept"
    ports = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in rule.ports]
    return f"{match} {rule.proto} dport {_set(ports)} accept"


def _gateway_ping(addresses: list[str]) -> list[str]:
    out = []
    for address in addresses:
        if ipaddress.ip_address(address).version == 4:
            out.append(f"ip daddr {address} icmp type echo-request accept")
        else:
            out.append(f"ip6 daddr {address} icmpv6 type echo-request accept")
    return [f"\t\t{rule}" for rule in out]


def _family(value: IPNetwork | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return "ip" if value.version == 4 else "ip6"


def _set(items: Sequence[object]) -> str:
    if len(items) == 1:
        return str(items[0])
    return "{ " + ", ".join(str(i) for i in items) + " }"


def _comment(text: str) -> str:
    return _SAFE_COMMENT.sub("_", text)[:120]
