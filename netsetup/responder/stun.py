"""STUN (RFC 5389) Binding messages as the gateway witness answers them, and the attribute that
authenticates a RESPONSE-PORT request (RFC 5780) with the witness's key scheme.

    header (20 bytes): type(2, top two bits 0) length(2, of the attributes) cookie(4) txid(12)
    attribute: type(2) length(2) value, padded to 4 bytes
    XOR-MAPPED-ADDRESS 0x0020: 0, family (1 IPv4, 2 IPv6), port ^ 0x2112, address ^ cookie
        (IPv4) or ^ cookie + txid (IPv6)
    FINGERPRINT 0x8028: CRC-32 of the message before it ^ 0x5354554E (the length field already
        counting the fingerprint)
    PADDING 0x0026, RESPONSE-PORT 0x0027 (port, 2 zero bytes): answer to the request's source
        address at that port (RFC 5780 7.5)
    NETSETUP-AUTH 0xC0A7 (comprehension-optional, ours): client_public(32) timestamp_ms(8)
        tag(16), tag = BLAKE2s-128 keyed with the witness query key (`auth.shared_keys`) over
        LABEL + txid + response port + client_public + timestamp_ms.

The witness answers a Binding request only when the answer is no longer than the request (a bare
20-byte request gets nothing: the client pads with PADDING), and sends to another port only for a
request that carries a valid NETSETUP-AUTH of an active peer.
"""

from __future__ import annotations

import hmac
import ipaddress
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from netsetup.responder import auth

COOKIE = 0x2112A442
COOKIE_BYTES = struct.pack("!I", COOKIE)
HEADER = struct.Struct("!HHI12s")
HEADER_SIZE = HEADER.size
TXID_BYTES = 12

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

MESSAGE_INTEGRITY = 0x0008
XOR_MAPPED_ADDRESS = 0x0020
PADDING = 0x0026
RESPONSE_PORT = 0x0027
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
NETSETUP_AUTH = 0xC0A7

FINGERPRINT_XOR = 0x5354554E
AUTH_LABEL = b"nsw1-stun"
AUTH_VALUE = struct.Struct(f"!{auth.KEY_BYTES}sQ{auth.TAG_BYTES}s")
REQUEST_SIZE = 64  # what the client sends: larger than any answer (52 bytes for IPv6)
MAX_ATTRIBUTES = 32


class Malformed(ValueError):
    """Not a STUN message (or a broken one): the witness drops it without a word."""


@dataclass(frozen=True)
class Message:
    kind: int
    txid: bytes
    attributes: tuple[tuple[int, bytes], ...]

    def first(self, kind: int) -> bytes | None:
        return next((value for k, value in self.attributes if k == kind), None)


def looks_like_stun(packet: bytes) -> bool:
    """The demultiplexing test of RFC 5389 (section 8 of RFC 7983): the two top bits zero and the
    magic cookie in place."""
    return len(packet) >= HEADER_SIZE and packet[0] < 0x40 and packet[4:8] == COOKIE_BYTES


def _padded(length: int) -> int:
    return (length + 3) & ~3


def fingerprint(data: bytes) -> int:
    return (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def parse(packet: bytes) -> Message:
    """Every attribute of a STUN message; a FINGERPRINT, where present, must be the last one and
    must match. Raises Malformed."""
    if not looks_like_stun(packet):
        raise Malformed("not a STUN message")
    kind, length, _, txid = HEADER.unpack_from(packet)
    if length % 4 or HEADER_SIZE + length != len(packet):
        raise Malformed("a STUN length that does not match the packet")
    attributes: list[tuple[int, bytes]] = []
    at = HEADER_SIZE
    while at < len(packet):
        if len(attributes) >= MAX_ATTRIBUTES or at + 4 > len(packet):
            raise Malformed("too many or broken STUN attributes")
        code, size = struct.unpack_from("!HH", packet, at)
        end = at + 4 + size
        if end > len(packet):
            raise Malformed("a STUN attribute longer than the message")
        if code == FINGERPRINT and (size != 4 or _padded(end) != len(packet)):
            raise Malformed("FINGERPRINT is not the last attribute")
        if code == FINGERPRINT and struct.unpack_from("!I", packet, at + 4)[0] != fingerprint(
            packet[:at]
        ):
            raise Malformed("FINGERPRINT does not match")
        attributes.append((code, packet[at + 4 : end]))
        at = _padded(end)
    return Message(kind, txid, tuple(attributes))


def build(
    kind: int, txid: bytes, attributes: Sequence[tuple[int, bytes]], *, with_fingerprint: bool
) -> bytes:
    if len(txid) != TXID_BYTES:
        raise ValueError("a STUN transaction id is 12 bytes")
    body = b"".join(
        struct.pack("!HH", code, len(value)) + value.ljust(_padded(len(value)), b"\0")
        for code, value in attributes
    )
    extra = 8 if with_fingerprint else 0
    head = HEADER.pack(kind, len(body) + extra, COOKIE, txid)
    message = head + body
    if with_fingerprint:
        message += struct.pack("!HHI", FINGERPRINT, 4, fingerprint(message))
    return message


def integrity_ok(packet: bytes, key: bytes) -> bool:
    """MESSAGE-INTEGRITY (HMAC-SHA1 over the message up to it, the length field counting up to
    its end) matches `key`: for the RFC 5769 vectors; the witness uses NETSETUP-AUTH instead."""
    message = parse(packet)
    at = HEADER_SIZE
    for code, value in message.attributes:
        if code == MESSAGE_INTEGRITY:
            length = at + 4 + 20 - HEADER_SIZE
            signed = packet[:2] + struct.pack("!H", length) + packet[4:at]
            expected = hmac.new(key, signed, "sha1").digest()
            return hmac.compare_digest(expected, value)
        at += 4 + _padded(len(value))
    return False


# -- addresses ----------------------------------------------------------------------------------


def xor_address(host: str, port: int, txid: bytes) -> bytes:
    address = ipaddress.ip_address(host)
    mask = COOKIE_BYTES if address.version == 4 else COOKIE_BYTES + txid
    packed = bytes(a ^ b for a, b in zip(address.packed, mask, strict=True))
    family = 1 if address.version == 4 else 2
    return struct.pack("!BBH", 0, family, port ^ (COOKIE >> 16)) + packed


def parse_xor_address(value: bytes, txid: bytes) -> tuple[str, int]:
    if len(value) not in (8, 20) or value[0] != 0:
        raise Malformed("an XOR-MAPPED-ADDRESS of the wrong size")
    family = value[1]
    (port,) = struct.unpack_from("!H", value, 2)
    mask = COOKIE_BYTES if family == 1 else COOKIE_BYTES + txid
    if (family, len(value)) not in ((1, 8), (2, 20)):
        raise Malformed("an XOR-MAPPED-ADDRESS of an unknown family")
    raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=True))
    return str(ipaddress.ip_address(raw)), port ^ (COOKIE >> 16)


# -- the request and answer the witness speaks -------------------------------------------------


@dataclass(frozen=True)
class Auth:
    """NETSETUP-AUTH as parsed (its tag not yet checked)."""

    client_public: bytes
    timestamp_ms: int
    tag: bytes


def _auth_signed(txid: bytes, response_port: int, client_public: bytes, stamp: int) -> bytes:
    return (
        AUTH_LABEL
        + txid
        + struct.pack("!H", response_port)
        + client_public
        + struct.pack("!Q", stamp)
    )


def auth_value(
    query_key: bytes, client_public: bytes, txid: bytes, response_port: int, timestamp_ms: int
) -> bytes:
    tag = auth.mac(query_key, _auth_signed(txid, response_port, client_public, timestamp_ms))
    return AUTH_VALUE.pack(client_public, timestamp_ms, tag)


def parse_auth(value: bytes) -> Auth:
    if len(value) != AUTH_VALUE.size:
        raise Malformed("a NETSETUP-AUTH of the wrong size")
    client, stamp, tag = AUTH_VALUE.unpack(value)
    return Auth(client, stamp, tag)


def auth_verifies(found: Auth, query_key: bytes, txid: bytes, response_port: int) -> bool:
    signed = _auth_signed(txid, response_port, found.client_public, found.timestamp_ms)
    return hmac.compare_digest(auth.mac(query_key, signed), found.tag)


def binding_request(
    txid: bytes,
    *,
    size: int = REQUEST_SIZE,
    response_port: int | None = None,
    signed_by: tuple[bytes, bytes, int] | None = None,
) -> bytes:
    """A Binding request padded to `size` bytes (so the answer fits). With `response_port`,
    `signed_by` = (query key, client public key, timestamp ms) authenticates it."""
    attributes: list[tuple[int, bytes]] = []
    if response_port is not None:
        attributes.append((RESPONSE_PORT, struct.pack("!HH", response_port, 0)))
        if signed_by is not None:
            key, public, stamp = signed_by
            attributes.append((NETSETUP_AUTH, auth_value(key, public, txid, response_port, stamp)))
    used = HEADER_SIZE + sum(4 + _padded(len(v)) for _, v in attributes) + 8
    pad = max(0, size - used - 4)
    attributes.append((PADDING, bytes(_padded(pad))))
    return build(BINDING_REQUEST, txid, attributes, with_fingerprint=True)


def binding_answer(txid: bytes, host: str, port: int) -> bytes:
    return build(
        BINDING_SUCCESS,
        txid,
        [(XOR_MAPPED_ADDRESS, xor_address(host, port, txid))],
        with_fingerprint=True,
    )


def response_port(message: Message) -> int | None:
    value = message.first(RESPONSE_PORT)
    if value is None:
        return None
    if len(value) != 4:
        raise Malformed("a RESPONSE-PORT of the wrong size")
    (port,) = struct.unpack_from("!H", value)
    if port == 0:
        raise Malformed("RESPONSE-PORT 0")
    return int(port)


def mapped_address(packet: bytes, txid: bytes) -> tuple[str, int] | None:
    """The XOR-MAPPED-ADDRESS of a Binding success answering `txid`, or None."""
    try:
        message = parse(packet)
    except Malformed:
        return None
    if message.kind != BINDING_SUCCESS or not hmac.compare_digest(message.txid, txid):
        return None
    value = message.first(XOR_MAPPED_ADDRESS)
    if value is None:
        return None
    try:
        return parse_xor_address(value, txid)
    except (Malformed, ValueError):
        return None
