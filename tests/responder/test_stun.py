"""STUN on the witness port: the codec against the RFC 5769 test vectors, the witness's answers
(never larger than the request, RESPONSE-PORT only for a signed request of an active peer), and
the client over real sockets on the loopback (the mapping, the binding-lifetime machinery)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from netsetup.keys import generate_keypair
from netsetup.responder import stun
from netsetup.responder.client import (
    binding_lifetime,
    lifetime_keys,
    stun_mapping,
)
from netsetup.responder.witness import Limits, Witness, open_sockets, serve

from .support import FakeGateway, peer

# RFC 5769 section 2.1: sample request (software "STUN test client", username "evtj:h6vY")
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e2074657374"
    "20636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576"
    "746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571"
    "a280280004e57a3bcf"
)
# 2.2: IPv4 response, mapped address 192.0.2.1 port 32853
SAMPLE_V4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f"
    "7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53"
    "f06be7d780280004c07d4c96"
)
# 2.3: IPv6 response, mapped address 2001:db8:1234:5678:11:2233:4455:6677 port 32853
SAMPLE_V6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f"
    "7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e"
    "4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"
)
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def test_rfc5769_request_parses_with_fingerprint_and_integrity() -> None:
    message = stun.parse(SAMPLE_REQUEST)
    assert message.kind == stun.BINDING_REQUEST and message.txid == TXID
    assert message.first(stun.SOFTWARE) == b"STUN test client"
    assert message.first(0x0006) == b"evtj:h6vY"  # USERNAME, its padding not in the value
    assert stun.integrity_ok(SAMPLE_REQUEST, PASSWORD)
    assert not stun.integrity_ok(SAMPLE_REQUEST, b"wrong password")


def test_rfc5769_responses_give_the_mapped_addresses() -> None:
    assert stun.mapped_address(SAMPLE_V4_RESPONSE, TXID) == ("192.0.2.1", 32853)
    v6 = stun.mapped_address(SAMPLE_V6_RESPONSE, TXID)
    assert v6 == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    for vector in (SAMPLE_V4_RESPONSE, SAMPLE_V6_RESPONSE):
        assert stun.integrity_ok(vector, PASSWORD)
    assert stun.mapped_address(SAMPLE_V4_RESPONSE, bytes(12)) is None  # another transaction


def test_our_encoding_reproduces_the_vectors_xor_mapped_address() -> None:
    assert stun.xor_address("192.0.2.1", 32853, TXID) == bytes.fromhex("0001a147e112a643")
    v6 = stun.xor_address("2001:db8:1234:5678:11:2233:4455:6677", 32853, TXID)
    assert v6 == bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")


def test_a_broken_fingerprint_or_length_is_refused() -> None:
    broken = bytearray(SAMPLE_V4_RESPONSE)
    broken[-1] ^= 1
    with pytest.raises(stun.Malformed):
        stun.parse(bytes(broken))
    with pytest.raises(stun.Malformed):
        stun.parse(SAMPLE_V4_RESPONSE[:-4])
    assert stun.mapped_address(bytes(broken), TXID) is None


def test_our_request_and_answer_round_trip() -> None:
    txid = os.urandom(12)
    request = stun.binding_request(txid)
    assert len(request) == stun.REQUEST_SIZE
    assert stun.parse(request).kind == stun.BINDING_REQUEST
    answer = stun.binding_answer(txid, "198.51.100.7", 40000)
    assert stun.mapped_address(answer, txid) == ("198.51.100.7", 40000)


# -- the witness's answers ----------------------------------------------------------------------


def _witness(gateway: FakeGateway | None = None) -> tuple[Witness, FakeGateway]:
    gateway = gateway or FakeGateway()
    return Witness(gateway, None), gateway


def test_the_witness_answers_a_padded_request_with_the_senders_mapping() -> None:
    witness, _ = _witness()
    txid = os.urandom(12)
    request = stun.binding_request(txid)
    routed = witness.route(request, "203.0.113.9", 5555)
    assert routed is not None
    answer, port = routed
    assert port == 5555 and len(answer) <= len(request)
    assert stun.mapped_address(answer, txid) == ("203.0.113.9", 5555)
    six = witness.route(request, "2001:db8::9", 6000)
    assert six is not None and stun.mapped_address(six[0], txid) == ("2001:db8::9", 6000)


def test_a_bare_request_gets_nothing_its_answer_would_be_larger() -> None:
    witness, _ = _witness()
    bare = stun.build(stun.BINDING_REQUEST, os.urandom(12), [], with_fingerprint=False)
    assert len(bare) == 20
    assert witness.handle(bare, "203.0.113.9", 5555) is None
    answers = stun.build(stun.BINDING_SUCCESS, os.urandom(12), [], with_fingerprint=True)
    assert witness.handle(answers.ljust(64, b"\0"), "203.0.113.9", 5555) is None


def _signed(
    gateway: FakeGateway, response_port: int, *, stamp: int | None = None, txid: bytes = b""
) -> tuple[bytes, bytes]:
    client = generate_keypair()
    gateway.handshakes[client.public] = int(time.time())
    keys = lifetime_keys(client.private, gateway.key.public)
    assert keys is not None
    txid = txid or os.urandom(12)
    when = stamp if stamp is not None else int(time.time() * 1000)
    request = stun.binding_request(
        txid,
        size=128,
        response_port=response_port,
        signed_by=(keys.query_key, keys.client_public, when),
    )
    return request, txid


def test_response_port_only_for_a_signed_request_of_an_active_peer() -> None:
    witness, gateway = _witness()
    request, txid = _signed(gateway, 40001)
    routed = witness.route(request, "203.0.113.9", 5555)
    assert routed is not None and routed[1] == 40001
    assert stun.mapped_address(routed[0], txid) == ("203.0.113.9", 5555)
    assert witness.route(request, "203.0.113.9", 5555) is None  # a replay gets nothing

    unsigned = stun.binding_request(os.urandom(12), size=128, response_port=40001)
    assert witness.route(unsigned, "203.0.113.9", 5555) is None
    stale, _ = _signed(gateway, 40001, stamp=int(time.time() * 1000) - 3_600_000)
    assert witness.route(stale, "203.0.113.9", 5555) is None

    # a valid signature for another port: the port is part of what is signed
    other, _ = _signed(gateway, 40001)
    at = other.index(struct.pack("!HH", stun.RESPONSE_PORT, 4)) + 4
    forged = other[:at] + struct.pack("!H", 40002) + other[at + 2 : -8]
    forged += struct.pack("!HHI", stun.FINGERPRINT, 4, stun.fingerprint(forged))
    assert witness.route(forged, "203.0.113.9", 5555) is None


def test_response_port_refused_for_a_revoked_peer() -> None:
    witness, gateway = _witness()
    client = generate_keypair()
    gateway.files[client.public] = peer("gone", client.public, status="revoked")
    keys = lifetime_keys(client.private, gateway.key.public)
    assert keys is not None
    txid = os.urandom(12)
    request = stun.binding_request(
        txid,
        size=128,
        response_port=40001,
        signed_by=(keys.query_key, keys.client_public, int(time.time() * 1000)),
    )
    assert witness.route(request, "203.0.113.9", 5555) is None


# -- over real sockets ------------------------------------------------------------------------


@pytest.fixture
def witness_port() -> Iterator[tuple[FakeGateway, int]]:
    gateway = FakeGateway()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sockets = open_sockets(["127.0.0.1"], port)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(gateway, Limits()), sockets, stop))
    thread.start()
    try:
        yield gateway, port
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close()


def test_the_client_learns_its_mapping(witness_port: tuple[FakeGateway, int]) -> None:
    _, port = witness_port
    mapping = stun_mapping(("127.0.0.1", port), 2.0)
    assert mapping is not None
    assert mapping.mapped == mapping.local and not mapping.translated


def test_the_lifetime_machinery_gets_answers_at_the_mapped_port(
    witness_port: tuple[FakeGateway, int],
) -> None:
    """No NAT on the loopback: every binding 'lives', so each signed RESPONSE-PORT answer must
    have reached the socket it was sent for (the idle times are short: the method, not the
    NAT)."""
    gateway, port = witness_port
    client = generate_keypair()
    gateway.handshakes[client.public] = int(time.time())
    keys = lifetime_keys(client.private, gateway.key.public)
    assert keys is not None
    results = binding_lifetime(("127.0.0.1", port), [0.2, 0.6], keys, time.monotonic() + 10)
    assert results == {0.2: True, 0.6: True}


def test_the_lifetime_of_an_unknown_key_is_not_answered(
    witness_port: tuple[FakeGateway, int],
) -> None:
    _, port = witness_port
    stranger = generate_keypair()  # the witness's gateway never saw this key
    keys = lifetime_keys(stranger.private, generate_keypair().public)
    assert keys is not None
    results = binding_lifetime(("127.0.0.1", port), [0.2], keys, time.monotonic() + 5)
    assert results == {0.2: False}
