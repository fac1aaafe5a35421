"""The `interfaces` check: the uplink, other VPNs that are up, and a home LAN that clashes.

- The active uplink is the interface of the route toward the gateway's endpoint: a UDP socket
  connect()ed to the endpoint's address picks the local address the system would use (no packet
  is sent), and psutil tells which interface has that address.
- Other VPN interfaces that are up (tun*, utun*, wg*, ppp*, tap*, "TAP-Windows", "Cisco
  AnyConnect" ...) compete with the tunnel for routes and DNS: a warning for the assistant. Our
  own tunnel is the interface holding the config's Address, and is never counted.
- A home LAN that overlaps the company's routes (AllowedIPs) hides the company's hosts behind the
  home network: a failure for the assistant, naming the router setting to change.

Our tunnel missing entirely is not this check's to say (`tunnel.handshake` does).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from netsetup.diagnose.checks.dns import call_with_timeout
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.profile.values import IPAddress, IPNetwork

VPN_NAME = re.compile(
    r"^(tun|utun|wg|ppp|tap|ipsec|gpd|vpn|nordlynx|zt)\d*|tap-windows|anyconnect|cisco|"
    r"wireguard|openvpn|fortinet|globalprotect|pangp|vpn",
    re.IGNORECASE,
)
# where a route lookup goes when the endpoint has no usable address: a documentation address
# (TEST-NET-3); connect() on a UDP socket sends nothing, it only asks the routing table
ROUTE_PROBE = "203.0.113.1"
SUGGESTED_LANS = ("192.168.77.0/24", "192.168.178.0/24", "10.77.0.0/24", "172.16.77.0/24")
RESOLVE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Interface:
    name: str
    up: bool
    networks: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]


def list_interfaces() -> list[Interface]:
    """Every interface with its addresses and prefixes (psutil: Linux, macOS, Windows)."""
    import psutil

    stats = psutil.net_if_stats()
    found: list[Interface] = []
    for name, addresses in psutil.net_if_addrs().items():
        networks = []
        for a in addresses:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            address = a.address.split("%", 1)[0]
            try:
                networks.append(ipaddress.ip_interface(f"{address}/{a.netmask}"))
            except ValueError:
                continue
        up = stats[name].isup if name in stats else False
        found.append(Interface(name, up, tuple(networks)))
    return found


def local_address_toward(address: str) -> str | None:
    """The local address the system would send from toward `address` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 9))
            return str(sock.getsockname()[0]).split("%", 1)[0]
    except OSError:
        return None


def _endpoint_address(ctx: CheckContext) -> str:
    endpoint = ctx.config.endpoint
    if endpoint is None:
        return ROUTE_PROBE
    host = endpoint[0]
    if not isinstance(host, str):
        return str(host)
    try:
        done, found = call_with_timeout(
            lambda: socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP),
            ctx.time_left(RESOLVE_TIMEOUT_S),
        )
    except OSError:
        return ROUTE_PROBE
    return str(found[0][4][0]) if done and found else ROUTE_PROBE


def find_uplink(interfaces: Sequence[Interface], local: str | None) -> Interface | None:
    if local is None:
        return None
    target = ipaddress.ip_address(local)
    return next((i for i in interfaces if any(n.ip == target for n in i.networks)), None)


def is_ours(interface: Interface, tunnel_addresses: Sequence[IPAddress]) -> bool:
    return any(n.ip in tunnel_addresses for n in interface.networks)


def other_vpns(interfaces: Sequence[Interface], ours: Sequence[IPAddress]) -> list[str]:
    return [i.name for i in interfaces if i.up and VPN_NAME.search(i.name) and not is_ours(i, ours)]


def company_routes(allowed: Sequence[IPNetwork]) -> list[IPNetwork]:
    """AllowedIPs without the default routes (a full tunnel overlaps every LAN by design)."""
    return [n for n in allowed if n.prefixlen > 0]


def overlaps(
    interfaces: Sequence[Interface], routes: Sequence[IPNetwork], ours: Sequence[IPAddress]
) -> list[tuple[str, str, str]]:
    """(interface, its LAN, the company route it overlaps) for every clash."""
    found = []
    for i in interfaces:
        if not i.up or is_ours(i, ours):
            continue
        for n in i.networks:
            lan = n.network
            if lan.is_loopback or lan.is_link_local or lan.prefixlen == lan.max_prefixlen:
                continue
            for route in routes:
                if route.version == lan.version and route.overlaps(lan):
                    found.append((i.name, str(lan), str(route)))
    return found


def suggest_lan(routes: Sequence[IPNetwork]) -> str:
    for candidate in SUGGESTED_LANS:
        net = ipaddress.ip_network(candidate)
        if not any(r.version == 4 and r.overlaps(net) for r in routes):
            return candidate
    return SUGGESTED_LANS[0]


class InterfacesCheck(Check):
    id = "interfaces"
    title = "Network interfaces: uplink, other VPNs, home LAN"
    budget_s = 2.0

    def run(self, ctx: CheckContext) -> Outcome:
        interfaces = list_interfaces()
        ours = [a.ip for a in ctx.config.addresses]
        routes = company_routes(ctx.config.allowed_ips)
        local = local_address_toward(_endpoint_address(ctx))
        uplink = find_uplink(interfaces, local)
        metrics: dict[str, Metric] = {
            "uplink": uplink.name if uplink else None,
            "uplink_address": local,
            "tunnel": next((i.name for i in interfaces if is_ours(i, ours)), None),
        }
        clashes = overlaps(interfaces, routes, ours)
        vpns = other_vpns(interfaces, ours)
        metrics.update(other_vpns=vpns, overlaps=[list(c) for c in clashes])
        if clashes:
            return _clash(clashes, routes, metrics)
        if vpns:
            return _other_vpn(vpns, metrics)
        return _healthy(uplink, metrics)


def _clash(
    clashes: list[tuple[str, str, str]], routes: Sequence[IPNetwork], metrics: Mapping[str, Metric]
) -> Outcome:
    name, lan, route = clashes[0]
    suggestion = suggest_lan(routes)
    return Outcome.problem(
        Status.fail,
        f"your home network {lan} (on {name}) overlaps the company's network {route}: "
        "company hosts there cannot be reached",
        f"change your router's home network from {lan} to e.g. {suggestion} "
        "(the router's LAN / DHCP settings), then reconnect",
        Owner.assistant,
        **metrics,
    )


def _other_vpn(vpns: list[str], metrics: Mapping[str, Metric]) -> Outcome:
    listed = ", ".join(vpns)
    return Outcome.problem(
        Status.warn,
        f"another VPN is up ({listed}): it may take the company's routes or DNS",
        f"disconnect the other VPN ({listed}) while you work through the company's tunnel",
        Owner.assistant,
        **metrics,
    )


def _healthy(uplink: Interface | None, metrics: dict[str, Metric]) -> Outcome:
    where = f"through {uplink.name}" if uplink else "(the uplink could not be told)"
    return Outcome(
        Status.passed,
        f"internet {where}; no other VPN up; the home network does not overlap the company's",
        metrics,
    )


@register_family("interfaces")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return (InterfacesCheck(),)
