"""Issue 4, what must hold 2: an agency assistant reaches the portal, DNS and VoIP and nothing
else, enforced by the gateway's firewall even when the client routes everything into the tunnel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netsetup.lab import Lab, probe

from .conftest import gateway_firewall_removed

pytestmark = pytest.mark.lab

OFFICE_V6 = "2001:db8:20::1"  # the office's SSH host over IPv6: not for agency assistants
FORBIDDEN_TCP = [("192.0.2.30", 445), ("192.0.2.31", 22), ("192.0.2.20", 22), ("192.0.2.25", 22)]


def _allowed_work(lab: Lab) -> None:
    home = lab.ns("home")
    portal = probe.tcp_banner(home, "192.0.2.20", 443)
    assert "file-service 192.0.2.20:443" in str(portal.detail.get("banner")), portal.detail
    for transport, port in (("udp", 5060), ("tcp", 5060), ("tls", 5061)):
        reply = probe.sip_options(home, "192.0.2.40", transport, port)
        assert reply.detail.get("status") == 200, (transport, reply.detail)
    answer = probe.dns_lookup(home, "192.0.2.53", "portal.acme-dental.example")
    assert answer.detail.get("answers") == ["192.0.2.20"], answer.detail


def _forbidden_fail(lab: Lab) -> None:
    home = lab.ns("home")
    for host, port in FORBIDDEN_TCP:
        result = probe.tcp_banner(home, host, port, timeout=1.5)
        assert not result.ok, (host, port, result.detail)
    assert probe.ping(home, "192.0.2.30", count=2, wait=1).received == 0
    assert probe.ping(home, "2001:db8:20::1", count=2, wait=1).received == 0


def test_agency_reaches_portal_dns_and_voip_only(lab: Lab, connect: Callable[..., str]) -> None:
    connect("temp", "agency")
    _allowed_work(lab)
    _forbidden_fail(lab)


def test_agency_with_allowedips_everything_still_reaches_nothing_else(
    lab: Lab, connect: Callable[..., str]
) -> None:
    iface = connect("temp", "agency", allowed_ips="0.0.0.0/0, ::/0")
    config = lab.record.clients["home"].config
    assert config is not None and "AllowedIPs = 0.0.0.0/0, ::/0" in Path(config).read_text()
    route = lab.exec("home", ["ip", "route", "get", "192.0.2.30"]).stdout
    assert iface in route, route  # the client does send it into the tunnel
    route6 = lab.exec("home", ["ip", "-6", "route", "get", OFFICE_V6]).stdout
    assert iface in route6, route6  # IPv6 goes into the tunnel too
    _allowed_work(lab)
    _forbidden_fail(lab)
    home = lab.ns("home")
    assert not probe.tcp_banner(home, OFFICE_V6, 22, timeout=1.5).ok
    # control: the same connections work once the gateway's firewall is removed, over IPv4 and
    # IPv6, so it is the gateway that stops them for both families
    with gateway_firewall_removed(lab):
        assert probe.tcp_banner(home, "192.0.2.30", 445).ok
        v6 = probe.tcp_banner(home, OFFICE_V6, 22)
        assert str(v6.detail.get("banner", "")).startswith("SSH-"), v6.detail
    _forbidden_fail(lab)
    assert not probe.tcp_banner(home, OFFICE_V6, 22, timeout=1.5).ok
