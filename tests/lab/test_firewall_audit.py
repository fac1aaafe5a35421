"""An adversary's look at the gateway's firewall, with real packets: the IPv6 twins of the
enforcement tests (the WAN, the modes, peers, expiry, ICMPv6 errors), the gateway's tunnel
addresses seen from the WAN and the office, what the gateway itself sends into the tunnel and a
PBX on the gateway, spoofed sources the ruleset must drop by itself, the edges of the calls path,
fragments, other tables beside ours, and reloads under a flood. Each blocked packet has a control
that shows the firewall, not the lab, is what blocks it."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from netsetup.gateway.firewall import render_firewall, table_name
from netsetup.lab import Lab, probe
from netsetup.profile.store import load_peer
from netsetup.profile.values import PeerName, format_time

from .conftest import gateway_firewall_removed
from .test_enforcement import (
    EXPIRY_LEAD,
    FILES,
    FLOWS,
    PBX,
    PORTAL,
    RTP_PORT,
    Tool,
    conntrack_kept,
)

pytestmark = pytest.mark.lab

EVERYTHING = "0.0.0.0/0, ::/0"
OFFICE_V6 = "2001:db8:20::1"  # the lab's one office host in the dedicated mode's v6 network
INTERNET_V6 = "2001:db8:ffff::1"  # a host on the WAN side, once it has v6 (see wan_v6)


@pytest.fixture
def tools(lab: Lab) -> Iterator[Callable[..., Tool]]:
    started: list[Tool] = []

    def _start(host: str, *args: str) -> Tool:
        started.append(Tool(lab, host, *args))
        return started[-1]

    yield _start
    for tool in started:
        tool.stop()


def send(
    lab: Lab, host: str, source: str, address: str, port: int, *, sport: int = 0, size: int = 0
) -> bool:
    """One UDP datagram from `source` (port `sport`, `size` bytes); True when it was answered."""
    argv = [sys.executable, str(FLOWS), "send-udp", "--source", source, address, str(port)]
    argv += ["--sport", str(sport), "--size", str(size)]
    return lab.exec(host, argv, timeout=20).ok


@dataclass(frozen=True)
class Addresses:
    v4: str
    v6: str


def peer(lab: Lab, name: str) -> Addresses:
    loaded = load_peer(lab.profile(), PeerName(name))
    assert loaded.address_v6 is not None, "acme gives every peer a v6 address"
    return Addresses(str(loaded.address_v4), str(loaded.address_v6))


def gateway_tunnel(lab: Lab) -> Addresses:
    network = lab.profile().network
    return Addresses(str(network.gateway_address_v4), str(network.gateway_address_v6))


def _link_local(lab: Lab, host: str, device: str) -> str:
    shown = lab.exec(host, ["ip", "-6", "-j", "addr", "show", "dev", device])
    found = [
        str(a["local"])
        for link in json.loads(shown.stdout)
        for a in link.get("addr_info", [])
        if str(a.get("local", "")).startswith("fe80:")
    ]
    assert found, f"no link-local address on {host} {device}: {shown.stdout}"
    return found[0]


def _run(lab: Lab, host: str, *argv: str) -> None:
    done = lab.exec(host, list(argv))
    assert done.ok, f"{host}: {' '.join(argv)}: {done.stderr}"


@pytest.fixture
def wan_routes(lab: Lab) -> Iterator[None]:
    """The WAN side, both families, routes the office, the tunnel subnet and (v6) a host of its
    own through the gateway's WAN address, as any neighbour on the WAN can; the gateway has a v6
    default route back, as a real one would."""
    network = lab.profile().network
    assert network.tunnel_v6 is not None
    gateway_v4 = str(lab.plan.gateway_wan.v4.ip)
    wan, to_gateway = lab.plan.gateway_wan.ifname, lab.plan.internet_gw.ifname
    gateway_ll = ["via", _link_local(lab, "gateway", wan), "dev", to_gateway]
    internet_ll = ["via", _link_local(lab, "internet", to_gateway), "dev", wan]
    setup = [
        ("internet", ["ip", "addr", "add", f"{INTERNET_V6}/128", "dev", "lo"]),
        ("internet", ["ip", "route", "add", "192.0.2.0/24", "via", gateway_v4]),
        ("internet", ["ip", "route", "add", str(network.tunnel_v4), "via", gateway_v4]),
        ("internet", ["ip", "-6", "route", "add", "2001:db8:20::/64", *gateway_ll]),
        ("internet", ["ip", "-6", "route", "add", str(network.tunnel_v6), *gateway_ll]),
        ("gateway", ["ip", "-6", "route", "add", "default", *internet_ll]),
    ]
    for host, argv in setup:
        _run(lab, host, *argv)
    try:
        yield
    finally:
        for host, argv in reversed(setup):
            lab.exec(host, [("del" if word == "add" else word) for word in argv])


def test_the_wan_and_the_office_do_not_reach_the_gateways_tunnel_addresses(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: None
) -> None:
    """Whatever listens on the gateway's tunnel addresses (a resolver for the peers, say) is for
    the tunnel: by Linux's weak host model the WAN and the office would otherwise reach it."""
    connect("desk", "dedicated", allowed_ips=EVERYTHING)
    tunnel = gateway_tunnel(lab)
    services = [tools("gateway", "serve-udp", address, "53") for address in (tunnel.v4, tunnel.v6)]
    wan_v4 = str(lab.plan.internet_gw.v4.ip)
    senders = [
        ("internet", wan_v4, tunnel.v4),
        ("internet", INTERNET_V6, tunnel.v6),
        ("office", FILES[0], tunnel.v4),
        ("office", OFFICE_V6, tunnel.v6),
    ]
    for host, source, address in senders:
        assert not send(lab, host, source, address, 53), (host, address)
    assert probe.ping(lab.ns("internet"), tunnel.v4, count=1, wait=1).received == 0
    assert all(s.seen() == [] for s in services)
    # the tunnel still has its ping, both families, and the gateway reaches its own address
    assert probe.ping(lab.ns("home"), tunnel.v4, count=1).received == 1
    assert probe.ping(lab.ns("home"), tunnel.v6, count=1).received == 1
    assert send(lab, "gateway", tunnel.v4, tunnel.v4, 53)
    assert services[0].seen() == [f"got {tunnel.v4}"]
    # the gateway's other addresses are not the firewall's: its office side answers the WAN,
    # but for SSH, which answers gateway.admin_from only (the lab's: the office LAN)
    lan_side = str(lab.plan.gateway_lan.v4.ip)
    route = ["ip", "route", "add", f"{lan_side}/32", "via", str(lab.plan.gateway_wan.v4.ip)]
    _run(lab, "internet", *route)
    other = tools("gateway", "serve-udp", lan_side, "4001")
    try:
        assert send(lab, "internet", wan_v4, lan_side, 4001)
        assert other.seen() == [f"got {wan_v4}"]
        assert not probe.tcp_banner(lab.ns("internet"), lan_side, 22, timeout=1.5).ok
        assert probe.tcp_banner(lab.ns("office"), lan_side, 22).ok
    finally:
        lab.exec("internet", ["ip", "route", "del", *route[3:]])
    with gateway_firewall_removed(lab):  # control: without it, all four are answered
        for host, source, address in senders:
            assert send(lab, host, source, address, 53), (host, address)


def test_ipv6_the_wan_reaches_neither_the_office_nor_the_peers(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: None
) -> None:
    connect("maria", "dedicated", allowed_ips=EVERYTHING)
    maria = peer(lab, "maria")
    phone = tools("home", "serve-udp", "::", "5060")
    office = tools("office", "serve-udp", OFFICE_V6, "4000")
    assert not send(lab, "internet", INTERNET_V6, OFFICE_V6, 4000)
    assert not send(lab, "internet", INTERNET_V6, maria.v6, 5060)
    assert probe.ping(lab.ns("internet"), OFFICE_V6, count=1, wait=1).received == 0
    # nor does the office reach the WAN through the gateway
    outside = tools("internet", "serve-udp", INTERNET_V6, "4000")
    assert not send(lab, "office", OFFICE_V6, INTERNET_V6, 4000)
    assert phone.seen() == [] and office.seen() == [] and outside.seen() == []
    with gateway_firewall_removed(lab):  # control
        assert send(lab, "internet", INTERNET_V6, OFFICE_V6, 4000)
        send(lab, "internet", INTERNET_V6, maria.v6, 5060)
        assert phone.seen() == [f"got {INTERNET_V6}"]
        assert send(lab, "office", OFFICE_V6, INTERNET_V6, 4000)


def test_ipv6_modes_peers_and_the_office(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """Over v6: the dedicated peer reaches its office network, the agency peer (no v6 in its
    mode) does not; peers never reach each other; an office host does not reach a phone."""
    connect("desk", "dedicated", allowed_ips=EVERYTHING)
    connect("agent", "agency", host="home2", allowed_ips=EVERYTHING)
    desk, agent = peer(lab, "desk"), peer(lab, "agent")
    office = tools("office", "serve-udp", OFFICE_V6, "4000")
    at_desk = tools("home", "serve-udp", "::", "4000")
    at_agent = tools("home2", "serve-udp", "::", "4000")
    assert send(lab, "home", desk.v6, OFFICE_V6, 4000)
    assert office.seen() == [f"got {desk.v6}"]
    assert not send(lab, "home2", agent.v6, OFFICE_V6, 4000)
    assert not send(lab, "home", desk.v6, agent.v6, 4000)
    assert not send(lab, "home2", agent.v6, desk.v6, 4000)
    assert not send(lab, "office", OFFICE_V6, desk.v6, 4000)
    assert probe.ping(lab.ns("home"), agent.v6, count=1, wait=1).received == 0
    assert office.seen() == [] and at_desk.seen() == [] and at_agent.seen() == []
    with gateway_firewall_removed(lab):  # control: the gateway forwards all of it otherwise
        assert send(lab, "home2", agent.v6, OFFICE_V6, 4000)
        send(lab, "home", desk.v6, agent.v6, 4000)
        send(lab, "office", OFFICE_V6, desk.v6, 4000)
        assert at_agent.seen() == [f"got {desk.v6}"]
        assert at_desk.seen() == [f"got {OFFICE_V6}"]


def test_ipv6_expiry_ends_an_open_flow(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    tools("office", "serve-udp", OFFICE_V6, "4000")
    connect("ends-soon-6", "dedicated")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=EXPIRY_LEAD)
    _expire_at(lab, "ends-soon-6", expires)
    lab.load_firewall()
    client = tools("home", "client")
    assert client.ask(f"udp-echo {OFFICE_V6} 4000") == "ok"
    assert datetime.now(UTC) < expires, "the flow was checked too late to count as 'before'"
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1)
    assert client.ask(f"udp-echo {OFFICE_V6} 4000").startswith("fail")
    assert client.ask(f"udp-new {OFFICE_V6} 4000").startswith("fail")
    assert probe.ping(lab.ns("home"), gateway_tunnel(lab).v6, count=1, wait=1).received == 0


def _expire_at(lab: Lab, name: str, when: datetime) -> None:
    """Give a dedicated peer (none expires by default) an expiry, to the second, in its file."""
    path = lab.profile_dir / "peers" / f"{name}.toml"
    text = path.read_text()
    assert "expires" not in text, text
    path.write_text(text.rstrip("\n") + f"\nexpires = {format_time(when)}\n")
    assert load_peer(lab.profile(), PeerName(name)).expires == when


@contextlib.contextmanager
def gateway_accepts_from(lab: Lab, name: str, extra: list[str]) -> Iterator[None]:
    """The gateway's WireGuard takes `extra` sources from the peer's key too: a weaker layer
    than cryptokey routing (an admin's typo in AllowedIPs), so only the ruleset is left."""
    key = load_peer(lab.profile(), PeerName(name)).public_key
    own = peer(lab, name)
    allowed = ",".join([f"{own.v4}/32", f"{own.v6}/128", *extra])
    wg = ["wg", "set", lab.gateway_interface, "peer", key, "allowed-ips"]
    _run(lab, "gateway", *wg, allowed)
    try:
        yield
    finally:
        lab.exec("gateway", [*wg, f"{own.v4}/32,{own.v6}/128"])


def test_a_peer_spoofing_the_pbx_or_a_revoked_address_is_dropped_by_the_ruleset_itself(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """With the PBX's address as its source a peer would call another assistant's phone (or
    leave through the gateway); with a revoked peer's address it would reach the office."""
    connect("spoofer", "dedicated", allowed_ips=EVERYTHING)
    connect("callee", "agency", host="home2", allowed_ips=EVERYTHING)
    callee = peer(lab, "callee")
    revoked = "2001:db8:10::99"  # in the tunnel subnet, no active peer's (say, a revoked one)
    internet = str(lab.plan.internet_router.v4.ip)
    phone = tools("home2", "serve-udp", "0.0.0.0", "5060")
    outside = tools("internet", "serve-udp", internet, "4000")
    office6 = tools("office", "serve-udp", OFFICE_V6, "4000")
    spoofs = [(PBX, callee.v4, 5060), (PBX, internet, 4000), (revoked, OFFICE_V6, 4000)]
    for address in (f"{PBX}/32", f"{revoked}/128"):
        _run(lab, "home", "ip", "addr", "add", address, "dev", "lo")
    try:
        with gateway_accepts_from(lab, "spoofer", [f"{PBX}/32", f"{revoked}/128"]):
            for source, address, port in spoofs:
                send(lab, "home", source, address, port)
            assert phone.seen() == [] and outside.seen() == [] and office6.seen() == []
            with gateway_firewall_removed(lab):  # control: WireGuard alone lets them in now
                for source, address, port in spoofs:
                    send(lab, "home", source, address, port)
                assert phone.seen() == [f"got {PBX}"] and outside.seen() == [f"got {PBX}"]
                assert office6.seen() == [f"got {revoked}"]
    finally:
        for address in (f"{PBX}/32", f"{revoked}/128"):
            lab.exec("home", ["ip", "addr", "del", address, "dev", "lo"])


def test_the_calls_path_is_the_rtp_range_and_the_sip_port_and_not_a_source_port(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """acme's RTP range is 10000-20000: its edges reach the phone, one port beyond does not. A
    source port of 5060 opens nothing, in either direction."""
    connect("phone", "agency", allowed_ips=EVERYTHING)
    phone = peer(lab, "phone")
    inside, outside = (10000, 20000), (9999, 20001, 4000)
    listeners = {p: tools("home", "serve-udp", "0.0.0.0", str(p)) for p in (*inside, *outside)}
    for port in inside:
        assert send(lab, "office", PBX, phone.v4, port), port
    for port in outside:
        assert not send(lab, "office", PBX, phone.v4, port), port
    assert {p: t.seen() for p, t in listeners.items()} == {
        10000: [f"got {PBX}"],
        20000: [f"got {PBX}"],
        9999: [],
        20001: [],
        4000: [],
    }
    # backwards: the phone starts from its SIP port towards the PBX host's other ports
    pbx_other = tools("office", "serve-udp", PBX, "4000")
    assert not send(lab, "home", phone.v4, PBX, 4000, sport=5060)
    assert not send(lab, "home", phone.v4, PBX, 4000, sport=RTP_PORT)
    assert pbx_other.seen() == []
    with gateway_firewall_removed(lab):  # control
        assert send(lab, "home", phone.v4, PBX, 4000, sport=5060)
        assert send(lab, "office", PBX, phone.v4, 20001)


def test_fragments_follow_their_flow(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """A datagram larger than the tunnel's MTU goes as fragments, v4 and v6: the gateway
    reassembles it before the ruleset looks, so an allowed flow's fragments pass and a
    forbidden one's don't."""
    connect("agent", "agency", host="home2", allowed_ips=EVERYTHING)
    connect("desk", "dedicated", allowed_ips=EVERYTHING)
    agent, desk = peer(lab, "agent"), peer(lab, "desk")
    media = tools("office", "serve-udp", PBX, str(RTP_PORT))
    files = tools("office", "serve-udp", FILES[0], str(RTP_PORT))
    office6 = tools("office", "serve-udp", OFFICE_V6, str(RTP_PORT))
    big = 4000  # > the tunnel's MTU of 1380: fragmented
    assert send(lab, "home2", agent.v4, PBX, RTP_PORT, size=big)
    assert send(lab, "home", desk.v6, OFFICE_V6, RTP_PORT, size=big)
    assert media.seen() == [f"got {agent.v4}"] and office6.seen() == [f"got {desk.v6}"]
    assert not send(lab, "home2", agent.v4, FILES[0], RTP_PORT, size=big)
    assert not send(lab, "home2", agent.v6, OFFICE_V6, RTP_PORT, size=big)
    assert files.seen() == [] and office6.seen() == []
    with gateway_firewall_removed(lab):  # control
        assert send(lab, "home2", agent.v4, FILES[0], RTP_PORT, size=big)
        assert send(lab, "home2", agent.v6, OFFICE_V6, RTP_PORT, size=big)


@contextlib.contextmanager
def other_table(lab: Lab, body: str) -> Iterator[None]:
    path = lab.run_dir / "other-table.nft"
    path.write_text(f"table inet other_admin {{\n{body}\n}}\n")
    _run(lab, "gateway", "nft", "-f", str(path))
    try:
        yield
    finally:
        lab.exec("gateway", ["nft", "delete", "table", "inet", "other_admin"])


def test_another_tables_accept_does_not_undo_a_drop_and_untracked_packets_are_dropped(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: None
) -> None:
    """nftables runs every base chain: an accept in another table (before ours, policy accept)
    ends only that chain, so our drops stand. A `notrack` in another table leaves a packet
    without conntrack, and the ruleset then forwards nothing of it (fails closed)."""
    connect("agent", "agency", host="home2", allowed_ips=EVERYTHING)
    agent = peer(lab, "agent")
    files = tools("office", "serve-udp", FILES[0], "4000")
    media = tools("office", "serve-udp", PBX, str(RTP_PORT))
    phone = tools("home2", "serve-udp", "0.0.0.0", "5060")
    permissive = (
        "\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n"
        "\t\taccept\n\t}\n"
        "\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n"
        "\t\taccept\n\t}"
    )
    with other_table(lab, permissive):
        assert not send(lab, "home2", agent.v4, FILES[0], 4000)
        assert not send(lab, "internet", str(lab.plan.internet_gw.v4.ip), agent.v4, 5060)
        assert send(lab, "home2", agent.v4, PBX, RTP_PORT)
    assert files.seen() == [] and phone.seen() == [] and media.seen() == [f"got {agent.v4}"]
    untracked = "\tchain raw {\n\t\ttype filter hook prerouting priority raw; policy accept;\n"
    untracked += f"\t\tip saddr {agent.v4} notrack\n\t}}"
    with other_table(lab, untracked):
        assert not send(lab, "home2", agent.v4, PBX, RTP_PORT)
        assert not send(lab, "home2", agent.v4, FILES[0], 4000)
    assert media.seen() == [] and files.seen() == []


def _counters(lab: Lab, table: str) -> dict[str, int]:
    """Packets counted by the (one) counter rule of each chain of `table` in the gateway."""
    listed = json.loads(lab.exec("gateway", ["nft", "-j", "list", "table", "inet", table]).stdout)
    out = {}
    for item in listed["nftables"]:
        rule = item.get("rule")
        if rule is not None:
            counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
            out[rule["chain"]] = int(counter["packets"])
    return out


def test_a_reload_under_a_flood_lets_nothing_forbidden_through_and_keeps_sessions(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """While `nft -f FILE` reloads the ruleset again and again, an agency peer floods a host its
    mode does not allow: counted just before and just after the ruleset's forward chain, none
    of it gets through (with `policy drop` a few packets did, as each reload's new chain has its
    drop policy only once the old chain is gone). The peer's portal session outlives it all."""
    connect("flooder", "agency", host="home2", allowed_ips=EVERYTHING)
    agent = peer(lab, "flooder")
    client = tools("home2", "client")
    assert client.ask(f"tcp-open {PORTAL[0]} {PORTAL[1]}").startswith("ok")
    match = f"ip saddr {agent.v4} ip daddr {FILES[0]} udp dport 4000 counter"
    meter = "".join(
        f"\tchain {name} {{\n\t\ttype filter hook forward priority {prio}; policy accept;\n"
        f"\t\t{match}\n\t}}\n"
        for name, prio in (("before", -10), ("after", 10))
    )
    path = lab.run_dir / "audit-meter.nft"
    path.write_text(f"table inet audit_meter {{\n{meter}}}\n")
    _run(lab, "gateway", "nft", "-f", str(path))
    ruleset = str(lab.run_dir / "gateway" / "firewall.nft")
    argv = [sys.executable, str(FLOWS), "blast", "--source", agent.v4, FILES[0], "4000", "8"]
    flood = threading.Thread(target=lambda: lab.exec("home2", argv, timeout=30))
    try:
        flood.start()
        reloads = 0
        while flood.is_alive() and reloads < 300:
            _run(lab, "gateway", "nft", "-f", ruleset)
            reloads += 1
        flood.join()
        counted = _counters(lab, "audit_meter")
    finally:
        lab.exec("gateway", ["nft", "delete", "table", "inet", "audit_meter"])
    assert reloads >= 50, reloads
    assert counted["before"] > 10_000, counted  # the flood did reach the gateway
    assert counted["after"] == 0, counted
    assert client.ask("tcp-echo") == "ok"


def test_a_peer_reaches_neither_the_internet_nor_the_gateways_other_addresses(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: None
) -> None:
    """With every address routed into its tunnel, a dedicated peer reaches no internet host
    through the gateway, and not the gateway's WAN address or v6 office-side address."""
    connect("desk", "dedicated", allowed_ips=EVERYTHING)
    desk = peer(lab, "desk")
    internet = str(lab.plan.internet_router.v4.ip)  # not the endpoint's link: that stays outside
    outside = tools("internet", "serve-udp", internet, "4000")
    outside6 = tools("internet", "serve-udp", INTERNET_V6, "4000")
    wan = str(lab.plan.gateway_wan.v4.ip)
    assert lab.plan.gateway_lan.v6 is not None
    lan_v6 = str(lab.plan.gateway_lan.v6.ip)
    gateway_side = tools("gateway", "serve-udp", lan_v6, "4000")
    assert not send(lab, "home", desk.v4, internet, 4000)
    assert not send(lab, "home", desk.v6, INTERNET_V6, 4000)
    assert not send(lab, "home", desk.v6, lan_v6, 4000)
    assert probe.ping(lab.ns("home"), lan_v6, count=1, wait=1).received == 0
    assert not probe.tcp_banner(lab.ns("home"), wan, 22, timeout=1.5).ok
    assert outside.seen() == [] and outside6.seen() == [] and gateway_side.seen() == []
    with gateway_firewall_removed(lab):  # control
        assert send(lab, "home", desk.v6, lan_v6, 4000)
        assert probe.tcp_banner(lab.ns("home"), wan, 22).ok
        send(lab, "home", desk.v4, internet, 4000)
        assert send(lab, "home", desk.v6, INTERNET_V6, 4000)
        assert outside.seen() == [f"got {desk.v4}"]


def test_the_gateway_itself_reaches_a_peer_only_as_the_pbx_and_with_answers(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """A service on the gateway gets no more of an assistant's machine than an office host: no
    ping, no other port. When the PBX is the gateway itself (its address is the gateway's), the
    VoIP path works both ways through it, and only that."""
    connect("phone", "agency", allowed_ips=EVERYTHING)
    phone = peer(lab, "phone")
    tunnel = gateway_tunnel(lab)
    listeners = {p: tools("home", "serve-udp", "0.0.0.0", str(p)) for p in (5060, 4000)}
    assert not send(lab, "gateway", tunnel.v4, phone.v4, 4000)
    assert probe.ping(lab.ns("gateway"), phone.v4, count=1, wait=1).received == 0
    assert listeners[4000].seen() == []
    _run(lab, "gateway", "ip", "addr", "add", f"{PBX}/32", "dev", "lo")
    # a PBX on the gateway and the witness's SIP mirror on 5060 exclude each other (the witness
    # says so when 5060 is taken as it starts): the mirror is off while the PBX is here
    lab.stop_service("witness")
    try:
        pbx = {p: tools("gateway", "serve-udp", PBX, str(p)) for p in (5060, 4000)}
        assert send(lab, "home", phone.v4, PBX, 5060)  # the phone registers with the PBX
        assert not send(lab, "home", phone.v4, PBX, 4000)
        assert send(lab, "gateway", PBX, phone.v4, 5060)  # the PBX calls the phone
        assert not send(lab, "gateway", PBX, phone.v4, 4000)
        assert pbx[5060].seen() == [f"got {phone.v4}"] and pbx[4000].seen() == []
        assert listeners[5060].seen() == [f"got {PBX}"] and listeners[4000].seen() == []
        with gateway_firewall_removed(lab):  # control
            assert send(lab, "home", phone.v4, PBX, 4000)
            assert send(lab, "gateway", PBX, phone.v4, 4000)
            assert send(lab, "gateway", tunnel.v4, phone.v4, 4000)
    finally:
        lab.exec("gateway", ["ip", "addr", "del", f"{PBX}/32", "dev", "lo"])
        lab.start_service("witness")


@contextlib.contextmanager
def agency_also_reaches(lab: Lab, rule: str) -> Iterator[None]:
    """The lab's profile copy with one more agency destination (acme's agency mode has no v6
    one, and a port rule is what the ICMP errors must be matched against), loaded."""
    path = lab.profile_dir / "profile.toml"
    original = path.read_text()
    old = 'agency = ["192.0.2.20/32 tcp/443"]'
    assert old in original, "acme's agency rule changed: update this test"
    path.write_text(original.replace(old, f'agency = ["192.0.2.20/32 tcp/443", "{rule}"]'))
    try:
        lab.load_firewall()
        yield
    finally:
        path.write_text(original)
        lab.load_firewall()


def test_icmpv6_errors_pass_only_for_flows_the_mode_allows(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """With udp/4000 on the office's v6 host in the agency mode, a "port unreachable" about the
    peer's flow there reaches it; one about its flow to udp/4001 (opened while the firewall was
    away, so conntrack knows it) does not, though it does without the firewall."""
    connect("agent6", "agency", host="home2", allowed_ips=EVERYTHING)
    agent = peer(lab, "agent6")
    for port in (4000, 4001):
        tools("office", "serve-udp", OFFICE_V6, str(port))
    with agency_also_reaches(lab, f"{OFFICE_V6}/128 udp/4000"):
        assert send(lab, "home2", agent.v6, OFFICE_V6, 4000, sport=40000)
        with conntrack_kept(lab), gateway_firewall_removed(lab):
            assert send(lab, "home2", agent.v6, OFFICE_V6, 4001, sport=40001)
        assert not send(lab, "home2", agent.v6, OFFICE_V6, 4001, sport=40001)

        def error_about(port: int) -> None:
            argv = [sys.executable, str(FLOWS), "icmp6-error", "--source", OFFICE_V6]
            argv += ["--inner-src", agent.v6, "--inner-dst", OFFICE_V6]
            argv += ["--sport", str(port + 36000), "--dport", str(port)]
            sent = lab.exec("office", argv)
            assert sent.ok, sent.stderr

        watcher = tools("home2", "watch-icmp6", "--seconds", "60")
        error_about(4000)
        error_about(4001)
        seen = watcher.seen(wait=2.0)
        assert f"icmp6 {OFFICE_V6} {OFFICE_V6} 4000" in seen, seen
        assert not any(line.endswith(" 4001") for line in seen), seen
        with conntrack_kept(lab), gateway_firewall_removed(lab):  # control
            error_about(4001)
            assert f"icmp6 {OFFICE_V6} {OFFICE_V6} 4001" in watcher.seen(wait=2.0)


def test_a_second_netsetup_table_on_the_same_gateway_cuts_the_first_tunnels_traffic(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """Each rendered table is written to be the only ruleset: its forward chain denies all that
    is not its own tunnel's, and a drop in any table is final. So a second tunnel's table on the
    same gateway (another profile, another interface) stops the first tunnel's peers."""
    connect("desk", "dedicated")
    desk = peer(lab, "desk")
    office = tools("office", "serve-udp", FILES[0], "4000")
    assert send(lab, "home", desk.v4, FILES[0], 4000)
    profile = lab.profile()
    other = replace(profile, gateway=replace(profile.gateway, interface="wg9"))
    path = lab.run_dir / "second-tunnel.nft"
    path.write_text(render_firewall(other, [], datetime.now(UTC)))
    _run(lab, "gateway", "nft", "-f", str(path))
    try:
        assert not send(lab, "home", desk.v4, FILES[0], 4000)
    finally:
        lab.exec("gateway", ["nft", "delete", "table", "inet", table_name("wg9")])
    assert send(lab, "home", desk.v4, FILES[0], 4000)
    assert office.seen() == [f"got {desk.v4}"] * 2


def test_a_pbx_the_gateway_reaches_through_the_wan_can_be_impersonated_from_there(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: None
) -> None:
    """The PBX's calls are told from a spoof by where the gateway routes the PBX's address: when
    that is the WAN side, a WAN host with the PBX's address calls the phone (what the README's
    "a PBX in the office" stands for)."""
    connect("phone", "agency")
    phone = tools("home", "serve-udp", "0.0.0.0", "5060")
    target = peer(lab, "phone").v4
    isp = str(lab.plan.internet_gw.v4.ip)
    setup = [
        ("gateway", ["ip", "route", "add", f"{PBX}/32", "via", isp]),
        ("internet", ["ip", "addr", "add", f"{PBX}/32", "dev", "lo"]),
    ]
    for host, argv in setup:
        _run(lab, host, *argv)
    try:
        assert send(lab, "internet", PBX, target, 5060)
        assert phone.seen() == [f"got {PBX}"]
    finally:
        for host, argv in reversed(setup):
            lab.exec(host, [("del" if word == "add" else word) for word in argv])


def test_a_link_local_source_from_the_tunnel_reaches_nothing_on_the_gateway(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """A peer's fe80:: address is no peer's tunnel address: with WireGuard taking fe80::/10 from
    its key, the ruleset still drops what it sends to the gateway's tunnel address."""
    interface = connect("ll", "dedicated", allowed_ips=EVERYTHING)
    source = f"{_link_local(lab, 'home', interface)}%{interface}"
    tunnel = gateway_tunnel(lab)
    service = tools("gateway", "serve-udp", tunnel.v6, "53")
    with gateway_accepts_from(lab, "ll", ["fe80::/10"]):
        assert not send(lab, "home", source, tunnel.v6, 53)
        assert service.seen() == []
        with gateway_firewall_removed(lab):  # control: WireGuard let it in
            send(lab, "home", source, tunnel.v6, 53)
            seen = service.seen()
            assert len(seen) == 1 and seen[0].startswith("got fe80:"), seen
