"""The office responder's NSR1 wire format: round trips, and nothing that does not verify."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsetup.responder import office_wire as wire

TOKEN = bytes(range(32))
PUBLIC = bytes(range(100, 132))
KEY = wire.peer_key(TOKEN, PUBLIC)
TAG = wire.key_tag(PUBLIC)
KEYS = {TAG: KEY}


def _session(session: int = 7) -> wire.OfficeSession:
    return wire.OfficeSession(KEY, TAG, session)


def _parsed(data: bytes) -> wire.Request:
    found = wire.parse_request(data, KEYS)
    assert found is not None
    key, request = found
    assert key == KEY
    return request


def test_keys_differ_per_peer_and_per_token() -> None:
    other_public = bytes(range(1, 33))
    assert len(KEY) == 32 and len(TAG) == 8
    assert wire.peer_key(TOKEN, other_public) != KEY
    assert wire.peer_key(bytes(32), PUBLIC) != KEY
    assert wire.key_tag(other_public) != TAG
    assert KEY not in TAG and PUBLIC[:8] != TAG
    with pytest.raises(ValueError):
        wire.peer_key(TOKEN[:16], PUBLIC)


def test_probe_reflect_round_trip_keeps_the_size() -> None:
    client = _session()
    probe = client.probe(41, 123_456_789, size=200)
    assert len(probe) == 200
    request = _parsed(probe)
    assert (request.kind, request.seq, request.t1_ns, request.session) == (
        wire.T_PROBE,
        41,
        123_456_789,
        7,
    )
    answer = wire.reflect(KEY, request, 1_000, 2_000, 5, 6)
    assert len(answer) == len(probe)
    assert client.parse(answer) == wire.Reflect(41, 123_456_789, 1_000, 2_000, 5, 6, 200)


@pytest.mark.parametrize("size", [wire.MIN_PROBE_SIZE, 172, wire.MAX_PROBE_SIZE])
def test_probe_sizes(size: int) -> None:
    probe = _session().probe(1, 2, size)
    assert len(probe) == size
    assert len(wire.reflect(KEY, _parsed(probe), 3, 4, 5, 6)) == size


@pytest.mark.parametrize("size", [wire.MIN_PROBE_SIZE - 1, wire.MAX_PROBE_SIZE + 1])
def test_probe_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        _session().probe(1, 2, size)


def test_hello_caps_round_trip() -> None:
    client = _session()
    hello = client.hello()
    caps = wire.Caps(99, ("192.0.2.40", "2001:db8::40"), 4789, 1400)
    answer = wire.caps_reply(KEY, _parsed(hello), caps)
    assert len(answer) <= len(hello)
    assert client.parse(answer) == caps
    none = wire.caps_reply(KEY, _parsed(hello), wire.Caps(1, (), None, 1400))
    assert client.parse(none) == wire.Caps(1, (), None, 1400)


def test_summary_round_trip() -> None:
    client = _session()
    ask = client.summary()
    answer = wire.summary_reply(KEY, _parsed(ask), 1098, 1097, 0, 1099)
    assert len(answer) <= len(ask)
    assert client.parse(answer) == wire.Summary(1098, 1097, 0, 1099)


def test_rtp_open_and_call_round_trip() -> None:
    client = _session()
    ports = [10000, 10002, 19998]
    opened = _parsed(client.rtp_open(ports))
    called = _parsed(client.rtp_call(ports[:1]))
    assert opened.ports == tuple(ports) and opened.kind == wire.T_RTP_OPEN
    assert called.ports == (10000,) and called.kind == wire.T_RTP_CALL
    assert client.parse(wire.rtp_ack(KEY, opened, [10002])) == wire.RtpAck((10002,))
    assert client.parse(wire.rtp_ack(KEY, called, [10000])) == wire.RtpAck((10000,))
    with pytest.raises(ValueError):
        client.rtp_open(list(range(10000, 10017)))


def test_answers_are_not_requests_and_requests_not_answers() -> None:
    client = _session()
    probe = client.probe(1, 2)
    answer = wire.reflect(KEY, _parsed(probe), 3, 4, 5, 6)
    assert wire.parse_request(answer, KEYS) is None
    assert client.parse(probe) is None


def test_other_session_or_key_is_not_ours() -> None:
    client = _session(7)
    answer = wire.reflect(KEY, _parsed(client.probe(1, 2)), 3, 4, 5, 6)
    assert _session(8).parse(answer) is None
    assert wire.OfficeSession(bytes(32), TAG, 7).parse(answer) is None
    assert wire.parse_request(client.probe(1, 2), {TAG: bytes(32)}) is None
    assert wire.parse_request(client.probe(1, 2), {}) is None


def test_tampered_short_and_foreign_packets_are_refused() -> None:
    client = _session()
    for packet in (client.hello(), client.probe(1, 2), client.summary(), client.rtp_open([10000])):
        assert wire.parse_request(packet, KEYS) is not None
        for i in range(len(packet)):
            flipped = bytearray(packet)
            flipped[i] ^= 0x01
            assert wire.parse_request(bytes(flipped), KEYS) is None, i
        for cut in range(len(packet)):
            assert wire.parse_request(packet[:cut], KEYS) is None
        assert wire.parse_request(packet + b"\0", KEYS) is None
    assert wire.parse_request(b"NSW1" + bytes(200), KEYS) is None
    assert wire.parse_request(b"", KEYS) is None


def test_a_probe_one_byte_longer_is_a_new_authentic_probe_only_with_a_new_mac() -> None:
    probe = _session().probe(1, 2, 200)
    assert wire.parse_request(probe + b"\0", KEYS) is None  # the MAC covers the length


def test_fixed_size_requests_with_nonzero_body_are_refused() -> None:
    # an authentic HELLO whose body is not zeros: a MAC'd packet, but not one we build
    bad = wire._sealed(KEY, wire.T_HELLO, TAG, 7, b"\x01", wire.HELLO_SIZE)
    assert wire.parse_request(bad, KEYS) is None


def test_speed_ticket() -> None:
    ticket = wire.speed_ticket(KEY, TAG, 1_000_000.0)
    assert ticket.isascii() and all(c.isalnum() or c in "-_" for c in ticket)
    assert wire.check_ticket(ticket, KEYS, 1_000_000.0)
    assert wire.check_ticket(ticket, KEYS, 1_000_119.0)
    assert not wire.check_ticket(ticket, KEYS, 1_000_121.0)  # expired
    assert not wire.check_ticket(ticket, {}, 1_000_000.0)  # a revoked peer
    assert not wire.check_ticket(ticket, {TAG: bytes(32)}, 1_000_000.0)
    flipped = ticket[:-3] + ("A" if ticket[-3] != "A" else "B") + ticket[-2:]
    assert not wire.check_ticket(flipped, KEYS, 1_000_000.0)
    assert not wire.check_ticket(ticket + "A", KEYS, 1_000_000.0)
    assert not wire.check_ticket("../../etc/passwd", KEYS, 1_000_000.0)
    long = wire.speed_ticket(KEY, TAG, 1_000_000.0, ttl_s=100_000)
    assert not wire.check_ticket(long, KEYS, 1_000_000.0)  # a life longer than allowed
    assert wire.ticket_expiry(ticket) == 1_000_120.0
    assert wire.ticket_expiry("../../etc/passwd") is None


def test_the_endpoint_accepts_no_ticket_living_longer_than_five_minutes() -> None:
    assert wire.check_ticket(wire.speed_ticket(KEY, TAG, 1_000_000.0, ttl_s=300), KEYS, 1e6)
    hour = wire.speed_ticket(KEY, TAG, 1_000_000.0, ttl_s=3600)
    assert not wire.check_ticket(hour, KEYS, 1_000_000.0)


def test_repr_shows_no_key() -> None:
    client = wire.OfficeSession(KEY, TAG, 7)
    assert KEY.hex() not in repr(client) and repr(KEY) not in repr(client)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=1500))
def test_random_bytes_never_parse(data: bytes) -> None:
    assert wire.parse_request(data, KEYS) is None
    assert _session().parse(data) is None


@settings(max_examples=300, deadline=None)
@given(
    st.integers(wire.MIN_PROBE_SIZE, wire.MAX_PROBE_SIZE),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)
def test_reflect_is_never_longer_than_its_probe(size: int, seq: int, t1: int, t: int) -> None:
    client = wire.OfficeSession(KEY, TAG)
    probe = client.probe(seq, t1, size)
    answer = wire.reflect(KEY, _parsed(probe), t, t, seq + 1, seq)
    assert len(answer) == len(probe)
    got = client.parse(answer)
    assert isinstance(got, wire.Reflect) and (got.seq, got.t1_ns, got.size) == (seq, t1, size)


def test_every_answer_kind_fits_in_its_request() -> None:
    client = _session()
    caps = wire.Caps(2**63, ("2001:db8::1",) * 4, 65535, 1400)
    assert len(wire.caps_reply(KEY, _parsed(client.hello()), caps)) <= wire.HELLO_SIZE
    summary = wire.summary_reply(KEY, _parsed(client.summary()), 2**32 - 1, 1, 2, 3)
    assert len(summary) <= wire.SUMMARY_SIZE
    sixteen = list(range(10000, 10016))
    assert len(wire.rtp_ack(KEY, _parsed(client.rtp_open(sixteen)), sixteen)) <= wire.RTP_SIZE
