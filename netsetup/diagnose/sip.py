"""SIP as diagnose speaks it: OPTIONS pings (RFC 3261 section 11) to the company's phone system
over UDP, TCP and TLS, and the INVITE-shaped request the SIP ALG test sends to the witness's
mirror.

Every request carries `User-Agent: netsetup-diagnose/<version> (readiness check)` so the PBX's
admin can tell what it is, and one pacer holds every sip.* check to at most one request a second
per destination: PBXs ban senders that ping faster (fail2ban, Asterisk's security events).

Portable: plain sockets and `ssl`. TLS sends the SIP domain as SNI and does not verify the
certificate (a PBX often has a self-signed one): the certificate's subject is reported instead.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from netsetup import __version__
from netsetup.responder.sipmirror import Malformed, SipMessage, parse_message

USER_AGENT = f"netsetup-diagnose/{__version__} (readiness check)"
PACE_S = 1.0  # at most one request a second per destination
LAST_WAIT_S = 1.5  # after the last try over UDP: an answer later than this is as good as none
PADDED_SIZE = 1500  # the padded OPTIONS: an INVITE with a rich SDP is this big
RECV_BYTES = 65535
MAX_STREAM = 16384
LOCAL_USER = "netsetup-diagnose"


class Pacer:
    """At most one request per PACE_S to each destination, across threads."""

    def __init__(self, interval: float = PACE_S) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def turn(self, destination: str, deadline: float) -> bool:
        """Wait for this destination's next slot; False (and no slot taken) when it comes after
        `deadline` (monotonic)."""
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next.get(destination, now))
            if at > deadline:
                return False
            self._next[destination] = at + self.interval
        time.sleep(max(0.0, at - time.monotonic()))
        return True


PACER = Pacer()


def _token() -> str:
    return os.urandom(8).hex()


def _host(text: str) -> str:
    return f"[{text}]" if ":" in text else text


@dataclass(frozen=True)
class Request:
    """A SIP request to send, and what identifies its answers."""

    data: bytes
    branch: str
    call_id: str


def options(
    transport: str,
    local: tuple[str, int],
    target: tuple[str, int],
    domain: str | None,
    pad_to: int | None = None,
) -> Request:
    """An OPTIONS request; with `pad_to`, padded (an `X-Netsetup-Pad` header) to that many
    bytes."""
    branch, call_id, tag = "z9hG4bK" + _token(), _token() + "@netsetup", _token()[:10]
    where = domain or _host(target[0])
    uri = f"sip:{where}" if target[1] in (5060, 5061) else f"sip:{where}:{target[1]}"
    lines = [
        f"OPTIONS {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {_host(local[0])}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{LOCAL_USER}@{where}>;tag={tag}",
        f"To: <sip:{where}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:{LOCAL_USER}@{_host(local[0])}:{local[1]}>",
        "Accept: application/sdp",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
    ]
    return Request(_finish(lines, b"", pad_to), branch, call_id)


def _finish(lines: list[str], body: bytes, pad_to: int | None) -> bytes:
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    if pad_to is not None and len(data) < pad_to:
        # "X-Netsetup-Pad: " and its CRLF take 18 bytes
        pad = "X-Netsetup-Pad: " + "x" * max(1, pad_to - len(data) - 18)
        data = ("\r\n".join([*lines[:-1], pad, lines[-1]]) + "\r\n\r\n").encode() + body
    return data


def invite(
    transport: str,
    local: tuple[str, int],
    target: tuple[str, int],
    media_port: int,
    pad_to: int | None = None,
) -> Request:
    """An INVITE-shaped request whose Via, Contact and SDP carry this computer's own (private)
    address, as a phone's does: what a SIP ALG rewrites. Only for the witness's mirror."""
    branch, call_id, tag = "z9hG4bK" + _token(), _token() + "@netsetup", _token()[:10]
    ip = "IP6" if ":" in local[0] else "IP4"
    sdp = (
        "v=0\r\n"
        f"o={LOCAL_USER} 1 1 IN {ip} {local[0]}\r\n"
        "s=netsetup\r\n"
        f"c=IN {ip} {local[0]}\r\n"
        "t=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0 8\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=sendrecv\r\n"
    ).encode()
    where = _host(target[0])
    lines = [
        f"INVITE sip:alg-test@{where}:{target[1]} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {_host(local[0])}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{LOCAL_USER}@{where}>;tag={tag}",
        f"To: <sip:alg-test@{where}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:{LOCAL_USER}@{_host(local[0])}:{local[1]}>",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp)}",
    ]
    return Request(_finish(lines, sdp, pad_to), branch, call_id)


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A final SIP response to our request."""

    code: int
    reason: str
    rtt_ms: float
    server: str | None
    message: SipMessage
    certificate: str | None = None  # TLS: the server certificate's subject


_PRINTABLE = re.compile(r"[^ -~]")


def sanitize(text: str | None, limit: int = 60) -> str | None:
    """A server's self-description fit for a report: printable ASCII, one line, short."""
    if text is None:
        return None
    cleaned = " ".join(_PRINTABLE.sub("", text).split())[:limit]
    return cleaned or None


def answer_to(data: bytes, request: Request) -> SipMessage | None:
    """The final response in `data` to `request` (its Via branch and Call-ID), else None."""
    try:
        message = parse_message(data)
    except Malformed:
        return None
    if not message.start.startswith("SIP/2.0 "):
        return None
    via, call_id = message.first("via") or "", message.first("call-id")
    if request.branch not in via or call_id != request.call_id:
        return None
    code = status_code(message)
    return message if code is not None and code >= 200 else None


def status_code(message: SipMessage) -> int | None:
    parts = message.start.split(" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def _answer(message: SipMessage, rtt_s: float, certificate: str | None = None) -> Answer:
    parts = message.start.split(" ", 2)
    return Answer(
        int(parts[1]),
        sanitize(parts[2] if len(parts) > 2 else "") or "",
        round(rtt_s * 1000, 1),
        sanitize(message.first("server") or message.first("user-agent")),
        message,
        certificate,
    )


@dataclass(frozen=True)
class Attempt:
    """What one exchange came to: the answer, or why there is none."""

    answer: Answer | None
    error: str | None
    sent: int  # requests sent (retransmissions over UDP included)
    request: bytes = b""


Build = Callable[[tuple[str, int]], Request]  # local (address, port) -> the request


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_exchange(
    target: tuple[str, int],
    build: Build,
    deadline: float,
    *,
    tries: int = 3,
    pace_key: str | None = None,
) -> Attempt:
    """Send the request over UDP (again, at the pacer's rate, until `tries`) and wait for its
    final answer until `deadline` (monotonic)."""
    try:
        sock = socket.socket(_family(target[0]), socket.SOCK_DGRAM)
    except OSError as exc:
        return Attempt(None, f"no socket: {exc.strerror or exc}", 0)
    with sock:
        try:
            sock.connect(target)
            request = build(sock.getsockname()[:2])
        except OSError as exc:
            return Attempt(None, f"cannot send to {target[0]}: {exc.strerror or exc}", 0)
        return _udp_rounds(sock, request, deadline, tries, pace_key or target[0])


def _udp_rounds(
    sock: socket.socket, request: Request, deadline: float, tries: int, pace_key: str
) -> Attempt:
    sent, first_sent, error = 0, None, "no answer"
    while sent < tries and PACER.turn(pace_key, deadline - 0.2):
        now = time.monotonic()
        try:
            sock.send(request.data)
        except OSError as exc:  # too big for this machine to send, or no route
            error = f"not sent: {exc.strerror or exc}"
            break
        sent += 1
        first_sent = first_sent or now
        until = min(deadline, now + (PACE_S if sent < tries else LAST_WAIT_S))
        message = _wait_udp(sock, request, until)
        if message is not None:
            return Attempt(_answer(message, time.monotonic() - now), None, sent, request.data)
    return Attempt(None, error, sent, request.data)


def _wait_udp(sock: socket.socket, request: Request, until: float) -> SipMessage | None:
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        try:
            data = sock.recv(RECV_BYTES)
        except OSError:  # ICMP port unreachable: keep waiting for the next try's answer
            time.sleep(min(0.05, max(0.0, until - time.monotonic())))
            continue
        message = answer_to(data, request)
        if message is not None:
            return message


def stream_exchange(
    target: tuple[str, int],
    build: Build,
    deadline: float,
    *,
    tls_name: str | None = None,
    tls: bool = False,
    pace_key: str | None = None,
) -> Attempt:
    """One request over TCP (or TLS with `tls_name` as SNI, unverified) and its final answer."""
    if not PACER.turn(pace_key or target[0], deadline - 0.2):
        return Attempt(None, "no time left to send (one request a second)", 0)
    started = time.monotonic()
    try:
        raw = socket.create_connection(target, timeout=max(0.1, deadline - started))
    except OSError as exc:
        return Attempt(None, _connect_error(exc), 0)
    with raw:
        sock: socket.socket = raw
        try:
            sock, certificate = _wrap(raw, tls, tls_name) if tls else (raw, None)
            request = build(sock.getsockname()[:2])
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sent_at = time.monotonic()
            sock.sendall(request.data)
            message = _read_stream(sock, request, deadline)
        except Malformed:
            return Attempt(None, "a malformed answer (its length cannot be)", 1, request.data)
        except ssl.SSLError as exc:
            return Attempt(None, f"TLS failed: {exc.reason or exc}", 0)
        except OSError as exc:
            return Attempt(None, _connect_error(exc), 1)
        finally:
            if sock is not raw:
                sock.close()
        if message is None:
            return Attempt(None, "no answer", 1, request.data)
        rtt = time.monotonic() - sent_at
        return Attempt(_answer(message, rtt, certificate), None, 1, request.data)


def _connect_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc)


def _wrap(raw: socket.socket, tls: bool, name: str | None) -> tuple[socket.socket, str | None]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wrapped = context.wrap_socket(raw, server_hostname=name)
    return wrapped, certificate_subject(wrapped.getpeercert(binary_form=True))


def certificate_subject(der: bytes | None) -> str | None:
    if not der:
        return None
    try:
        from cryptography import x509

        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None
    return sanitize(subject, 120)


def _read_stream(sock: socket.socket, request: Request, deadline: float) -> SipMessage | None:
    data = b""
    while len(data) < MAX_STREAM and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            one, data = _take_message(data)
            if one is None:
                break
            message = answer_to(one, request)
            if message is not None:
                return message
    return None


MAX_LENGTH_DIGITS = 7  # a Content-Length with more digits is no length a message can have


def _take_message(data: bytes) -> tuple[bytes | None, bytes]:
    """The first complete message in a stream and what follows it. Malformed: a Content-Length
    that is not a number of at most MAX_LENGTH_DIGITS digits."""
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() not in (b"content-length", b"l"):
            continue
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= MAX_LENGTH_DIGITS):
            raise Malformed("Content-Length")
        length = int(text)
    if len(rest) < length:
        return None, data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]
