"""The witness's answers, packet in, packet out (no sockets): who learns what, replays, clocks."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from netsetup.keys import KeyPair, fingerprint, generate_keypair
from netsetup.responder import auth
from netsetup.responder.client import KeyMismatch, WitnessStatus, _Asker
from netsetup.responder.witness import Limits, Witness

from .support import NOW, FakeGateway, peer

HOME = "198.51.100.2"


def asker(client: KeyPair, gateway_public: str) -> _Asker:
    raw = auth.raw_key
    query_key, answer_key = auth.shared_keys(
        raw(client.private.reveal()), raw(gateway_public), raw(client.public), raw(gateway_public)
    )
    return _Asker(raw(client.public), query_key, answer_key)


def witness(gateway: FakeGateway, wall_ms: int | None = None) -> Witness:
    clock = (lambda: wall_ms) if wall_ms is not None else (lambda: int(time.time() * 1000))
    return Witness(gateway, Limits(), wall_ms=clock)


def ask(w: Witness, a: _Asker, source: str = HOME) -> WitnessStatus | KeyMismatch | int | None:
    query = a.query()
    answer = w.handle(query, source)
    if answer is None:
        return None
    assert len(answer) <= len(query)
    return a.answer(answer)


def test_an_active_peer_learns_its_own_state() -> None:
    client = generate_keypair()
    gateway = FakeGateway(seen={HOME: 3.0})
    gateway.handshakes[client.public] = int(time.time()) - 42
    gateway.files[client.public] = peer("ana", client.public)
    found = ask(witness(gateway), asker(client, gateway.key.public))
    assert isinstance(found, WitnessStatus)
    assert found.key_state == "active" and found.seen_recently is True
    assert found.seen_age_s == 3.0 and found.listen_port == 51820
    assert found.last_handshake_age_s is not None and 41 <= found.last_handshake_age_s <= 44
    assert found.public_address == HOME


@pytest.mark.parametrize(
    ("status", "expires", "in_wg", "state"),
    [
        ("revoked", None, False, "revoked"),
        ("revoked", None, True, "revoked"),  # not yet synced: the profile decides
        ("active", NOW - timedelta(days=1), False, "expired"),
        ("active", None, False, "unknown"),  # in the files, but the gateway never got it
        (None, None, False, "unknown"),
        (None, None, True, "active"),  # on the gateway, whatever the files say
    ],
)
def test_key_states(status: str | None, expires: object, in_wg: bool, state: str) -> None:
    client = generate_keypair()
    gateway = FakeGateway()
    if status is not None:
        gateway.files[client.public] = peer("ana", client.public, status, expires)  # type: ignore[arg-type]
    if in_wg:
        gateway.handshakes[client.public] = 0
    # the peer's expiry is judged at the witness's clock: put it at NOW
    found = ask(
        witness(gateway, int(NOW.timestamp() * 1000)),
        _fixed_clock(asker(client, gateway.key.public)),
    )
    assert isinstance(found, WitnessStatus)
    assert found.key_state == state
    assert found.last_handshake_age_s is None  # 0 in the dump: never


def _fixed_clock(a: _Asker) -> _Asker:
    a.offset_ms = int(NOW.timestamp() * 1000) - int(time.time() * 1000)
    return a


def test_not_seen_and_unreadable_record_are_told_apart() -> None:
    client = generate_keypair()
    gateway = FakeGateway(seen={HOME: 400.0, "203.0.113.9": 1.0})
    found = ask(witness(gateway), asker(client, gateway.key.public))
    assert isinstance(found, WitnessStatus)
    assert found.seen_recently is False and found.seen_age_s == 400.0  # only my own address
    gateway.seen = {}
    found = ask(witness(gateway), asker(client, gateway.key.public))
    assert isinstance(found, WitnessStatus)
    assert found.seen_recently is False and found.seen_age_s is None
    gateway.seen = None  # the firewall's sets are not there
    found = ask(witness(gateway), asker(client, gateway.key.public))
    assert isinstance(found, WitnessStatus) and found.seen_recently is None


def test_a_changed_gateway_key_is_named_by_its_fingerprint() -> None:
    client = generate_keypair()
    old = generate_keypair()
    gateway = FakeGateway()  # runs with a key that is not the one the client has
    found = ask(witness(gateway), asker(client, old.public))
    assert found == KeyMismatch(fingerprint(gateway.key.public))
    assert gateway.reads == 2  # the key was read again before saying so


def test_a_query_macd_with_another_key_gets_no_status() -> None:
    """Knowing a peer's public key is not enough: the tag must come from its private key."""
    victim = generate_keypair()
    gateway = FakeGateway()
    gateway.files[victim.public] = peer("ana", victim.public)
    gateway.handshakes[victim.public] = int(time.time())
    attacker = asker(generate_keypair(), gateway.key.public)
    attacker.client_public = auth.raw_key(victim.public)  # claims to be the victim
    query = attacker.query()
    answer = witness(gateway).handle(query, HOME)
    assert answer is not None and auth.packet_type(answer) == auth.T_MISMATCH
    assert len(answer) < len(query)
    assert victim.public.encode() not in answer and b"active" not in answer


def test_the_answer_is_sealed_for_the_asker_only() -> None:
    client = generate_keypair()
    gateway = FakeGateway()
    a = asker(client, gateway.key.public)
    query = a.query()
    answer = witness(gateway).handle(query, HOME)
    assert answer is not None
    other = asker(generate_keypair(), gateway.key.public)
    other.nonces = a.nonces
    assert other.answer(answer) is None  # another key cannot open it
    assert isinstance(a.answer(answer), WitnessStatus)


def test_a_replay_is_refused() -> None:
    client = generate_keypair()
    gateway = FakeGateway()
    w = witness(gateway)
    query = asker(client, gateway.key.public).query()
    assert w.handle(query, HOME) is not None
    assert w.handle(query, HOME) is None
    assert w.handle(query, "203.0.113.7") is None  # from elsewhere too


def test_a_client_clock_off_by_an_hour_gets_the_witness_clock_then_an_answer() -> None:
    client = generate_keypair()
    gateway = FakeGateway()
    w = witness(gateway)
    a = asker(client, gateway.key.public)
    a.offset_ms = -3_600_000
    stale = ask(w, a)
    assert isinstance(stale, int) and abs(stale - time.time() * 1000) < 5000
    a.offset_ms = stale - int(time.time() * 1000)
    assert isinstance(ask(w, a), WitnessStatus)


def test_probes_are_acked_with_the_size_and_never_echoed() -> None:
    w = Witness(FakeGateway(), None)
    from netsetup.responder.client import probe_payload, probe_reply_size

    for size in (auth.PROBE_MIN_SIZE, 100, 1400, 9000, auth.MAX_UDP):
        packet, token = probe_payload(size)
        assert len(packet) == size
        ack = w.handle(packet, HOME)
        assert ack is not None and len(ack) <= size
        assert probe_reply_size(ack, token) == size
        assert probe_reply_size(ack, os.urandom(16)) is None
    with pytest.raises(ValueError):
        probe_payload(auth.PROBE_MIN_SIZE - 1)
    short = auth.build_probe(auth.PROBE_MIN_SIZE, bytes(16))[:-1]
    assert w.handle(short, HOME) is None  # an ack would be longer than it


def test_every_prefix_is_rate_limited_and_so_is_the_whole() -> None:
    w = Witness(FakeGateway(), Limits(per_source=1, per_source_burst=5, total=1, total_burst=8))
    packet = auth.build_probe(64, bytes(16))
    answered = sum(w.handle(packet, HOME) is not None for _ in range(20))
    assert answered == 5
    same_prefix = sum(w.handle(packet, f"198.51.100.{i}") is not None for i in range(20))
    assert same_prefix == 0  # an anonymous asker is its /24
    others = sum(w.handle(packet, f"203.0.{i}.1") is not None for i in range(20))
    assert others == 3  # the global bucket had 8


def _sip_scan() -> bytes:
    from netsetup.diagnose import sip

    return sip.options("udp", ("198.51.100.7", 5060), ("203.0.113.1", 5060), None).data


def test_a_flood_of_junk_and_anonymous_asks_leaves_a_verified_asker_answered() -> None:
    """Spoofed junk, SIP scans, probes and queries with keys the gateway does not know (anyone
    can make one that verifies) from thousands of sources, each far under its own limit, use up
    every anonymous budget; a peer of the profile is still answered."""
    client = generate_keypair()
    gateway = FakeGateway(seen={HOME: 1.0})
    gateway.files[client.public] = peer("ana", client.public)
    w = witness(gateway)
    forged = asker(generate_keypair(), gateway.key.public)
    scan, probe = _sip_scan(), auth.build_probe(64, bytes(16))
    for i in range(5000):
        source = f"10.{i // 250 % 250}.{i % 250}.{i % 7}"
        for packet in (b"\x00junk" * 10, scan, probe, forged.query()):
            w.handle(packet, source)
    found = [ask(w, asker(client, gateway.key.public)) for _ in range(10)]
    assert all(isinstance(f, WitnessStatus) and f.public_address == HOME for f in found), found


def test_junk_that_gets_no_answer_costs_no_budget() -> None:
    w = Witness(FakeGateway(), Limits(per_source=1, per_source_burst=5, total=1, total_burst=8))
    for i in range(2000):
        assert w.handle(b"NSR1" + bytes(60), f"10.{i // 250}.{i % 250}.1") is None
    probe = auth.build_probe(64, bytes(16))
    assert sum(w.handle(probe, f"203.0.{i}.1") is not None for i in range(8)) == 8


def test_the_sip_mirror_has_a_budget_of_its_own() -> None:
    w = Witness(FakeGateway(), Limits(per_source=1, per_source_burst=5, total=1, total_burst=8))
    scan = _sip_scan()
    assert sum(w.handle(scan, f"10.{i}.0.1") is not None for i in range(20)) == 8
    assert w.mirror(scan, "10.99.0.1") is None  # TCP shares the mirror's budget
    probe = auth.build_probe(64, bytes(16))
    assert sum(w.handle(probe, f"203.0.{i}.1") is not None for i in range(8)) == 8


def test_a_witness_without_a_key_says_nothing() -> None:
    gateway = FakeGateway()
    gateway.key = generate_keypair()
    a = asker(generate_keypair(), gateway.key.public)

    class Keyless(FakeGateway):
        def live(self, fresh: bool = False):  # type: ignore[no-untyped-def]
            from netsetup.responder.witness import LiveState

            return LiveState(None, 51820, {})

    assert Witness(Keyless(), None).handle(a.query(), HOME) is None
