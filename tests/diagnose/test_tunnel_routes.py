"""tunnel.handshake and tunnel.mtu believe only answers that came through the tunnel: a company
address this computer routes elsewhere (a home network or another VPN holding the company's
addresses) may be answered by something else (the home router's DNS), which proves nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from netsetup.diagnose import probes
from netsetup.diagnose.checks import tunnel
from netsetup.diagnose.checks.tunnel import HandshakeCheck, MtuCheck
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.platform import net
from netsetup.diagnose.result import Owner, Status
from netsetup.keys import generate_keypair

HOME_DNS = "127.0.0.5"  # the company's DNS address, answered by "the home router"


@pytest.fixture
def home_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A DNS server that answers every query, outside any tunnel."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOME_DNS, 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data[:2] + b"\x81\x83" + data[4:12], peer)  # NXDOMAIN

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = int(sock.getsockname()[1])
    monkeypatch.setattr(probes, "DNS_PORT", port)
    yield port
    stop.set()
    thread.join(2)
    sock.close()


@pytest.fixture
def tunnel_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tunnel's interface is up and holds 10.99.0.2, but the company's DNS address is
    routed elsewhere (here: the loopback, from 127.0.0.1)."""
    wg = net.LocalInterface("wg-test", (), True, 1420)
    monkeypatch.setattr(net, "interface_holding", lambda addresses: wg)
    monkeypatch.setattr(tunnel, "HANDSHAKE_WINDOW_S", 1.2)
    monkeypatch.setattr(tunnel, "REKEY_TIMEOUT_S", 1.0)


def _config() -> ClientConfig:
    keys, gateway = generate_keypair(), generate_keypair()
    return ClientConfig.parse(
        f"""\
[Interface]
PrivateKey = {keys.private.reveal()}
Address = 10.99.0.2/32
DNS = {HOME_DNS}
[Peer]
PublicKey = {gateway.public}
Endpoint = 127.0.0.1:51820
AllowedIPs = 127.0.0.0/8, 10.99.0.0/24
"""
    )


def _view(cfg: ClientConfig, budget: float = 4.0) -> CheckContext:
    return CheckContext(DiagnoseContext(cfg), time.monotonic() + budget)


@pytest.mark.usefixtures("tunnel_up")
def test_a_dns_server_answering_outside_the_tunnel_is_no_proof(home_dns: int) -> None:
    outcome = HandshakeCheck().run(_view(_config()))
    assert outcome.status is Status.fail, outcome.summary
    assert outcome.owner is Owner.assistant
    assert "do not go into the tunnel" in outcome.summary and HOME_DNS in outcome.summary
    assert outcome.fix is not None and "router's home network" in outcome.fix
    assert outcome.metrics["not_through_tunnel"] == [HOME_DNS]


@pytest.mark.usefixtures("tunnel_up")
def test_the_mtu_is_not_measured_against_a_server_outside_the_tunnel(home_dns: int) -> None:
    outcome = MtuCheck().run(_view(_config()))
    assert outcome.status is Status.skip, outcome.summary
    assert outcome.metrics.get("largest_through_tunnel") is None


# -- hostile names from the config's netsetup-diagnose lines -------------------------------------


@pytest.mark.parametrize("name", ["a" * 300 + ".example", "b" * 100 + ".example", "c." * 200])
def test_a_name_dns_cannot_carry_still_makes_a_well_formed_query(name: str) -> None:
    query = probes.dns_query(7, name)
    assert query[12:13] == b"\0" and len(query) == 12 + 1 + 4  # the root


def test_a_long_valid_name_is_queried_as_it_is() -> None:
    query = probes.dns_query(7, "files.acme-dental.example")
    assert query[12:] == b"\x05files\x0bacme-dental\x07example\0\0\x01\0\x01"


@pytest.mark.usefixtures("tunnel_up")
def test_a_300_character_dns_name_in_the_config_does_not_break_the_check(home_dns: int) -> None:
    text = _config_text(dns_name="x" * 300 + ".example", dns=HOME_DNS, address="127.0.0.1")
    outcome = HandshakeCheck().run(_view(ClientConfig.parse(text)))
    assert outcome.status is Status.passed, outcome.summary
    assert outcome.metrics["answered_by"] == "dns"


def _config_text(dns_name: str, dns: str, address: str) -> str:
    keys, gateway = generate_keypair(), generate_keypair()
    return f"""\
# netsetup-diagnose: v=1 profile=acme-dental
# netsetup-diagnose: dns-name={dns_name}
[Interface]
PrivateKey = {keys.private.reveal()}
Address = {address}/32
DNS = {dns}
[Peer]
PublicKey = {gateway.public}
Endpoint = 127.0.0.1:51820
AllowedIPs = 127.0.0.0/8
"""


# -- the witness asked over the address family WireGuard uses -----------------------------------


def test_the_witness_is_asked_over_each_family_of_a_dual_stack_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WireGuard sends over IPv4 (the Windows app prefers it) while a query by name goes over
    IPv6 first: the gateway saw no WireGuard packets from our IPv6 address, which must not turn
    into "the company never received your packets" (owner: the assistant)."""
    from netsetup.responder import client
    from netsetup.responder.client import WitnessStatus

    def status(seen: bool) -> WitnessStatus:
        return WitnessStatus(seen, 0.3 if seen else None, "active", 900.0, 51820, None)

    asked: list[str] = []

    def ask_witness(host: str, *args: object) -> WitnessStatus:
        asked.append(host)
        return status(seen=host == "192.0.2.10")  # by name: over IPv6, first

    monkeypatch.setattr(client, "ask_witness", ask_witness)
    monkeypatch.setattr(tunnel, "resolve", lambda host: ["192.0.2.10", "2001:db8::10"])
    monkeypatch.setattr(tunnel, "read_wg_state", lambda ctx: None)  # not this test's subject
    keys, gateway = generate_keypair(), generate_keypair()
    cfg = ClientConfig.parse(
        f"""\
# netsetup-diagnose: gateway=10.99.0.1 witness=51821
[Interface]
PrivateKey = {keys.private.reveal()}
Address = 10.99.0.2/32
[Peer]
PublicKey = {gateway.public}
Endpoint = gw.acme-dental.example:51820
AllowedIPs = 10.99.0.0/24
"""
    )
    evidence = tunnel._Evidence(_view(cfg))
    answer = evidence.answer(3.0)
    assert sorted(asked) == ["192.0.2.10", "2001:db8::10"]
    assert isinstance(answer, WitnessStatus) and answer.seen_recently is True


def test_merging_witness_answers() -> None:
    from netsetup.responder.client import KeyMismatch, WitnessStatus

    def status(seen: bool | None, age: float | None) -> WitnessStatus:
        return WitnessStatus(seen, age, "active", None, 51820, None)

    merge = tunnel.merge_witness_answers
    assert merge([None, None]) is None
    assert merge([status(False, None), None]) == status(False, None)
    assert merge([status(True, 20.0), status(True, 0.5)]) == status(True, 0.5)
    assert isinstance(merge([status(True, 0.5), KeyMismatch("SHA256:ab")]), KeyMismatch)
    assert tunnel.one_per_family(["192.0.2.1", "192.0.2.2", "2001:db8::1"]) == [
        "192.0.2.1",
        "2001:db8::1",
    ]


# -- a platform that sets Don't Fragment for IPv4 only ------------------------------------------


def test_an_ipv6_tunnel_without_ipv6_dont_fragment_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = net.set_dont_fragment

    def v4_only(sock: socket.socket, platform: str = "") -> None:
        if sock.family == socket.AF_INET6:
            raise net.DontFragmentUnsupported("this system refused to set Don't Fragment (v6)")
        real(sock)

    monkeypatch.setattr(net, "set_dont_fragment", v4_only)
    monkeypatch.setattr(probes, "set_dont_fragment", v4_only)
    keys, gateway = generate_keypair(), generate_keypair()
    cfg = ClientConfig.parse(
        f"""\
# netsetup-diagnose: gateway=10.99.0.1 gateway6=::1 witness=9
[Interface]
PrivateKey = {keys.private.reveal()}
Address = ::1/128
[Peer]
PublicKey = {gateway.public}
Endpoint = 127.0.0.1:51820
AllowedIPs = ::1/128
"""
    )
    outcome = MtuCheck().run(_view(cfg))
    assert outcome.status is Status.skip, outcome.summary
    assert "refused to set Don't Fragment (v6)" in outcome.summary


# -- a config routing tens of thousands of networks -----------------------------------------------


def _many_routes_config(count: int) -> str:
    keys, gateway = generate_keypair(), generate_keypair()
    networks = [f"10.{i // 256}.{i % 256}.0/24" for i in range(count)]
    routes = "\n".join(f"AllowedIPs = {n}" for n in networks)
    return f"""\
[Interface]
PrivateKey = {keys.private.reveal()}
Address = 10.255.255.2/32
DNS = 10.0.0.53
[Peer]
PublicKey = {gateway.public}
Endpoint = 127.0.0.1:51820
{routes}
"""


def test_tens_of_thousands_of_allowedips_lines_are_read_and_judged_quickly() -> None:
    from netsetup.diagnose.checks.tunnelconfig import judge_config

    text = _many_routes_config(40_000)  # about 1 MB: the largest config diagnose reads
    # (how fast is benchmarks' business: this checks the result, not the time)
    cfg = ClientConfig.parse(text)
    outcome = judge_config(cfg)
    assert len(cfg.allowed_ips) == 40_000
    assert outcome.status is Status.passed
    # the assistant reads one line, not 40,000 networks
    assert "and 39996 more networks" in outcome.summary and len(outcome.summary) < 200


def test_masking_a_report_of_ten_thousand_public_company_networks_is_quick() -> None:
    """The report masks public addresses not in the company's networks; looking each address
    up in 10,000 AllowedIPs one by one took minutes after the deadline (the tunnel.config
    metrics list every network)."""
    import ipaddress

    from netsetup.diagnose.privacy import Redactor

    networks = [ipaddress.ip_network(((11 << 24) + i * 256, 24)) for i in range(10_000)]
    redactor = Redactor(networks)
    text = ", ".join(str(n) for n in networks)
    assert redactor.text(text) == text  # the company's own: shown
    assert redactor.text("from 8.8.4.4 to 11.0.0.9") == "from 8.8.x.x to 11.0.0.9"
    assert redactor.text("2001:db8::1 fd00::1") == "2001:db8:x:x:x:x:x:x fd00::1"


# -- the black-hole verdict: the advised MTU -------------------------------------------------------


def _black_hole_view(endpoint: str) -> CheckContext:
    keys, gateway = generate_keypair(), generate_keypair()
    cfg = ClientConfig.parse(
        f"""\
[Interface]
PrivateKey = {keys.private.reveal()}
Address = 10.99.0.2/32
MTU = 1420
[Peer]
PublicKey = {gateway.public}
Endpoint = {endpoint}
AllowedIPs = 10.99.0.0/24
"""
    )
    return _view(cfg)


def test_a_hanging_lookup_of_the_endpoint_does_not_cost_the_black_hole_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from netsetup.diagnose.checks import tunnelmtu

    monkeypatch.setattr(tunnelmtu, "resolve", lambda host: time.sleep(10) or [])
    began = time.monotonic()
    outcome = tunnelmtu._verdict(_black_hole_view("gw.example:51820"), 1420, 1300, None, "x")
    assert time.monotonic() - began < 5.0  # the lookup hangs 10 s: the verdict did not wait
    assert outcome.status is Status.fail and outcome.metrics["advised_mtu"] == 1300


def test_a_dual_stack_endpoint_is_advised_the_mtu_that_fits_over_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from netsetup.diagnose.checks import tunnelmtu

    # `resolve` sorts as text: "192.…" before "2001:…", "2001:…" before "45.…"; which family
    # the advice is for must not depend on that
    monkeypatch.setattr(tunnelmtu, "resolve", lambda host: ["192.0.2.10", "2001:db8::10"])
    outcome = tunnelmtu._verdict(_black_hole_view("gw.example:51820"), 1420, 1410, 1480, "x")
    assert outcome.metrics["advised_mtu"] == 1480 - 80  # fits over IPv6 and IPv4
