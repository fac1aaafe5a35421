"""Issue 4, what must hold 1 and 2 (isolation): a dedicated assistant, through the real tunnel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.lab import Lab, probe
from netsetup.lab.topology import NETNS_ETC

from .conftest import gateway_firewall_removed

pytestmark = pytest.mark.lab


def test_handshake_and_gateway(lab: Lab, connect: Callable[..., str]) -> None:
    connect("maria", "dedicated")
    assert lab.latest_handshake("home") > 0
    profile = lab.profile()
    home = lab.ns("home")
    assert probe.ping(home, str(profile.network.gateway_address_v4), count=2).received == 2
    assert probe.ping(home, str(profile.network.gateway_address_v6), count=2).received == 2
    # the gateway really saw the assistant behind the home router's NAT
    shown = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "endpoints"]).stdout
    assert str(lab.plan.router_wan.v4.ip) in shown


def test_office_services_through_the_tunnel(lab: Lab, connect: Callable[..., str]) -> None:
    connect("maria", "dedicated")
    home = lab.ns("home")
    voip = lab.profile().voip
    assert voip is not None
    for transport in ("udp", "tcp", "tls"):
        port = voip.tls_port if transport == "tls" else voip.sip_port
        reply = probe.sip_options(home, str(voip.sip_server), transport, port)
        assert reply.detail.get("status") == 200, (transport, reply.detail)
    ssh = probe.tcp_banner(home, "192.0.2.31", 22)
    assert str(ssh.detail.get("banner", "")).startswith("SSH-2.0-OpenSSH"), ssh.detail
    files = probe.tcp_banner(home, "192.0.2.30", 445)
    assert "file-service 192.0.2.30:445" in str(files.detail.get("banner")), files.detail
    v6 = probe.tcp_banner(home, "2001:db8:20::1", 22)
    assert str(v6.detail.get("banner", "")).startswith("SSH-"), v6.detail


def test_company_dns_names(lab: Lab, connect: Callable[..., str]) -> None:
    connect("maria", "dedicated")
    home = lab.ns("home")
    for use_tcp in (False, True):
        answer = probe.dns_lookup(home, "192.0.2.53", "files.acme-dental.example", tcp=use_tcp)
        assert answer.detail.get("answers") == ["192.0.2.30"], answer.detail
    # wg-quick's DNS= went through resolvconf into the home namespace's resolv.conf only
    resolv = (NETNS_ETC / lab.ns("home") / "resolv.conf").read_text()
    assert "nameserver 192.0.2.53" in resolv
    assert "192.0.2.53" not in Path("/etc/resolv.conf").read_text()
    # and the system resolver in home uses it: a short name through the search domain
    looked_up = lab.exec("home", ["getent", "ahostsv4", "pbx"])
    assert "192.0.2.40" in looked_up.stdout, looked_up
    # the SSH target answers under its DNS name too (getent then connect)
    name = lab.exec("home", ["getent", "hosts", "files.acme-dental.example"]).stdout
    assert name.startswith("192.0.2.30")


def test_dedicated_peer_cannot_reach_another_peer(lab: Lab, connect: Callable[..., str]) -> None:
    # both assistants route the whole tunnel network into the tunnel: only the gateway can stop them
    everything = "0.0.0.0/0, ::/0"
    connect("maria", "dedicated", host="home", allowed_ips=everything)
    connect("other", "dedicated", host="home2", allowed_ips=everything)
    peers = {p.name: p for p in _peers(lab)}
    home, home2 = lab.ns("home"), lab.ns("home2")
    gateway = str(lab.profile().network.gateway_address_v4)
    # positive control: both are up and reach the gateway and the office
    assert probe.ping(home, gateway).ok and probe.ping(home2, gateway).ok
    assert probe.tcp_banner(home2, "192.0.2.30", 445).ok
    assert probe.ping(home, str(peers["other"].address_v4), count=3, wait=1).received == 0
    assert probe.ping(home2, str(peers["maria"].address_v4), count=3, wait=1).received == 0
    assert probe.ping(home, str(peers["other"].address_v6), count=2, wait=1).received == 0
    route = lab.exec("home", ["ip", "route", "get", str(peers["other"].address_v4)]).stdout
    assert lab.record.clients["home"].interface in route  # it did go into the tunnel
    # control: without the gateway's firewall the same packet gets through, so the firewall is
    # what isolates the peers
    with gateway_firewall_removed(lab):
        assert probe.ping(home, str(peers["other"].address_v4), count=3, wait=1).ok
    assert probe.ping(home, str(peers["other"].address_v4), count=2, wait=1).received == 0


def _peers(lab: Lab) -> list:  # type: ignore[type-arg]
    from netsetup.profile.store import load_peers

    return load_peers(lab.profile())


def test_long_client_host_names_get_their_own_interfaces(
    lab: Lab, connect: Callable[..., str]
) -> None:
    """Two laptops whose names share their first characters: each gets its own tunnel."""
    first = connect("laptop-user-a", "dedicated", host="laptop-a")
    second = connect("laptop-user-b", "dedicated", host="laptop-b")
    assert first != second
    gateway = str(lab.profile().network.gateway_address_v4)
    for host, iface in (("laptop-a", first), ("laptop-b", second)):
        assert lab.latest_handshake(host) > 0
        assert iface in lab.exec(host, ["wg", "show", "interfaces"]).stdout
        assert probe.ping(lab.ns(host), gateway, count=2).received == 2
    names = lab.interface_names()
    assert len(names) == len(set(names)), names
    router_ends = lab.exec("router", ["ip", "-o", "link", "show"]).stdout
    assert router_ends.count("lan-c") >= 2, router_ends


def test_bad_client_host_names_are_refused(lab: Lab) -> None:
    for bad in ("Laptop A", "x" * 40, "gateway", "../etc"):
        with pytest.raises(InputError, match="host"):
            lab.add_client_host(bad)
        assert bad not in lab.record.clients


def test_connect_provisions_once_and_reuses_the_config(lab: Lab) -> None:
    first = lab.connect("reuse-me", "dedicated")
    try:
        assert first.ok and first.provisioned and first.host == "home"
        assert first.config.parent.name == "reuse-me"
        tunnel = lab.status().tunnels["home"]
        assert (tunnel.peer, tunnel.up) == ("reuse-me", True) and tunnel.latest_handshake > 0
        lab.tunnel_down()
        assert lab.status().tunnels["home"].up is False
        again = lab.connect("reuse-me", "dedicated")
        assert again.ok and not again.provisioned and again.config == first.config
        listed = lab.netsetup("list", str(lab.profile_dir), "--json").stdout
        assert listed.count('"reuse-me"') == 1
    finally:
        lab.tunnel_down()
    with pytest.raises(InputError, match="must be 1-32 characters"):
        lab.connect("../reuse-me")
