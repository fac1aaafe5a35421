"""Issue 4, what must hold 4: every fault the lab injects really happens, and clears."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from netsetup.errors import InputError
from netsetup.lab import Lab, LabError, probe
from netsetup.lab.topology import nft_load

pytestmark = pytest.mark.lab

SIP = "192.0.2.40"
GATEWAY_TUNNEL = "198.18.10.1"


@pytest.fixture
def tunnel(lab: Lab, connect: Callable[..., str]) -> Iterator[str]:
    iface = connect("faulty", "dedicated")
    yield iface
    lab.clear()  # a failed test leaves no fault behind for the next


def test_drop_a_udp_port(lab: Lab, tunnel: str) -> None:
    home = lab.ns("home")
    assert probe.sip_options(home, SIP, "udp").detail.get("status") == 200
    fault = lab.inject("drop", proto="udp", port=5060)
    assert not probe.sip_options(home, SIP, "udp", timeout=1.5).ok
    assert probe.sip_options(home, SIP, "tcp").detail.get("status") == 200  # only UDP is hit
    lab.clear(fault.id)
    assert probe.sip_options(home, SIP, "udp").detail.get("status") == 200


def test_drop_a_tcp_port(lab: Lab, tunnel: str) -> None:
    home = lab.ns("home")
    lab.inject("drop", proto="tcp", port=445)
    assert not probe.tcp_banner(home, "192.0.2.30", 445, timeout=1.5).ok
    assert probe.tcp_banner(home, "192.0.2.31", 22).ok
    lab.clear("drop")
    assert probe.tcp_banner(home, "192.0.2.30", 445).ok


@pytest.mark.parametrize(
    ("percent", "direction", "expected"), [(20, "up", 0.20), (10, "both", 0.19)]
)
def test_random_loss_close_to_the_injected_rate(
    lab: Lab, tunnel: str, percent: int, direction: str, expected: float
) -> None:
    home = lab.ns("home")
    target = str(lab.plan.endpoint_address)
    assert probe.ping(home, target, count=50, interval=0.005).loss == 0.0
    lab.inject("loss", percent=percent, direction=direction)
    measured = probe.ping(home, target, count=600, interval=0.003, wait=1)
    # one direction loses p; both directions lose 1-(1-p)^2 of the round trips. 600 samples:
    # the standard deviation is under 0.017, so 0.07 is a 4-sigma band
    assert abs(measured.loss - expected) < 0.07, measured.output
    # the tunnel suffers the same loss
    inner = probe.ping(home, GATEWAY_TUNNEL, count=300, interval=0.003, wait=1)
    assert abs(inner.loss - expected) < 0.09, inner.output
    lab.clear("loss")
    assert probe.ping(home, target, count=50, interval=0.005).loss == 0.0


def test_mtu_black_hole(lab: Lab, tunnel: str) -> None:
    home = lab.ns("home")
    wan = str(lab.plan.endpoint_address)
    assert probe.ping(home, GATEWAY_TUNNEL, size=1300, dont_fragment=True).ok
    lab.inject("mtu", mtu=1200)
    # outside the tunnel: small DF pings pass, large ones vanish without any ICMP error
    assert probe.ping(home, wan, size=1100, dont_fragment=True, count=2).received == 2
    big = probe.ping(home, wan, size=1400, dont_fragment=True, count=2, wait=1)
    assert big.received == 0 and "frag needed" not in big.output.lower()
    # inside the tunnel (MTU 1380): 1000+28+60 bytes outside fit, 1300+28+60 do not
    assert probe.ping(home, GATEWAY_TUNNEL, size=1000, dont_fragment=True, count=2).received == 2
    assert (
        probe.ping(home, GATEWAY_TUNNEL, size=1300, dont_fragment=True, count=2, wait=1).received
        == 0
    )
    lab.clear("mtu")
    assert probe.ping(home, GATEWAY_TUNNEL, size=1300, dont_fragment=True, count=2).received == 2


@pytest.mark.parametrize(
    ("service", "check"),
    [
        (
            "kamailio",
            lambda ns: probe.sip_options(ns, SIP, "tcp", timeout=1).detail.get("status") == 200,
        ),
        ("sshd", lambda ns: probe.tcp_banner(ns, "192.0.2.31", 22, timeout=1).ok),
        (
            "dnsmasq",
            lambda ns: probe.dns_lookup(ns, "192.0.2.53", "pbx.acme-dental.example", timeout=1).ok,
        ),
        ("files", lambda ns: probe.tcp_banner(ns, "192.0.2.30", 445, timeout=1).ok),
    ],
)
def test_stopped_service(lab: Lab, tunnel: str, service: str, check: Callable[[str], bool]) -> None:
    home = lab.ns("home")
    assert check(home)
    lab.inject("stop", service=service)
    assert not lab.record.services[service].running
    assert not check(home)
    lab.clear("stop")
    assert lab.record.services[service].running
    assert check(home)


def test_wrong_gateway_key(lab: Lab, tunnel: str) -> None:
    home = lab.ns("home")
    config = lab.record.clients["home"].config
    assert config is not None
    lab.inject("wrong-key")
    # the gateway forgets its sessions: nothing gets through, and a fresh handshake fails
    assert probe.ping(home, GATEWAY_TUNNEL, count=2, wait=1).received == 0
    source = next((lab.run_dir / "clients" / "faulty").glob("*.conf"))
    lab.tunnel_up(source)
    assert lab.wait_handshake(timeout=7) is None
    lab.clear("wrong-key")
    lab.tunnel_up(source)
    assert lab.wait_handshake(timeout=15) is not None
    assert probe.ping(home, GATEWAY_TUNNEL, count=2).received == 2


def test_home_lan_uses_the_company_subnet(lab: Lab, tunnel: str) -> None:
    home = lab.ns("home")
    assert probe.tcp_banner(home, "192.0.2.30", 445).ok
    fault = lab.inject("home-subnet")
    assert fault.params["subnet"] == "192.0.2.0/24"
    addresses = lab.exec("home", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert " 192.0.2." in addresses
    # the tunnel, brought up after the LAN, can't route the company subnet: wg-quick fails
    assert "File exists" in fault.params["tunnel"], fault.params
    route = lab.exec("home", ["ip", "route", "get", "192.0.2.30"]).stdout
    assert "dev eth0" in route and tunnel not in route, route
    assert not probe.tcp_banner(home, "192.0.2.30", 445, timeout=1.5).ok
    # the home's internet still works
    assert probe.ping(home, str(lab.plan.endpoint_address), count=2).received == 2
    lab.clear("home-subnet")
    assert lab.wait_handshake(timeout=15) is not None
    assert probe.tcp_banner(home, "192.0.2.30", 445).ok


def test_unknown_fault_is_a_clear_error(lab: Lab) -> None:
    with pytest.raises(InputError, match="unknown fault"):
        lab.inject("meteor")


def _home_link_mtus(lab: Lab) -> set[int]:
    import json

    mtus = set()
    for host, ifname in (
        ("internet", lab.plan.internet_router.ifname),
        ("router", lab.plan.router_wan.ifname),
    ):
        shown = lab.exec(host, ["ip", "-j", "link", "show", "dev", ifname]).stdout
        mtus.add(json.loads(shown)[0]["mtu"])
    return mtus


def _set_home_link_mtu(lab: Lab, mtu: int) -> None:
    lab.exec("internet", ["ip", "link", "set", lab.plan.internet_router.ifname, "mtu", str(mtu)])
    lab.exec("router", ["ip", "link", "set", lab.plan.router_wan.ifname, "mtu", str(mtu)])


def test_clearing_mtu_restores_the_links_previous_mtu(lab: Lab) -> None:
    _set_home_link_mtu(lab, 1400)  # e.g. a PPPoE-ish home line before the fault
    try:
        fault = lab.inject("mtu", mtu=1200)
        assert _home_link_mtus(lab) == {1200}
        lab.clear(fault.id)
        assert _home_link_mtus(lab) == {1400}
    finally:
        lab.clear()
        _set_home_link_mtu(lab, 1500)


def test_a_second_fault_on_the_same_target_is_refused(lab: Lab) -> None:
    try:
        first = lab.inject("stop", service="files")
        with pytest.raises(InputError, match=f"{first.id} already"):
            lab.inject("stop", service="files")
        lab.inject("stop", service="dnsmasq")  # another service is another target
        lab.inject("mtu", mtu=1300)
        with pytest.raises(InputError, match="already"):
            lab.inject("mtu", mtu=1200)
        assert [f.kind for f in lab.record.faults] == ["stop", "stop", "mtu"]
        lab.clear(first.id)
        assert lab.record.services["files"].running
        assert not lab.record.services["dnsmasq"].running
    finally:
        lab.clear()
    assert lab.record.services["dnsmasq"].running and _home_link_mtus(lab) == {1500}


def _fault_tables(lab: Lab, host: str) -> list[str]:
    listed = lab.exec(host, ["nft", "list", "tables", "inet"]).stdout.split()
    return [t for t in listed if t.startswith("netsetup_fault_")]


def test_a_half_applied_fault_is_undone(lab: Lab) -> None:
    """The MTU fault loads its table in the internet, then fails in the router (a table of the
    same name whose chain hooks elsewhere is in the way): the internet's table goes again."""
    upcoming = f"netsetup_fault_mtu_{len(lab.record.faults) + 1}_{lab.record.fault_serial}"
    in_the_way = f"table inet {upcoming} {{\n\tchain forward {{\n\t}}\n}}\n"  # a plain chain
    nft_load(lab.ns("router"), in_the_way)
    try:
        with pytest.raises(LabError):
            lab.inject("mtu", mtu=1200)
        assert _fault_tables(lab, "internet") == []
        assert lab.record.faults == []
        assert _home_link_mtus(lab) == {1500}
    finally:
        lab.exec("router", ["nft", "delete", "table", "inet", upcoming])
        lab.clear()


def test_total_loss(lab: Lab) -> None:
    home, target = lab.ns("home"), str(lab.plan.endpoint_address)
    assert probe.ping(home, target, count=2, interval=0.05).received == 2
    fault = lab.inject("loss", percent=100, direction="up")
    try:
        assert probe.ping(home, target, count=20, interval=0.005, wait=1).received == 0
    finally:
        lab.clear(fault.id)
    assert probe.ping(home, target, count=2, interval=0.05).received == 2
