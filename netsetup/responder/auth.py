"""The witness's wire format, both directions, and the key its MACs use.

Every packet starts with MAGIC and a type byte. All integers are big-endian.

    STATUS query (client -> witness), exactly QUERY_SIZE bytes:
        magic(4) type=0x01(1) client_public(32) nonce(16) timestamp_ms(8) zero padding  tag(16)
        tag = BLAKE2s-128 keyed with the query key, over everything before it.
    STATUS answer (witness -> client):
        magic(4) type=0x81(1) nonce(16, the query's) box_nonce(12) ChaCha20-Poly1305(body)
        body = seen(1) seen_age_ds(4) key_state(1) handshake_age_s(4) listen_port(2)
               family(1) address(16)
        the query's header (magic, type, nonce) is the associated data.
    STALE answer: as STATUS, type=0x84, body = the witness's clock in unix ms(8): the query
        was authentic but its timestamp outside the window (the asker's clock is off).
    MISMATCH answer (the query's tag did not verify): magic(4) type=0x82(1) nonce(16)
        fingerprint of the gateway's current public key (ASCII, `netsetup.keys.fingerprint`).
    PROBE (either way in, unauthenticated): magic(4) type=0x03(1) token(16) anything, up to
        MAX_UDP bytes in all; ACK: magic(4) type=0x83(1) token(16) bytes_received(4).

The query key is X25519(client_private, gateway_public), which the gateway derives as
X25519(gateway_private, client_public), run through BLAKE2s with a label and both public keys;
the answer key is derived the same way with another label. The answer is encrypted, not only
MAC'd: a replayed or observed query teaches nobody the peer's state. No answer is longer than
the query it answers (QUERY_SIZE and PROBE_MIN_SIZE are chosen for that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MAGIC = b"NSW1"
T_QUERY = 0x01
T_PROBE = 0x03
T_STATUS = 0x81
T_MISMATCH = 0x82
T_ACK = 0x83
T_STALE = 0x84

KEY_BYTES = 32
NONCE_BYTES = 16
TAG_BYTES = 16
BOX_NONCE_BYTES = 12
TOKEN_BYTES = 16
MAX_UDP = 65507  # the largest UDP payload over IPv4

_HEAD = len(MAGIC) + 1
QUERY_SIZE = 128  # padded, so that every answer to it is smaller
_QUERY_FIELDS = _HEAD + KEY_BYTES + NONCE_BYTES + 8
_BODY = struct.Struct("!BIBIHB16s")
_STALE_BODY = struct.Struct("!Q")
_ACK = struct.Struct(f"!4sB{TOKEN_BYTES}sI")
PROBE_MIN_SIZE = _ACK.size  # an ack is never longer than its probe
NO_VALUE = 0xFFFFFFFF

KEY_STATES = ("active", "unknown", "revoked", "expired")
_SEEN = {0: False, 1: True, 2: None}


class Malformed(ValueError):
    """A packet that is not what it claims to be; the witness drops it without a word."""


# -- keys ---------------------------------------------------------------------------------------


def raw_key(text: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != KEY_BYTES:
        raise ValueError("not a 32-byte key")
    return raw


def shared_keys(
    private_raw: bytes, peer_public_raw: bytes, client_public_raw: bytes, gateway_public_raw: bytes
) -> tuple[bytes, bytes]:
    """(query key, answer key) from one side's private key and the other side's public key.

    Raises Malformed for a public key of small order (X25519 gives all zeros)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    try:
        private = X25519PrivateKey.from_private_bytes(private_raw)
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public_raw))
    except ValueError:
        raise Malformed("no shared secret with this key") from None
    if not any(shared):
        raise Malformed("no shared secret with this key")
    material = shared + client_public_raw + gateway_public_raw
    query = hashlib.blake2s(material, digest_size=32, person=b"nsw1-qry").digest()
    answer = hashlib.blake2s(material, digest_size=32, person=b"nsw1-ans").digest()
    return query, answer


def mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=TAG_BYTES).digest()


# -- the STATUS query ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A STATUS query as parsed (its tag not yet checked)."""

    client_public: bytes
    nonce: bytes
    timestamp_ms: int
    signed: bytes  # the bytes the tag covers
    tag: bytes

    def verifies(self, query_key: bytes) -> bool:
        return hmac.compare_digest(mac(query_key, self.signed), self.tag)


def build_query(client_public: bytes, query_key: bytes, nonce: bytes, timestamp_ms: int) -> bytes:
    fields = MAGIC + bytes([T_QUERY]) + client_public + nonce + struct.pack("!Q", timestamp_ms)
    signed = fields.ljust(QUERY_SIZE - TAG_BYTES, b"\0")
    return signed + mac(query_key, signed)


def parse_query(packet: bytes) -> Query:
    if len(packet) != QUERY_SIZE or packet[:_HEAD] != MAGIC + bytes([T_QUERY]):
        raise Malformed("not a status query")
    signed, tag = packet[:-TAG_BYTES], packet[-TAG_BYTES:]
    if any(signed[_QUERY_FIELDS:]):
        raise Malformed("padding is not zero")
    client = signed[_HEAD : _HEAD + KEY_BYTES]
    nonce = signed[_HEAD + KEY_BYTES : _HEAD + KEY_BYTES + NONCE_BYTES]
    (stamp,) = struct.unpack("!Q", signed[_HEAD + KEY_BYTES + NONCE_BYTES : _QUERY_FIELDS])
    return Query(client, nonce, stamp, signed, tag)


def packet_type(packet: bytes) -> int | None:
    if len(packet) < _HEAD or packet[:4] != MAGIC:
        return None
    return packet[4]


# -- the answers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What the witness tells the owner of a key (the body of a STATUS answer)."""

    seen_recently: bool | None
    seen_age_s: float | None
    key_state: str
    last_handshake_age_s: float | None
    listen_port: int | None
    public_address: str | None


def _box(answer_key: bytes) -> ChaCha20Poly1305:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(answer_key)


def _sealed(kind: int, nonce: bytes, answer_key: bytes, body: bytes) -> bytes:
    head = MAGIC + bytes([kind]) + nonce
    box_nonce = os.urandom(BOX_NONCE_BYTES)
    return head + box_nonce + _box(answer_key).encrypt(box_nonce, body, head)


def _opened(packet: bytes, kind: int, nonce: bytes, answer_key: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    head = MAGIC + bytes([kind]) + nonce
    if not packet.startswith(head):
        raise Malformed("not an answer to this query")
    box_nonce = packet[len(head) : len(head) + BOX_NONCE_BYTES]
    try:
        body: bytes = _box(answer_key).decrypt(
            box_nonce, packet[len(head) + BOX_NONCE_BYTES :], head
        )
    except InvalidTag:
        raise Malformed("the answer's tag does not verify") from None
    return body


def _seconds(value: float | None, scale: int = 1) -> int:
    if value is None:
        return NO_VALUE
    return max(0, min(NO_VALUE - 1, round(value * scale)))


def _address(text: str | None) -> tuple[int, bytes]:
    if text is None:
        return 0, bytes(16)
    address = ipaddress.ip_address(text)
    return address.version, address.packed.rjust(16, b"\0")


def build_status(nonce: bytes, answer_key: bytes, status: Status) -> bytes:
    seen = {False: 0, True: 1, None: 2}[status.seen_recently]
    family, packed = _address(status.public_address)
    body = _BODY.pack(
        seen,
        _seconds(status.seen_age_s, 10),
        KEY_STATES.index(status.key_state),
        _seconds(status.last_handshake_age_s),
        status.listen_port or 0,
        family,
        packed,
    )
    return _sealed(T_STATUS, nonce, answer_key, body)


def parse_status(packet: bytes, nonce: bytes, answer_key: bytes) -> Status:
    body = _opened(packet, T_STATUS, nonce, answer_key)
    if len(body) != _BODY.size:
        raise Malformed("a status body of the wrong size")
    seen, seen_age, state, handshake, port, family, packed = _BODY.unpack(body)
    if seen not in _SEEN or state >= len(KEY_STATES) or family not in (0, 4, 6):
        raise Malformed("a status body out of range")
    address = None
    if family == 4:
        address = str(ipaddress.IPv4Address(packed[12:]))
    elif family == 6:
        address = str(ipaddress.IPv6Address(packed))
    return Status(
        seen_recently=_SEEN[seen],
        seen_age_s=None if seen_age == NO_VALUE else seen_age / 10,
        key_state=KEY_STATES[state],
        last_handshake_age_s=None if handshake == NO_VALUE else float(handshake),
        listen_port=port or None,
        public_address=address,
    )


def build_stale(nonce: bytes, answer_key: bytes, now_ms: int) -> bytes:
    return _sealed(T_STALE, nonce, answer_key, _STALE_BODY.pack(now_ms))


def parse_stale(packet: bytes, nonce: bytes, answer_key: bytes) -> int:
    body = _opened(packet, T_STALE, nonce, answer_key)
    if len(body) != _STALE_BODY.size:
        raise Malformed("a clock body of the wrong size")
    (now_ms,) = _STALE_BODY.unpack(body)
    return int(now_ms)


MAX_FINGERPRINT = 64


def build_mismatch(nonce: bytes, fingerprint: str) -> bytes:
    return MAGIC + bytes([T_MISMATCH]) + nonce + fingerprint.encode("ascii")[:MAX_FINGERPRINT]


def parse_mismatch(packet: bytes, nonce: bytes) -> str:
    head = MAGIC + bytes([T_MISMATCH]) + nonce
    text = packet[len(head) :]
    if not packet.startswith(head) or not 0 < len(text) <= MAX_FINGERPRINT:
        raise Malformed("not a key mismatch answer to this query")
    if not all(0x21 <= b < 0x7F for b in text):
        raise Malformed("a fingerprint that is not printable")
    return text.decode("ascii")


# -- probes -------------------------------------------------------------------------------------


def build_probe(size: int, token: bytes) -> bytes:
    if not PROBE_MIN_SIZE <= size <= MAX_UDP:
        raise ValueError(f"a probe is {PROBE_MIN_SIZE} to {MAX_UDP} bytes, not {size}")
    return (MAGIC + bytes([T_PROBE]) + token).ljust(size, b"\0")


def probe_token(packet: bytes) -> bytes:
    if len(packet) < PROBE_MIN_SIZE or packet[:_HEAD] != MAGIC + bytes([T_PROBE]):
        raise Malformed("not a probe")
    return packet[_HEAD : _HEAD + TOKEN_BYTES]


def build_ack(token: bytes, received: int) -> bytes:
    return _ACK.pack(MAGIC, T_ACK, token, received)


def parse_ack(packet: bytes, token: bytes) -> int:
    if len(packet) != _ACK.size:
        raise Malformed("not an ack")
    magic, kind, got, received = _ACK.unpack(packet)
    if magic != MAGIC or kind != T_ACK or not hmac.compare_digest(got, token):
        raise Malformed("not an ack of this probe")
    return int(received)
