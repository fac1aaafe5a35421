"""Small UDP probes the tunnel checks send: "does anything answer through the tunnel?" and "does a
packet of N bytes with Don't Fragment set get through?".

Two kinds of answerer: the gateway witness (its probe port acks a probe of any size with the
number of bytes it got; see `netsetup.responder.client`) and the company's DNS server (any reply
to a query proves the tunnel carries traffic, for gateways without a witness). Plain sockets and
select: portable.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netsetup.diagnose.platform.net import UDP_OVERHEAD, is_too_big, set_dont_fragment
from netsetup.responder.client import PROBE_MIN_SIZE, probe_payload, probe_reply_size

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Matcher = Callable[[bytes], bool]
DNS_PORT = 53


@dataclass(frozen=True)
class Answerer:
    """Something that answers a small UDP packet: `make()` returns a fresh packet and the test
    that tells its reply."""

    label: str  # "witness 198.18.10.1", "dns 192.0.2.53"
    address: IPAddress
    port: int
    make: Callable[[], tuple[bytes, Matcher]]


def witness_answerer(address: IPAddress, port: int) -> Answerer:
    def make() -> tuple[bytes, Matcher]:
        packet, token = probe_payload(PROBE_MIN_SIZE + 8)
        return packet, lambda reply: probe_reply_size(reply, token) is not None

    return Answerer(f"witness {address}", address, port, make)


def dns_answerer(address: IPAddress, name: str = "") -> Answerer:
    def make() -> tuple[bytes, Matcher]:
        ident = int.from_bytes(os.urandom(2), "big")
        return dns_query(ident, name), lambda reply: is_dns_reply(reply, ident)

    return Answerer(f"dns {address}", address, DNS_PORT, make)


def dns_query(ident: int, name: str) -> bytes:
    """A standard query (recursion desired) for the A record of `name` ("" = the root)."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    return header + _qname(name) + struct.pack("!HH", 1, 1)


def _qname(name: str) -> bytes:
    """`name` in DNS wire form; a name DNS cannot carry (a label over 63 bytes, over 255 in
    all) becomes the root: any answer proves the server got the query all the same."""
    labels = [p.encode("ascii", "replace") for p in name.split(".") if p]
    if any(len(label) > 63 for label in labels) or sum(len(x) + 1 for x in labels) >= 255:
        labels = []
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def is_dns_reply(reply: bytes, ident: int) -> bool:
    """Any answer (even NXDOMAIN or REFUSED) to our query: the server got it."""
    return len(reply) >= 12 and int.from_bytes(reply[:2], "big") == ident and bool(reply[2] & 0x80)


@dataclass(frozen=True)
class FirstAnswer:
    label: str
    after_s: float  # from the first packet sent to the answer
    sent: int  # packets sent until then


def _open(answerers: Sequence[Answerer]) -> list[tuple[socket.socket, Answerer]]:
    opened = []
    for a in answerers:
        family = socket.AF_INET6 if a.address.version == 6 else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue
        sock.setblocking(False)
        opened.append((sock, a))
    return opened


def first_answer(
    answerers: Sequence[Answerer],
    window_s: float,
    interval_s: float = 0.5,
    on_tick: Callable[[], None] = lambda: None,
) -> tuple[FirstAnswer | None, int]:
    """Send to every answerer every `interval_s` until one answers or `window_s` passes.
    Returns the first answer (None: none) and how many packets were sent. `on_tick()` is called
    at least once per interval (the caller starts other work while the probes go unanswered)."""
    opened = _open(answerers)
    matchers: dict[socket.socket, list[Matcher]] = {s: [] for s, _ in opened}
    start = time.monotonic()
    end, next_send, sent = start + window_s, start, 0
    try:
        while opened:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_send:
                sent += _send_round(opened, matchers)
                next_send += interval_s
                on_tick()
            wait = max(0.0, min(next_send, end) - time.monotonic())
            ready, _, _ = select.select([s for s, _ in opened], [], [], wait)
            for sock in ready:
                label = _answered(sock, opened, matchers[sock])
                if label is not None:
                    return FirstAnswer(label, time.monotonic() - start, sent), sent
        return None, sent
    finally:
        for sock, _ in opened:
            sock.close()


def _send_round(
    opened: list[tuple[socket.socket, Answerer]], matchers: dict[socket.socket, list[Matcher]]
) -> int:
    sent = 0
    for sock, a in opened:
        packet, matcher = a.make()
        try:
            sock.sendto(packet, (str(a.address), a.port))
        except OSError:  # no route (tunnel down meanwhile), an ICMP error: try again next round
            continue
        matchers[sock].append(matcher)
        sent += 1
    return sent


def _answered(
    sock: socket.socket, opened: list[tuple[socket.socket, Answerer]], matchers: list[Matcher]
) -> str | None:
    try:
        reply = sock.recv(2048)
    except OSError:  # ICMP port unreachable from an earlier send
        return None
    if any(m(reply) for m in matchers):
        return next(a.label for s, a in opened if s is sock)
    return None


# -- Don't Fragment probes for the MTU search ----------------------------------------------------


@dataclass(frozen=True)
class SizeResult:
    """One size tried with DF: acked by the witness, refused by this machine (larger than the
    MTU it knows), or neither (lost on the way)."""

    size: int  # the IP packet's size in bytes
    acked: bool
    too_big_here: bool = False


SizedMaker = Callable[[int], tuple[bytes, Matcher]]  # UDP payload size -> packet, reply test


def witness_sized(payload: int) -> tuple[bytes, Matcher]:
    """A witness probe of `payload` bytes; its ack must say it got all of them."""
    packet, token = probe_payload(payload)
    return packet, lambda reply: probe_reply_size(reply, token) == payload


def dns_sized(payload: int, name: str = "") -> tuple[bytes, Matcher]:
    """A DNS query padded to `payload` bytes (an EDNS0 padding option, RFC 7830): any reply
    proves the whole query arrived. For gateways without a witness."""
    ident = int.from_bytes(os.urandom(2), "big")
    query = bytearray(dns_query(ident, name))
    query[10:12] = (1).to_bytes(2, "big")  # ARCOUNT: the OPT record
    opt_head = 11 + 4  # OPT RR (name, type, class, ttl, rdlength) + option code and length
    pad = payload - len(query) - opt_head
    if pad < 0:
        raise ValueError(f"a padded DNS query is at least {len(query) + opt_head} bytes")
    opt = b"\0" + struct.pack("!HHIH", 41, 4096, 0, 4 + pad) + struct.pack("!HH", 12, pad)
    return bytes(query) + opt + b"\0" * pad, lambda reply: is_dns_reply(reply, ident)


MIN_PAYLOAD = {"witness": PROBE_MIN_SIZE, "dns": 64}


def df_probe(
    address: IPAddress,
    port: int,
    size: int,
    tries: int = 3,
    timeout: float = 0.4,
    make: SizedMaker = witness_sized,
) -> SizeResult:
    """Send `tries` packets of `size` bytes on the wire (the IP packet) with Don't Fragment set,
    at once, and wait up to `timeout` for any answer: random loss takes all tries to be taken
    for a black hole. Raises DontFragmentUnsupported where DF cannot be set."""
    payload = size - UDP_OVERHEAD[address.version]
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        set_dont_fragment(sock)
        matchers: list[Matcher] = []
        for _ in range(tries):
            packet, matcher = make(payload)
            try:
                sock.sendto(packet, (str(address), port))
            except OSError as exc:
                if is_too_big(exc):
                    return SizeResult(size, False, too_big_here=True)
                continue
            matchers.append(matcher)
        return SizeResult(size, _wait_answer(sock, matchers, time.monotonic() + timeout))


def _wait_answer(sock: socket.socket, matchers: list[Matcher], deadline: float) -> bool:
    while matchers:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return False
        try:
            reply = sock.recv(2048)
        except OSError:
            continue
        if any(m(reply) for m in matchers):
            return True
    return False


def largest_passing(
    try_size: Callable[[int], SizeResult], low: int, high: int, deadline: float
) -> tuple[int | None, list[SizeResult]]:
    """The largest size in [low, high] that passes, by binary search: `high` first (a healthy
    path ends the search there), then `low` (nothing passes: None), then `high` once more (a
    moment later: a burst of loss that took all tries of the first round is not a black hole),
    then halving. Stops at the monotonic `deadline` with the best size proven so far."""
    tried: list[SizeResult] = []

    def passes(size: int) -> bool:
        result = try_size(size)
        tried.append(result)
        return result.acked

    if passes(high):
        return high, tried
    if time.monotonic() >= deadline or not passes(low):
        return None, tried
    if time.monotonic() < deadline and passes(high):
        return high, tried
    good, bad = low, high
    while bad - good > 1 and time.monotonic() < deadline:
        middle = (good + bad) // 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good, tried
