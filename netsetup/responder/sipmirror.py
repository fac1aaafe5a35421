"""The SIP mirror of the gateway witness: answers a SIP request with what it received.

A SIP ALG (a home router's "SIP helper") rewrites SIP it forwards: Via, Contact and the SDP's
c=/o=/m= lines get the router's public address. It only sees SIP outside the tunnel, so the
witness answers SIP there: on its own port always, and on UDP and TCP 5060 where the profile's
`[diagnose] sip_mirror` turns that on (routers' ALGs watch 5060 only).

The answer is a valid `SIP/2.0 200 OK` (Via, From, To, Call-ID and CSeq copied, a To tag added),
because a real ALG drops or mangles what it cannot parse; its body (`Content-Type:
application/x-netsetup-mirror`) is `z:` + base64(zlib(the request as received)). When that would
make the answer longer than the request, the body is `h:` + the request's SHA-256 (the asker can
still tell whether it arrived untouched); when even that does not fit, no answer. Never an answer
longer than the request.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass

MIRROR_TYPE = "application/x-netsetup-mirror"
MAX_MESSAGE = 8192  # bytes of one SIP message the mirror reads (headers and body)
MAX_HEADERS = 64
_METHOD = re.compile(rb"^[A-Z]{3,16} [!-~]{1,256} SIP/2\.0$")
_STATUS = re.compile(rb"^SIP/2\.0 (\d{3}) ?([ -~]{0,64})$")
COPIED = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length",
            "c": "content-type", "m": "contact"}  # fmt: skip


class Malformed(ValueError):
    """Not a SIP message the mirror answers."""


@dataclass(frozen=True)
class SipMessage:
    start: str  # the request or status line
    headers: tuple[tuple[str, str], ...]  # (lower-case full name, value) in order
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def first(self, name: str) -> str | None:
        found = self.all(name)
        return found[0] if found else None


def looks_like_sip(packet: bytes) -> bool:
    line = packet[: packet.find(b"\r\n")] if b"\r\n" in packet[:300] else b""
    return bool(_METHOD.match(line) or _STATUS.match(line))


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """(head, rest) at the blank line; Malformed when there is none."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise Malformed("no end of the SIP headers")
    return data[:end], data[end + 4 :]


def parse_message(data: bytes) -> SipMessage:
    """A SIP message (request or response); header names lower-cased and compact forms expanded;
    folded lines joined. Raises Malformed."""
    if len(data) > MAX_MESSAGE * 2:
        raise Malformed("too long")
    head, body = split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("SIP headers that are not UTF-8") from None
    lines = text.split("\r\n")
    start = lines[0]
    if not (_METHOD.match(start.encode()) or _STATUS.match(start.encode())):
        raise Malformed("not a SIP request or status line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or len(headers) >= MAX_HEADERS:
            raise Malformed("a broken SIP header line")
        headers.append((_COMPACT.get(name, name), value.strip()))
    return SipMessage(start, tuple(headers), body)


def _to_with_tag(value: str, tag: str) -> str:
    return value if ";tag=" in value.replace(" ", "").lower() else f"{value};tag={tag}"


def _answer(request: SipMessage, body: bytes) -> bytes:
    tag = hashlib.sha256(request.body + request.start.encode()).hexdigest()[:10]
    lines = ["SIP/2.0 200 OK"]
    for name, shown_name in COPIED.items():
        for value in request.all(name):
            shown = _to_with_tag(value, tag) if name == "to" else value
            lines.append(f"{shown_name}: {shown}")
    lines += [f"Content-Type: {MIRROR_TYPE}", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def mirror(packet: bytes) -> bytes | None:
    """The mirror's answer to `packet`, or None (not a SIP request with the headers a response
    needs, or no answer fits in the request's size)."""
    try:
        request = parse_message(packet)
    except Malformed:
        return None
    if request.start.startswith("SIP/2.0") or any(not request.all(n) for n in COPIED):
        return None
    compressed = b"z:" + base64.b64encode(zlib.compress(packet, 9))
    answer = _answer(request, compressed)
    if len(answer) > len(packet):
        answer = _answer(request, b"h:" + hashlib.sha256(packet).hexdigest().encode())
    return answer if len(answer) <= len(packet) else None


@dataclass(frozen=True)
class Mirrored:
    """What the mirror says it received: the request itself, or only its SHA-256."""

    request: bytes | None
    sha256: str | None


def read_mirror(answer: bytes | SipMessage) -> Mirrored | None:
    """The body of a mirror's answer, decoded; None when `answer` is not one."""
    try:
        message = answer if isinstance(answer, SipMessage) else parse_message(answer)
    except Malformed:
        return None
    if not message.start.startswith("SIP/2.0 200") or message.first("content-type") != MIRROR_TYPE:
        return None
    body = message.body.strip()
    try:
        if body.startswith(b"z:"):
            decoder = zlib.decompressobj()
            raw = decoder.decompress(base64.b64decode(body[2:], validate=True), MAX_MESSAGE * 2)
            return Mirrored(raw, None)
        if body.startswith(b"h:"):
            return Mirrored(None, body[2:].decode("ascii"))
    except (ValueError, zlib.error):
        return None
    return None
