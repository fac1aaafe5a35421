"""The interfaces check: the uplink, other VPNs, and a home LAN that overlaps the company's routes.

The pure parts are shown on interface lists as psutil reports them on Linux, macOS and Windows;
the check itself runs on this machine's real interfaces (psutil), with AllowedIPs chosen from
what this machine has, so the clash and the clean case both happen for real."""

from __future__ import annotations

import ipaddress
import socket

import psutil

from netsetup.diagnose.checks import interfaces as ifc
from netsetup.diagnose.result import Owner, Status

from .helpers import config_text, context, view

Iface = ifc.Interface


def iface(name: str, *cidrs: str, up: bool = True) -> Iface:
    return Iface(name, up, tuple(ipaddress.ip_interface(c) for c in cidrs))


OURS = [ipaddress.ip_address("198.18.10.2")]
COMPANY = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.18.10.0/24")]


def test_other_vpns_are_found_by_name_and_ours_is_not_counted() -> None:
    found = ifc.other_vpns(
        [
            iface("wg-acme", "198.18.10.2/32"),  # ours: it holds the config's Address
            iface("utun3", "10.8.0.2/32"),  # macOS
            iface("TAP-Windows Adapter V9", "10.9.0.2/24"),
            iface("Cisco AnyConnect Secure Mobility Client", "10.10.0.2/24"),
            iface("tun0", "10.11.0.2/24", up=False),  # down: not in the way
            iface("eth0", "192.168.1.20/24"),
            iface("Wi-Fi", "192.168.1.21/24"),
        ],
        OURS,
    )
    assert found == [
        "utun3",
        "TAP-Windows Adapter V9",
        "Cisco AnyConnect Secure Mobility Client",
    ]


def test_home_lan_overlapping_a_company_route_is_found() -> None:
    interfaces = [
        iface("lo", "127.0.0.1/8"),
        iface("wg-acme", "198.18.10.2/32"),
        iface("eth0", "192.0.2.108/24", "fe80::1/64"),
        iface("wlan0", "192.168.1.20/24"),
    ]
    assert ifc.overlaps(interfaces, COMPANY, OURS) == [("eth0", "192.0.2.0/24", "192.0.2.0/24")]


def test_full_tunnel_default_route_is_not_a_clash() -> None:
    routes = ifc.company_routes([ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])
    assert routes == []


def test_suggested_lan_avoids_the_company() -> None:
    assert ifc.suggest_lan(COMPANY) == "192.168.77.0/24"
    assert ifc.suggest_lan([ipaddress.ip_network("192.168.0.0/16")]) == "10.77.0.0/24"


def _this_machines_uplink() -> tuple[str, ipaddress.IPv4Network]:
    """This machine's interface toward a documentation address, and its LAN."""
    local = ifc.local_address_toward(ifc.ROUTE_PROBE)
    assert local is not None, "this machine has no IPv4 route: the test needs one"
    uplink = ifc.find_uplink(ifc.list_interfaces(), local)
    assert uplink is not None
    lan = next(n.network for n in uplink.networks if str(n.ip) == local)
    assert isinstance(lan, ipaddress.IPv4Network)
    return uplink.name, lan


def _free_network() -> str:
    """A /24 none of this machine's interfaces is in."""
    taken = [
        ipaddress.ip_interface(f"{a.address}/{a.netmask}").network
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET and a.netmask
    ]
    for candidate in ("198.51.100.0/24", "203.0.113.0/24", "198.18.200.0/24"):
        net = ipaddress.ip_network(candidate)
        if not any(net.overlaps(t) for t in taken):
            return candidate
    raise AssertionError("no free documentation network on this machine")


def test_real_interfaces_with_a_company_route_on_the_home_lan_fail_for_the_assistant() -> None:
    name, lan = _this_machines_uplink()
    ctx = context(config_text([], allowed=f"{lan}, 198.18.10.0/24", endpoint="203.0.113.1:51820"))
    (check,) = ifc.checks(ctx)
    outcome = check.run(view(ctx, 2.0))
    assert outcome.status is Status.fail and outcome.owner is Owner.assistant
    assert outcome.metrics["uplink"] == name
    assert outcome.fix and f"from {lan} to e.g." in outcome.fix and "router" in outcome.fix


def test_real_interfaces_without_a_clash_do_not_fail() -> None:
    name, _ = _this_machines_uplink()
    ctx = context(config_text([], allowed=_free_network(), endpoint="203.0.113.1:51820"))
    (check,) = ifc.checks(ctx)
    outcome = check.run(view(ctx, 2.0))
    assert outcome.status in (Status.passed, Status.warn), outcome  # warn: a VPN is up here
    assert outcome.metrics["uplink"] == name and outcome.metrics["overlaps"] == []
