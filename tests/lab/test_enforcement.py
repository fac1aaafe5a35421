"""What the gateway's firewall enforces, proven with real packets: expiry ends open flows and
survives a reload, the WAN side reaches nothing behind the gateway, the PBX (and only the PBX) calls
an assistant's phone, peers never reach each other, and ICMP errors pass only for allowed flows."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.lab import Lab, probe
from netsetup.profile.store import load_peer
from netsetup.profile.values import PeerName, format_time

from .conftest import gateway_firewall_removed

pytestmark = pytest.mark.lab

FLOWS = Path(__file__).with_name("flows.py")
PORTAL = ("192.0.2.20", 443)  # the agency mode's one destination
FILES = ("192.0.2.30", 445)  # an office host agency assistants may not reach
PBX = "192.0.2.40"  # the SIP server, and (acme names no other media host) the media host
RTP_PORT = 10500  # inside acme's RTP range 10000-20000
EXPIRY_LEAD = 20  # seconds between loading the ruleset and the peer's expiry


class Tool:
    """flows.py running in a lab namespace; its output lines arrive on a queue."""

    def __init__(self, lab: Lab, host: str, *args: str) -> None:
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns(host), sys.executable, str(FLOWS), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_line(10) == "ready", f"{args[0]} did not start in {host}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.next_line(15) or "fail: no answer from the tool"

    def seen(self, wait: float = 1.0) -> list[str]:
        """Every line printed so far (waiting up to `wait` seconds for the first)."""
        out = []
        line = self.next_line(wait)
        while line is not None:
            out.append(line)
            line = self.next_line(0.2)
        return out

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def tools(lab: Lab) -> Iterator[Callable[..., Tool]]:
    started: list[Tool] = []

    def _start(host: str, *args: str) -> Tool:
        started.append(Tool(lab, host, *args))
        return started[-1]

    yield _start
    for tool in started:
        tool.stop()


def _send_udp(lab: Lab, host: str, source: str, address: str, port: int) -> bool:
    """One SIP OPTIONS datagram from `source`; True when something answered."""
    argv = [sys.executable, str(FLOWS), "send-udp", "--source", source, address, str(port)]
    return lab.exec(host, argv, timeout=20).ok


def _address(lab: Lab, name: str) -> str:
    return str(load_peer(lab.profile(), PeerName(name)).address_v4)


def _set_expiry(lab: Lab, name: str, when: datetime) -> None:
    """Give a peer a new expiry, to the second, in its file (plain TOML): `renew` takes days."""
    path = lab.profile_dir / "peers" / f"{name}.toml"
    text, count = re.subn(
        r"(?m)^expires\s*=.*$", f"expires = {format_time(when)}", path.read_text()
    )
    assert count == 1, text
    path.write_text(text)


def _all_fail(client: Tool) -> list[str]:
    """The held TCP session and UDP flow, and new ones: what each answered."""
    media = f"{PBX} {RTP_PORT}"
    return [
        client.ask("tcp-echo"),
        client.ask(f"udp-echo {media}"),
        client.ask(f"tcp-new {PORTAL[0]} {PORTAL[1]}"),
        client.ask(f"udp-new {media}"),
    ]


def test_expiry_ends_open_flows_and_a_reload_does_not_bring_them_back(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    tools("office", "serve-udp", PBX, str(RTP_PORT))  # the media host's RTP-like echo
    connect("ends-soon", "agency")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=EXPIRY_LEAD)
    _set_expiry(lab, "ends-soon", expires)
    lab.load_firewall()
    ruleset = lab.run_dir / "gateway" / "firewall.nft"
    assert "#   ends-soon (agency)" in ruleset.read_text()  # in the ruleset: the kernel ends it

    client = tools("home", "client")
    assert client.ask(f"tcp-open {PORTAL[0]} {PORTAL[1]}").startswith("ok")
    assert client.ask("tcp-echo") == "ok"
    assert client.ask(f"udp-echo {PBX} {RTP_PORT}") == "ok"
    assert datetime.now(UTC) < expires, "the flows were checked too late to count as 'before'"

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1)
    answers = _all_fail(client)
    assert all(a.startswith("fail") for a in answers), answers
    # still a WireGuard peer of the gateway (until the next render), reaching nothing
    key = load_peer(lab.profile(), PeerName("ends-soon")).public_key
    on_gateway = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "peers"]).stdout
    assert key in on_gateway.split()
    gateway = str(lab.profile().network.gateway_address_v4)
    assert probe.ping(lab.ns("home"), gateway, count=2, wait=1).received == 0

    # a gateway reboot or an admin's `nft -f FILE` loads the same file again, later
    loaded = lab.exec("gateway", ["nft", "-f", str(ruleset)])
    assert loaded.ok, loaded.stderr
    answers = _all_fail(client)
    assert all(a.startswith("fail") for a in answers), answers
    assert probe.ping(lab.ns("home"), gateway, count=2, wait=1).received == 0


@pytest.fixture
def wan_routes(lab: Lab) -> Iterator[str]:
    """The internet routes the office and the tunnel subnet to the gateway's WAN address (a
    neighbour on the WAN can always do that); yields the internet host's own address."""
    gateway = str(lab.plan.gateway_wan.v4.ip)
    networks = ["192.0.2.0/24", str(lab.profile().network.tunnel_v4)]
    for network in networks:
        assert lab.exec("internet", ["ip", "route", "add", network, "via", gateway]).ok
    try:
        yield str(lab.plan.internet_gw.v4.ip)
    finally:
        for network in networks:
            lab.exec("internet", ["ip", "route", "del", network, "via", gateway])


def test_the_wan_side_reaches_nothing_behind_the_gateway(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool], wan_routes: str
) -> None:
    connect("maria", "dedicated", allowed_ips="0.0.0.0/0, ::/0")
    peer = _address(lab, "maria")
    phone = tools("home", "serve-udp", "0.0.0.0", "5060")
    internet = lab.ns("internet")
    assert lab.exec("gateway", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    # the internet claiming to be the PBX: the gateway routes that address to the office
    assert lab.exec("internet", ["ip", "addr", "add", f"{PBX}/32", "dev", "lo"]).ok
    try:
        assert not probe.tcp_banner(internet, *FILES, timeout=1.5).ok
        assert not probe.tcp_banner(internet, "192.0.2.31", 22, timeout=1.5).ok
        assert probe.ping(internet, FILES[0], count=2, wait=1).received == 0
        _send_udp(lab, "internet", wan_routes, peer, 5060)
        _send_udp(lab, "internet", PBX, peer, 5060)
        assert phone.seen() == []
        # nor does the office reach the internet through the gateway
        outside = tools("internet", "serve-udp", "0.0.0.0", "4000")
        _send_udp(lab, "office", FILES[0], wan_routes, 4000)
        assert outside.seen() == []
        # the gateway's SSH answers gateway.admin_from only: the lab's is the office LAN
        gateway_wan = str(lab.plan.gateway_wan.v4.ip)
        assert not probe.tcp_banner(internet, gateway_wan, 22, timeout=1.5).ok
        office_ssh = probe.tcp_banner(lab.ns("office"), str(lab.plan.gateway_lan.v4.ip), 22)
        assert str(office_ssh.detail.get("banner", "")).startswith("SSH-"), office_ssh.detail
        # control: without the firewall the same packets get through
        with gateway_firewall_removed(lab):
            assert probe.tcp_banner(internet, gateway_wan, 22).ok
            assert probe.tcp_banner(internet, *FILES).ok
            _send_udp(lab, "internet", wan_routes, peer, 5060)
            _send_udp(lab, "internet", PBX, peer, 5060)
            assert {f"got {wan_routes}", f"got {PBX}"} <= set(phone.seen())
            _send_udp(lab, "office", FILES[0], wan_routes, 4000)
            assert outside.seen() == [f"got {FILES[0]}"]
    finally:
        lab.exec("internet", ["ip", "addr", "del", f"{PBX}/32", "dev", "lo"])


def test_the_pbx_calls_the_phone_and_no_other_office_host_does(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    connect("phone", "agency", allowed_ips="0.0.0.0/0, ::/0")
    peer = _address(lab, "phone")
    phone = tools("home", "serve-udp", "0.0.0.0", "5060")
    assert _send_udp(lab, "office", PBX, peer, 5060)  # the phone's 200 OK came back
    assert phone.seen() == [f"got {PBX}"]
    assert not _send_udp(lab, "office", FILES[0], peer, 5060)
    assert phone.seen() == []
    # media: the media host's RTP reaches the phone's RTP port; another office host's does not
    rtp = tools("home", "serve-udp", "0.0.0.0", str(RTP_PORT))
    assert _send_udp(lab, "office", PBX, peer, RTP_PORT)
    assert rtp.seen() == [f"got {PBX}"]
    assert not _send_udp(lab, "office", FILES[0], peer, RTP_PORT)
    assert rtp.seen() == []
    with gateway_firewall_removed(lab):  # control: the office host's packets do get there
        _send_udp(lab, "office", FILES[0], peer, 5060)
        assert phone.seen() == [f"got {FILES[0]}"]
        _send_udp(lab, "office", FILES[0], peer, RTP_PORT)
        assert rtp.seen() == [f"got {FILES[0]}"]


def test_from_the_tunnel_the_gateway_answers_ping_and_its_own_dns_only(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """Even an address of the gateway inside the dedicated mode's office network, and the
    gateway's SSH on its LAN side, stay closed to the tunnel; ping on its tunnel address is
    answered, and DNS once the profile's DNS server address is the gateway's own."""
    connect("desk", "dedicated", allowed_ips="0.0.0.0/0, ::/0")
    desk = _address(lab, "desk")
    inside, dns = "192.0.2.1", "192.0.2.53"  # both in the dedicated mode's 192.0.2.0/24
    for address in (inside, dns):
        assert lab.exec("gateway", ["ip", "addr", "add", f"{address}/32", "dev", "lo"]).ok
    try:
        service = tools("gateway", "serve-udp", inside, "4000")
        resolver = tools("gateway", "serve-udp", dns, "53")
        other = tools("gateway", "serve-udp", dns, "4000")
        home = lab.ns("home")
        gateway = str(lab.profile().network.gateway_address_v4)
        assert probe.ping(home, gateway, count=2).received == 2
        assert _send_udp(lab, "home", desk, dns, 53)
        assert resolver.seen() == [f"got {desk}"]
        assert not _send_udp(lab, "home", desk, dns, 4000)
        assert not _send_udp(lab, "home", desk, inside, 4000)
        assert service.seen() == [] and other.seen() == []
        lan_side = str(lab.plan.gateway_lan.v4.ip)
        assert not probe.tcp_banner(home, lan_side, 22, timeout=1.5).ok
        with gateway_firewall_removed(lab):  # control: they all answer the tunnel without it
            assert _send_udp(lab, "home", desk, inside, 4000)
            assert _send_udp(lab, "home", desk, dns, 4000)
            assert probe.tcp_banner(home, lan_side, 22).ok
    finally:
        for address in (inside, dns):
            lab.exec("gateway", ["ip", "addr", "del", f"{address}/32", "dev", "lo"])


def test_peers_never_reach_each_other(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    everything = "0.0.0.0/0, ::/0"
    connect("desk", "dedicated", allowed_ips=everything)
    connect("agent", "agency", host="home2", allowed_ips=everything)
    desk, agent = _address(lab, "desk"), _address(lab, "agent")
    at_desk = tools("home", "serve-udp", "0.0.0.0", "4000")
    at_agent = tools("home2", "serve-udp", "0.0.0.0", "4000")
    assert not _send_udp(lab, "home", desk, agent, 4000)
    assert not _send_udp(lab, "home2", agent, desk, 4000)
    assert probe.ping(lab.ns("home"), agent, count=2, wait=1).received == 0
    assert at_desk.seen() == [] and at_agent.seen() == []
    with gateway_firewall_removed(lab):  # control: the gateway would forward it
        _send_udp(lab, "home", desk, agent, 4000)
        assert at_agent.seen() == [f"got {desk}"]


@contextlib.contextmanager
def conntrack_kept(lab: Lab) -> Iterator[None]:
    """Conntrack stays on in the gateway while its firewall is away (a namespace tracks
    connections only while some ruleset uses `ct`), so flows opened meanwhile are known to it."""
    table = "table inet lab_tracking {\n\tchain forward {\n"
    table += "\t\ttype filter hook forward priority filter; policy accept;\n"
    table += "\t\tct state new accept\n\t}\n}\n"
    path = lab.run_dir / "lab-tracking.nft"
    path.write_text(table)
    assert lab.exec("gateway", ["nft", "-f", str(path)]).ok
    try:
        yield
    finally:
        lab.exec("gateway", ["nft", "delete", "table", "inet", "lab_tracking"])


def test_icmp_errors_pass_only_for_flows_the_mode_allows(
    lab: Lab, connect: Callable[..., str], tools: Callable[..., Tool]
) -> None:
    """A "fragmentation needed" about the agency peer's portal session reaches it; one about a
    session to the file server does not, even though conntrack knows that session (it was opened
    while the firewall was away), and that session itself stops once the firewall is back."""
    connect("agent", "agency", host="home2", allowed_ips="0.0.0.0/0, ::/0")
    agent = _address(lab, "agent")
    portal, files = tools("home2", "client"), tools("home2", "client")
    portal_port = portal.ask(f"tcp-open {PORTAL[0]} {PORTAL[1]}").split()[-1]
    with conntrack_kept(lab), gateway_firewall_removed(lab):
        files_port = files.ask(f"tcp-open {FILES[0]} {FILES[1]}").split()[-1]
        assert files.ask("tcp-echo") == "ok"
    # the session is in conntrack, established; the mode does not allow it: it ends at once
    assert files.ask("tcp-echo").startswith("fail")
    assert portal.ask("tcp-echo") == "ok"

    watcher = tools("home2", "watch-icmp", "--seconds", "60")
    for host, port, local in ((*PORTAL, portal_port), (*FILES, files_port)):
        argv = [sys.executable, str(FLOWS), "icmp-error", "--source", host]
        argv += ["--inner-src", agent, "--inner-dst", host, "--sport", local]
        sent = lab.exec("office", [*argv, "--dport", str(port)])
        assert sent.ok, sent.stderr
    seen = watcher.seen(wait=2.0)
    assert f"icmp {PORTAL[0]} {PORTAL[0]} {PORTAL[1]}" in seen, seen
    assert not any(line.startswith(f"icmp {FILES[0]}") for line in seen), seen
