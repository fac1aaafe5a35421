"""tunnel.handshake and tunnel.mtu against a real witness on 127.0.0.1 (the gateway's witness
server, answering UDP), with a stand-in for what the gateway knows (its key, the peers it has,
whom it saw)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest

from netsetup.diagnose.checks import tunnel
from netsetup.diagnose.checks.tunnel import HandshakeCheck, MtuCheck
from netsetup.diagnose.checks.tunnelsilence import seen_while_we_sent
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import run_checks
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.keys import KeyPair, fingerprint, generate_keypair
from netsetup.responder.client import WitnessStatus
from netsetup.responder.witness import LiveState, Witness, open_sockets, serve

CLIENT = generate_keypair()
GATEWAY = generate_keypair()


@dataclass
class Gateway:
    """What the witness reads on a gateway, set by each test."""

    key: KeyPair = GATEWAY
    listen_port: int = 51820
    handshakes: dict[str, int] = field(default_factory=lambda: {CLIENT.public: 0})
    seen_age: float | None = 0.5

    def live(self, fresh: bool = False) -> LiveState:
        return LiveState(self.key.private, self.listen_port, dict(self.handshakes))

    def seen_age_of(self, address: str) -> tuple[bool, float | None]:
        return True, self.seen_age

    def peers(self) -> Mapping[str, object]:
        return {}


class _Source:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def live(self, fresh: bool = False) -> LiveState:
        return self.gateway.live(fresh)

    def seen_age(self, address: str) -> tuple[bool, float | None]:
        return self.gateway.seen_age_of(address)

    def peers(self) -> Mapping[str, object]:
        return self.gateway.peers()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def witness_port(gateway: Gateway) -> Iterator[int]:
    sockets = open_sockets(["127.0.0.1"], 0)
    port = int(sockets[0].getsockname()[1])
    stop = threading.Event()
    server = threading.Thread(
        target=serve, args=(Witness(_Source(gateway), None), sockets, stop), daemon=True
    )
    server.start()
    yield port
    stop.set()
    server.join(2)
    for s in sockets:
        s.close()


def config(
    witness_port: int,
    gateway_address: str = "127.0.0.1",
    mtu: int = 1380,
    address: str = "127.0.0.1",
) -> ClientConfig:
    text = f"""\
# netsetup-diagnose: v=1 profile=acme-dental contact=it@acme-dental.example
# netsetup-diagnose: gateway={gateway_address} witness={witness_port} listen-port=51820
[Interface]
PrivateKey = {CLIENT.private.reveal()}
Address = {address}/32
MTU = {mtu}
[Peer]
PublicKey = {GATEWAY.public}
Endpoint = 127.0.0.1:51820
AllowedIPs = {gateway_address}/32
"""
    return ClientConfig.parse(text)


def run(check: HandshakeCheck | MtuCheck, cfg: ClientConfig, budget: float = 8.0) -> Outcome:
    ctx = DiagnoseContext(cfg)
    return check.run(CheckContext(ctx, time.monotonic() + budget))


@pytest.fixture
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judge silence after 1.2 s instead of WireGuard's 6 (the logic is the same)."""
    monkeypatch.setattr(tunnel, "HANDSHAKE_WINDOW_S", 1.2)
    monkeypatch.setattr(tunnel, "REKEY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(tunnel, "WITNESS_ASK_AFTER_S", 0.3)


def test_an_answer_through_the_tunnel_passes_at_once(witness_port: int) -> None:
    began = time.monotonic()
    outcome = run(HandshakeCheck(), config(witness_port))
    assert outcome.status is Status.passed, outcome.summary
    assert outcome.metrics["answered_by"] == "witness"
    assert time.monotonic() - began < 1.0


def test_a_tunnel_that_is_not_on_fails_for_the_assistant(witness_port: int) -> None:
    outcome = run(HandshakeCheck(), config(witness_port, address="192.0.2.77"))
    assert outcome.status is Status.fail and outcome.owner is Owner.assistant
    assert "192.0.2.77" in outcome.summary
    assert outcome.fix is not None and "turn the tunnel on" in outcome.fix.lower()
    assert "wg-quick up" in outcome.fix


# -- silence: the witness tells who must act -------------------------------------------------------

SILENT = "127.0.0.3"  # the gateway's tunnel address: nothing answers there


@pytest.mark.usefixtures("short_window")
def test_packets_never_seen_by_the_gateway_is_the_assistants_network(
    witness_port: int, gateway: Gateway
) -> None:
    gateway.seen_age = None
    outcome = run(HandshakeCheck(), config(witness_port, SILENT))
    assert outcome.status is Status.fail and outcome.owner is Owner.assistant
    assert "never received your packets" in outcome.summary
    assert outcome.fix is not None and "UDP port 51820" in outcome.fix
    assert outcome.metrics["witness"] == "answered"


@pytest.mark.usefixtures("short_window")
def test_packets_seen_only_before_we_started_count_as_not_seen(
    witness_port: int, gateway: Gateway
) -> None:
    gateway.seen_age = 25.0  # within the witness's "recently", long before this attempt
    outcome = run(HandshakeCheck(), config(witness_port, SILENT))
    assert outcome.owner is Owner.assistant and "never received" in outcome.summary


@pytest.mark.usefixtures("short_window")
def test_a_changed_gateway_key_is_for_it(witness_port: int, gateway: Gateway) -> None:
    gateway.key = generate_keypair()
    outcome = run(HandshakeCheck(), config(witness_port, SILENT))
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "gateway's key changed" in outcome.summary
    assert fingerprint(gateway.key.public) in outcome.summary
    assert outcome.fix is not None and "new config" in outcome.fix
    assert "it@acme-dental.example" in outcome.fix


@pytest.mark.usefixtures("short_window")
def test_a_key_the_gateway_does_not_know_is_for_it(witness_port: int, gateway: Gateway) -> None:
    gateway.handshakes = {}
    outcome = run(HandshakeCheck(), config(witness_port, SILENT))
    assert outcome.owner is Owner.it and "your key is not on the gateway" in outcome.summary


@pytest.mark.usefixtures("short_window")
def test_another_listen_port_is_for_it(witness_port: int, gateway: Gateway) -> None:
    gateway.listen_port = 51999
    outcome = run(HandshakeCheck(), config(witness_port, SILENT))
    assert outcome.owner is Owner.it and "listens on another port" in outcome.summary
    assert outcome.fix is not None and "127.0.0.1:51999" in outcome.fix


@pytest.mark.usefixtures("short_window")
def test_without_a_witness_the_fix_names_the_remaining_causes() -> None:
    outcome = run(HandshakeCheck(), config(9, SILENT))  # nothing answers on port 9
    assert outcome.status is Status.fail
    assert outcome.metrics["witness"] == "no answer"
    fix = outcome.fix or ""
    for cause in ("blocks UDP port 51820", "revoked or expired", "gateway's key changed"):
        assert cause in fix
    assert "phone's hotspot" in fix and "it@acme-dental.example" in fix


def test_too_little_time_to_judge_is_unknown(witness_port: int) -> None:
    outcome = run(HandshakeCheck(), config(witness_port, SILENT), budget=1.5)
    assert outcome.status is Status.unknown
    assert "too short to judge" in outcome.summary


def test_the_engine_keeps_the_global_deadline(witness_port: int) -> None:
    from netsetup.diagnose.context import DiagnoseOptions

    ctx = DiagnoseContext(config(witness_port, SILENT), options=DiagnoseOptions(deadline_s=2.0))
    began = time.monotonic()
    results, _ = run_checks(ctx, [HandshakeCheck(), MtuCheck()])
    assert time.monotonic() - began < 3.0
    status = {r.id: r.status for r in results}
    assert status["tunnel.handshake"] in (Status.unknown, Status.fail)
    assert status["tunnel.mtu"] is Status.skip


def test_seen_while_we_sent() -> None:
    def status(recent: bool | None, age: float | None) -> WitnessStatus:
        return WitnessStatus(recent, age, "active", None, 51820, None)

    assert seen_while_we_sent(status(True, 0.4), 5.7) is True  # WireGuard's retry at 5.3 s
    assert seen_while_we_sent(status(True, 5.2), 5.7) is False  # just before we started
    assert seen_while_we_sent(status(True, 20.0), 5.7) is False
    assert seen_while_we_sent(status(False, None), 5.7) is False
    assert seen_while_we_sent(status(None, None), 5.7) is None


# -- tunnel.mtu over loopback ---------------------------------------------------------------------


def test_mtu_passes_when_the_config_mtu_gets_through(witness_port: int) -> None:
    began = time.monotonic()
    outcome = run(MtuCheck(), config(witness_port, mtu=1380))
    assert outcome.status is Status.passed, outcome.summary
    assert outcome.metrics["largest_through_tunnel"] == 1380
    assert time.monotonic() - began < 1.5


def test_mtu_without_a_witness_is_skipped_with_the_reason() -> None:
    outcome = run(MtuCheck(), config(9), budget=3.0)
    assert outcome.status is Status.skip
    assert "neither the gateway witness nor the DNS server answered" in outcome.summary


def test_a_handshake_after_we_started_proves_the_tunnel(witness_port: int) -> None:
    from netsetup.diagnose.checks.tunnelsilence import fresh_handshake
    from netsetup.diagnose.wgstate import InterfaceState, PeerState, Unreadable

    cfg = config(witness_port)
    view = CheckContext(DiagnoseContext(cfg), time.monotonic() + 5)
    started = time.time()

    def state(handshake: int) -> InterfaceState:
        peer = PeerState(GATEWAY.public, "127.0.0.1:51820", handshake, 92, 148, None)
        return InterfaceState("wg-test", CLIENT.public, 51000, (peer,), "wg")

    passed = fresh_handshake(view, state(int(started) + 1), started)
    assert passed is not None and passed.status is Status.passed
    assert passed.metrics["answered_by"] == "wireguard"
    assert fresh_handshake(view, state(int(started) - 30), started) is None  # an old one
    assert fresh_handshake(view, Unreadable("needs administrator rights"), started) is None
