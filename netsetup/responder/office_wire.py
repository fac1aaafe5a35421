"""The office responder's wire format (NSR1), both sides, its per-peer keys and speed tickets.

Every packet, either way (all integers big-endian):

    magic "NSR1"(4) type(1) flags(1) key_tag(8) session(8)  body  tag(16)
    tag = BLAKE2s-128 keyed with the peer's responder key, over everything before it.

The peer's responder key is `peer_key(token, peer_public)`: the office keeps one random token per
profile and derives every peer's key from it, so it needs no list of keys, only the active peers'
public keys (a revoked peer's tag maps to nothing and gets no answer). `key_tag` names the key
without revealing it. Requests and answers have distinct types, so an answer cannot be replayed
as a request.

    HELLO (0x01), HELLO_SIZE bytes, body zero    -> CAPS (0x81): server_time_ns(8) http_port(2)
        max_size(2) count(1) count x (family(1) address(16)); never longer than the HELLO.
    PROBE (0x10): seq(4) t1_ns(8) pad, MIN_PROBE_SIZE..MAX_PROBE_SIZE bytes in all
        -> REFLECT (0x90), exactly as long: seq(4) t1_ns(8) t2_ns(8) t3_ns(8) rseq(4)
        rx_count(4) zero pad. t1 is the client's clock, t2 (received) and t3 (sent) the
        responder's monotonic clock: RTT = (t4 - t1) - (t3 - t2), and the jitter of each
        direction follows without synchronised clocks (STAMP, RFC 8762, has the same shape).
    SUMMARY (0x11), SUMMARY_SIZE bytes, body zero -> (0x91): rx_count(4) tx_count(4)
        first_seq(4) last_seq(4) of the session: forward loss = sent - rx_count, backward loss
        = tx_count - reflects received.
    RTP-OPEN (0x20) / RTP-CALL (0x21), RTP_SIZE bytes: count(1) 16 x port(2) (unused zero)
        -> RTP-ACK (0xA0 / 0xA1), the same layout and size: OPEN is answered from each port the
        responder opened on its media address; CALL by one datagram from the media address to
        each asked port of the asker.

Nothing that does not verify is answered, and no answer is longer than its request.

A speed ticket (the HTTP speed endpoint's path, `/t/<ticket>/...`) is
b64url(key_tag(8) expiry_s(4) BLAKE2s-128(key, "NSR1-ticket" key_tag expiry)), unpadded.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The interpreter's own BLAKE2 and constant-time compare: `hashlib` and `hmac` load the system's
# OpenSSL (~5 ms), and provision derives a responder key on every run. Same digests either way.
try:
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2s
try:
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover
    from hmac import compare_digest  # type: ignore[no-redef]

MAGIC = b"NSR1"
T_HELLO = 0x01
T_PROBE = 0x10
T_SUMMARY = 0x11
T_RTP_OPEN = 0x20
T_RTP_CALL = 0x21
T_CAPS = 0x81
T_REFLECT = 0x90
T_SUMMARY_REPLY = 0x91
T_RTP_OPEN_ACK = 0xA0
T_RTP_CALL_ACK = 0xA1
REQUESTS = (T_HELLO, T_PROBE, T_SUMMARY, T_RTP_OPEN, T_RTP_CALL)

KEY_BYTES = 32
TAG_BYTES = 16
KEY_TAG_BYTES = 8
TOKEN_BYTES = 32

_HEADER = struct.Struct("!4sBB8sQ")  # magic, type, flags, key tag, session
_PROBE = struct.Struct("!IQ")  # seq, t1
_REFLECT = struct.Struct("!IQQQII")  # seq, t1, t2, t3, rseq, rx_count
_SUMMARY = struct.Struct("!IIII")  # rx, tx, first seq, last seq
_CAPS = struct.Struct("!QHHB")  # server time, http port, max size, media count
_ADDRESS = struct.Struct("!B16s")  # family (4 or 6), address (v4 right-aligned)
MAX_PORTS = 16
_PORTS = struct.Struct(f"!B{MAX_PORTS}H")

OVERHEAD = _HEADER.size + TAG_BYTES
MIN_PROBE_SIZE = OVERHEAD + _REFLECT.size  # the reflect's fields must fit in the probe
MAX_PROBE_SIZE = 1400  # below the tunnel's MTU (1380 + the outer headers) with room to spare
MAX_MEDIA = 4
HELLO_SIZE = OVERHEAD + _CAPS.size + MAX_MEDIA * _ADDRESS.size
SUMMARY_SIZE = OVERHEAD + _SUMMARY.size
RTP_SIZE = OVERHEAD + _PORTS.size
_FIXED_SIZES = {T_HELLO: HELLO_SIZE, T_SUMMARY: SUMMARY_SIZE, T_RTP_OPEN: RTP_SIZE}
_FIXED_SIZES[T_RTP_CALL] = RTP_SIZE
TICKET_TTL_S = 120
MAX_TICKET_TTL_S = 300  # a ticket claiming a longer life is refused
_TICKET = struct.Struct(f"!{KEY_TAG_BYTES}sI")
_TICKET_LABEL = b"NSR1-ticket"
_TICKET_TEXT = re.compile(r"[A-Za-z0-9_-]{38}")  # 28 bytes, unpadded


# -- keys -----------------------------------------------------------------------------------------


def peer_key(token: bytes, peer_public: bytes) -> bytes:
    """The responder key of the peer whose raw (32-byte) public key is `peer_public`."""
    if len(token) != TOKEN_BYTES or len(peer_public) != KEY_BYTES:
        raise ValueError("a responder token and a public key are 32 bytes each")
    return blake2s(peer_public, key=token, digest_size=32, person=b"nsr1-key").digest()


def key_tag(peer_public: bytes) -> bytes:
    """The 8 bytes that name a peer's responder key in its packets (not secret)."""
    return blake2s(peer_public, digest_size=KEY_TAG_BYTES, person=b"nsr1-tag").digest()


def new_token() -> bytes:
    return os.urandom(TOKEN_BYTES)


def _mac(key: bytes, data: bytes) -> bytes:
    return blake2s(data, key=key, digest_size=TAG_BYTES).digest()


def _sealed(key: bytes, kind: int, tag: bytes, session: int, body: bytes, size: int = 0) -> bytes:
    """A packet of `kind` carrying `body`, zero-padded to `size` bytes in all (when larger)."""
    signed = _HEADER.pack(MAGIC, kind, 0, tag, session) + body
    signed = signed.ljust(size - TAG_BYTES, b"\0")
    return signed + _mac(key, signed)


@dataclass(frozen=True)
class _Opened:
    kind: int
    tag: bytes
    session: int
    body: bytes  # between the header and the MAC


def _head(data: bytes) -> tuple[int, bytes, int] | None:
    """(type, key tag, session) of a packet that could be NSR1, or None."""
    if len(data) < OVERHEAD or not data.startswith(MAGIC):
        return None
    _, kind, _, tag, session = _HEADER.unpack_from(data)
    return kind, tag, session


def _verified(key: bytes, data: bytes) -> bool:
    return compare_digest(_mac(key, data[:-TAG_BYTES]), data[-TAG_BYTES:])


def _ports(ports: Sequence[int]) -> bytes:
    if len(ports) > MAX_PORTS or not all(0 < p < 65536 for p in ports):
        raise ValueError(f"up to {MAX_PORTS} ports, each 1 to 65535")
    return _PORTS.pack(len(ports), *ports, *([0] * (MAX_PORTS - len(ports))))


def _unports(body: bytes) -> tuple[int, ...] | None:
    if len(body) != _PORTS.size:
        return None
    count, *ports = _PORTS.unpack(body)
    chosen = tuple(ports[:count])
    if count > MAX_PORTS or not all(chosen) or any(ports[count:]):
        return None
    return chosen


# -- what the client reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reflect:
    seq: int
    t1_ns: int
    t2_ns: int
    t3_ns: int
    rseq: int
    rx_count: int
    size: int


@dataclass(frozen=True)
class Summary:
    rx_count: int
    tx_count: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class Caps:
    server_time_ns: int
    media: tuple[str, ...]
    http_port: int | None
    max_size: int


@dataclass(frozen=True)
class RtpAck:
    ports: tuple[int, ...]  # ports the responder opened / called


Answer = Reflect | Summary | Caps | RtpAck


def _parse_caps(body: bytes) -> Caps | None:
    if len(body) < _CAPS.size:
        return None
    now, http, max_size, count = _CAPS.unpack_from(body)
    if count > MAX_MEDIA or len(body) < _CAPS.size + count * _ADDRESS.size:
        return None
    media = []
    for i in range(count):
        family, packed = _ADDRESS.unpack_from(body, _CAPS.size + i * _ADDRESS.size)
        if family == 4:
            media.append(str(ipaddress.IPv4Address(packed[12:])))
        elif family == 6:
            media.append(str(ipaddress.IPv6Address(packed)))
        else:
            return None
    return Caps(now, tuple(media), http or None, max_size)


def _parse_answer(kind: int, body: bytes, size: int) -> Answer | None:
    if kind == T_REFLECT and len(body) >= _REFLECT.size:
        seq, t1, t2, t3, rseq, rx_count = _REFLECT.unpack_from(body)
        return Reflect(seq, t1, t2, t3, rseq, rx_count, size)
    if kind == T_SUMMARY_REPLY and len(body) == _SUMMARY.size:
        return Summary(*_SUMMARY.unpack(body))
    if kind == T_CAPS:
        return _parse_caps(body)
    if kind in (T_RTP_OPEN_ACK, T_RTP_CALL_ACK):
        ports = _unports(body)
        return None if ports is None else RtpAck(ports)
    return None


class OfficeSession:
    """The client side of one measurement: builds its requests, reads the answers to them."""

    def __init__(self, key: bytes, tag: bytes, session: int | None = None) -> None:
        if len(key) != KEY_BYTES or len(tag) != KEY_TAG_BYTES:
            raise ValueError("a responder key is 32 bytes and its tag 8")
        self._key = key
        self.tag = tag
        self.session = int.from_bytes(os.urandom(8), "big") if session is None else session

    def __repr__(self) -> str:
        return f"OfficeSession(session={self.session:#018x})"

    def _request(self, kind: int, body: bytes, size: int) -> bytes:
        return _sealed(self._key, kind, self.tag, self.session, body, size)

    def hello(self) -> bytes:
        return self._request(T_HELLO, b"", HELLO_SIZE)

    def probe(self, seq: int, t1_ns: int, size: int = 200) -> bytes:
        """A PROBE of exactly `size` bytes (MIN_PROBE_SIZE to MAX_PROBE_SIZE)."""
        if not MIN_PROBE_SIZE <= size <= MAX_PROBE_SIZE:
            raise ValueError(f"a probe is {MIN_PROBE_SIZE} to {MAX_PROBE_SIZE} bytes, not {size}")
        return self._request(T_PROBE, _PROBE.pack(seq & 0xFFFFFFFF, t1_ns), size)

    def summary(self) -> bytes:
        return self._request(T_SUMMARY, b"", SUMMARY_SIZE)

    def rtp_open(self, ports: Sequence[int]) -> bytes:
        return self._request(T_RTP_OPEN, _ports(ports), RTP_SIZE)

    def rtp_call(self, ports: Sequence[int]) -> bytes:
        return self._request(T_RTP_CALL, _ports(ports), RTP_SIZE)

    def parse(self, data: bytes) -> Answer | None:
        """The answer in `data`, or None when it is not an authentic answer of this session."""
        head = _head(data)
        if head is None or head[1] != self.tag or head[2] != self.session:
            return None
        if head[0] not in (T_CAPS, T_REFLECT, T_SUMMARY_REPLY, T_RTP_OPEN_ACK, T_RTP_CALL_ACK):
            return None
        if not _verified(self._key, data):
            return None
        return _parse_answer(head[0], data[_HEADER.size : -TAG_BYTES], len(data))


# -- what the responder reads and writes ----------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """An authentic request, as the responder sees it."""

    kind: int
    tag: bytes
    session: int
    size: int  # bytes received: no answer may be longer
    seq: int = 0
    t1_ns: int = 0
    ports: tuple[int, ...] = field(default=())


def _size_ok(kind: int, size: int) -> bool:
    if kind == T_PROBE:
        return MIN_PROBE_SIZE <= size <= MAX_PROBE_SIZE
    return _FIXED_SIZES.get(kind) == size


def _request(kind: int, tag: bytes, session: int, body: bytes, size: int) -> Request | None:
    if kind == T_PROBE:
        seq, t1 = _PROBE.unpack_from(body)
        return Request(kind, tag, session, size, seq=seq, t1_ns=t1)
    if kind in (T_RTP_OPEN, T_RTP_CALL):
        ports = _unports(body)
        return None if ports is None else Request(kind, tag, session, size, ports=ports)
    return None if any(body) else Request(kind, tag, session, size)  # HELLO, SUMMARY: zeros


def parse_request(data: bytes, keys_by_tag: Mapping[bytes, bytes]) -> tuple[bytes, Request] | None:
    """(the peer's key, the request) for an authentic request from a known key, else None.
    Cheap checks (size, magic, type, known tag) come before the MAC."""
    head = _head(data)
    if head is None or head[0] not in REQUESTS or not _size_ok(head[0], len(data)):
        return None
    kind, tag, session = head
    key = keys_by_tag.get(tag)
    if key is None or not _verified(key, data):
        return None
    request = _request(kind, tag, session, data[_HEADER.size : -TAG_BYTES], len(data))
    return None if request is None else (key, request)


def reflect(
    key: bytes, request: Request, t2_ns: int, t3_ns: int, rseq: int, rx_count: int
) -> bytes:
    """The REFLECT of a PROBE: exactly as long as the probe."""
    if request.kind != T_PROBE:
        raise ValueError("only a probe is reflected")
    body = _REFLECT.pack(
        request.seq, request.t1_ns, t2_ns, t3_ns, rseq & 0xFFFFFFFF, rx_count & 0xFFFFFFFF
    )
    return _sealed(key, T_REFLECT, request.tag, request.session, body, request.size)


def summary_reply(
    key: bytes, request: Request, rx_count: int, tx_count: int, first_seq: int, last_seq: int
) -> bytes:
    if request.kind != T_SUMMARY:
        raise ValueError("only a summary request gets a summary")
    body = _SUMMARY.pack(*(v & 0xFFFFFFFF for v in (rx_count, tx_count, first_seq, last_seq)))
    return _sealed(key, T_SUMMARY_REPLY, request.tag, request.session, body, request.size)


def _packed_address(text: str) -> bytes:
    address = ipaddress.ip_address(text)
    return _ADDRESS.pack(address.version, address.packed.rjust(16, b"\0"))


def caps_reply(key: bytes, request: Request, caps: Caps) -> bytes:
    if request.kind != T_HELLO:
        raise ValueError("only a hello gets the capabilities")
    media = caps.media[:MAX_MEDIA]
    body = _CAPS.pack(
        caps.server_time_ns & 0xFFFFFFFFFFFFFFFF,
        caps.http_port or 0,
        min(caps.max_size, 0xFFFF),
        len(media),
    )
    body += b"".join(_packed_address(m) for m in media)
    return _sealed(key, T_CAPS, request.tag, request.session, body, request.size)


def rtp_ack(key: bytes, request: Request, ports: Sequence[int]) -> bytes:
    """The acknowledgement of an RTP-OPEN (sent from each opened port) or the datagram of an
    RTP-CALL (sent to each asked port): RTP_SIZE bytes, as long as the request."""
    kinds = {T_RTP_OPEN: T_RTP_OPEN_ACK, T_RTP_CALL: T_RTP_CALL_ACK}
    if request.kind not in kinds:
        raise ValueError("only an RTP request gets an RTP acknowledgement")
    body = _ports(ports)
    return _sealed(key, kinds[request.kind], request.tag, request.session, body, request.size)


# -- speed tickets --------------------------------------------------------------------------------


def speed_ticket(key: bytes, tag: bytes, now_s: float, ttl_s: int = TICKET_TTL_S) -> str:
    """A URL-safe ticket for the HTTP speed endpoint, valid `ttl_s` seconds from `now_s`."""
    signed = _TICKET.pack(tag, int(now_s) + ttl_s)
    raw = signed + _mac(key, _TICKET_LABEL + signed)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def ticket_expiry(ticket: str) -> float | None:
    """The expiry (Unix time) a ticket claims; None when it is not one. Not a check."""
    if not _TICKET_TEXT.fullmatch(ticket):
        return None
    try:
        raw = base64.urlsafe_b64decode(ticket + "==")
    except (binascii.Error, ValueError):
        return None
    return float(_TICKET.unpack_from(raw)[1])


def check_ticket(ticket: str, keys_by_tag: Mapping[bytes, bytes], now_s: float) -> bool:
    """Whether `ticket` is authentic, from a known key, and not expired."""
    if not _TICKET_TEXT.fullmatch(ticket):
        return False
    try:
        raw = base64.urlsafe_b64decode(ticket + "==")
    except (binascii.Error, ValueError):
        return False
    tag, expiry = _TICKET.unpack_from(raw)
    key = keys_by_tag.get(tag)
    if key is None or not now_s <= expiry <= now_s + MAX_TICKET_TTL_S:
        return False
    signed = raw[: _TICKET.size]
    return compare_digest(_mac(key, _TICKET_LABEL + signed), raw[_TICKET.size :])
