"""The office responder: what an assistant's `diagnose` measures calls against, in the company LAN.

On UDP (the `[diagnose] responder` port) it speaks NSR1 (`netsetup.responder.office_wire`):
HELLO gets the capabilities, each PROBE its REFLECT (same size, receive and send times on the
responder's monotonic clock), SUMMARY the session's counts, RTP-OPEN opens sampled ports of the
profile's RTP range on the media address for RTP_OPEN_S seconds and acknowledges from each (and
answers an RTP-OPEN sent to that port, from it), RTP-CALL sends one datagram from the media
address to each asked port of the asker (a new flow, like an incoming call's audio). On TCP, the
same port serves the HTTP speed endpoint (netsetup.responder.speedhttp) to holders of a ticket.

Only the profile's ACTIVE peers are known: each one's responder key derives from the office token
and its public key, and the peer files are read again when the peers folder changes, so a revoked
or expired peer gets nothing. Anything that does not verify gets no answer at all; no datagram
sent is longer than the request that caused it; every answer counts against rate limits (per
key, per source address, for the whole responder), charged only once its request verified.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from netsetup.diagnose.platform import rxtime
from netsetup.keys import SecretKey
from netsetup.profile.model import PeerState, Profile
from netsetup.responder import office_wire as wire
from netsetup.responder.witness import (
    RECV_BYTES,
    TokenBucket,
    _Cached,
    _folder_stamp,
    _reply_from,
    _source_address,
    open_sockets,
)

FILES_TTL_S = 2.0
RTP_OPEN_S = 5.0  # how long an opened RTP port stays open


# -- who may ask ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivePeers:
    """The profile's active peers: key tag -> responder key, and key tag -> tunnel addresses."""

    keys: dict[bytes, bytes]
    addresses: dict[bytes, frozenset[str]]


def active_peers(profile: Profile, token: SecretKey, now: datetime | None = None) -> ActivePeers:
    """Every peer of `profile` active at `now`: its responder key and its tunnel addresses."""
    from netsetup.profile.store import readable_peers

    raw_token = base64.b64decode(token.reveal())
    moment = now or datetime.now(UTC)
    found = ActivePeers({}, {})
    for peer in readable_peers(profile):
        if peer.state(moment) != PeerState.active:
            continue
        public = base64.b64decode(peer.public_key)
        tag = wire.key_tag(public)
        found.keys[tag] = wire.peer_key(raw_token, public)
        tunnel = (peer.address_v4, peer.address_v6)
        found.addresses[tag] = frozenset(str(a) for a in tunnel if a is not None)
    return found


def keys_of_active_peers(
    profile: Profile, token: SecretKey, now: datetime | None = None
) -> dict[bytes, bytes]:
    """key tag -> responder key, for every peer of `profile` active at `now`."""
    return active_peers(profile, token, now).keys


class PeerKeys:
    """The active peers' keys (and tunnel addresses), read again when the peers folder changes
    or every FILES_TTL_S."""

    def __init__(self, profile: Profile, token: SecretKey) -> None:
        self._cached = _Cached(
            FILES_TTL_S,
            partial(active_peers, profile, token),
            partial(_folder_stamp, profile.peers_dir),
        )

    def __repr__(self) -> str:
        return "PeerKeys(<keys>)"

    def get(self) -> Mapping[bytes, bytes]:
        peers: ActivePeers = self._cached.get()
        return peers.keys

    def addresses(self) -> Mapping[bytes, frozenset[str]]:
        """key tag -> the peer's tunnel addresses (where its RTP requests must come from)."""
        peers: ActivePeers = self._cached.get()
        return peers.addresses


# -- limits and sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Datagrams sent per second (and bursts): per key, per source address, for the whole."""

    per_key: float = 120.0  # a voice session (50/s) and the first hop's beside it, with room
    per_key_burst: float = 240.0
    per_source: float = 200.0
    per_source_burst: float = 400.0
    total: float = 2000.0
    total_burst: float = 4000.0
    buckets: int = 10_000  # per key and per source buckets kept; the oldest go first
    sessions: int = 32  # session counters kept PER KEY; its least recently used go first
    media_ports: int = 64  # RTP ports open at once
    media_ports_per_key: int = wire.MAX_PORTS  # of those, what one key may hold


class _Buckets:
    def __init__(self, rate: float, burst: float, size: int) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self.buckets: OrderedDict[Any, TokenBucket] = OrderedDict()

    def take(self, name: Any, now: float) -> bool:
        bucket = self.buckets.pop(name, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst)
            while len(self.buckets) >= self.size:
                self.buckets.popitem(last=False)
        self.buckets[name] = bucket
        return bucket.take(now)


class RateLimiter:
    def __init__(self, limits: Limits) -> None:
        self.total = TokenBucket(limits.total, limits.total_burst)
        self.sources = _Buckets(limits.per_source, limits.per_source_burst, limits.buckets)
        self.keys = _Buckets(limits.per_key, limits.per_key_burst, limits.buckets)

    def answer(self, tag: bytes, address: str) -> bool:
        """For a request that verified, before its answer: the key's, the source's and the
        whole responder's budget. Junk (anything that does not verify) is never charged, so a
        spoofed flood cannot use up what the peers get."""
        now = time.monotonic()
        return self.keys.take(tag, now) and self.sources.take(address, now) and self.total.take(now)

    def key(self, tag: bytes) -> bool:
        """One more datagram for a key already answered (RTP acks from the media ports)."""
        return self.keys.take(tag, time.monotonic())


@dataclass
class Counters:
    """One session's counts (RFC 8972 style): probes received, reflects sent, seq seen."""

    rx: int = 0
    tx: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def received(self, seq: int) -> None:
        self.rx += 1
        self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)


class Sessions:
    """Session counters, at most `size` per key: one peer's new sessions only push out its own
    old ones, never another peer's."""

    def __init__(self, size: int, keys: int = 10_000) -> None:
        self.size, self.keys = size, keys
        self.table: OrderedDict[bytes, OrderedDict[int, Counters]] = OrderedDict()

    def get(self, tag: bytes, session: int) -> Counters:
        own = self.table.pop(tag, None)
        if own is None:
            own = OrderedDict()
            while len(self.table) >= self.keys:
                self.table.popitem(last=False)
        self.table[tag] = own
        counters = own.pop(session, None)
        if counters is None:
            counters = Counters()
            while len(own) >= self.size:
                own.popitem(last=False)
        own[session] = counters
        return counters

    def count(self, tag: bytes | None = None) -> int:
        if tag is not None:
            return len(self.table.get(tag, ()))
        return sum(len(own) for own in self.table.values())


# -- the RTP side ---------------------------------------------------------------------------------


Send = tuple[bytes, tuple[str, int]]


class MediaSide:
    """Ports of the RTP range opened on the media addresses, and datagrams sent from them."""

    def __init__(
        self,
        media: Sequence[str],
        rtp_ports: tuple[int, int],
        limit: int,
        per_key: int = wire.MAX_PORTS,
    ) -> None:
        self.media = tuple(str(ipaddress.ip_address(m)) for m in media)
        self.low, self.high = rtp_ports
        self.limit, self.per_key = limit, per_key
        # (media, port) -> (its socket, open until, the key tag that opened it)
        self.open: dict[tuple[str, int], tuple[socket.socket, float, bytes]] = {}

    def __repr__(self) -> str:
        return f"MediaSide({self.media!r})"

    def address_for(self, client: str) -> str | None:
        """The media address of the client's family (v4 or v6), if there is one."""
        version = ipaddress.ip_address(client).version
        same = [m for m in self.media if ipaddress.ip_address(m).version == version]
        return same[0] if same else None

    def in_range(self, ports: Iterable[int]) -> list[int]:
        return [p for p in dict.fromkeys(ports) if self.low <= p <= self.high]

    def sockets(self) -> list[socket.socket]:
        return [sock for sock, _, _ in self.open.values()]

    def port_of(self, sock: socket.socket) -> int | None:
        for (_, port), (one, _, _) in self.open.items():
            if one is sock:
                return port
        return None

    def held_by(self, tag: bytes) -> int:
        return sum(owner == tag for _, _, owner in self.open.values())

    def open_ports(
        self, media: str, ports: Sequence[int], tag: bytes = b""
    ) -> list[tuple[int, socket.socket]]:
        """Open (or keep open) `ports` on `media` for RTP_OPEN_S for key `tag`; those that
        could be opened. One key holds at most `per_key` ports (all keys: `limit`); a port
        another key opened is used as it is, not kept open longer."""
        self.expire()
        until = time.monotonic() + RTP_OPEN_S
        opened: list[tuple[int, socket.socket]] = []
        for port in self.in_range(ports):
            known = self.open.get((media, port))
            if known is not None:
                if known[2] == tag:
                    self.open[(media, port)] = (known[0], until, tag)
                opened.append((port, known[0]))
                continue
            if len(self.open) >= self.limit or self.held_by(tag) >= self.per_key:
                continue
            sock = _media_socket(media, port)
            if sock is None:
                continue
            self.open[(media, port)] = (sock, until, tag)
            opened.append((port, sock))
        return opened

    def expire(self) -> None:
        now = time.monotonic()
        for name, (sock, until, _) in list(self.open.items()):
            if until <= now:
                sock.close()
                del self.open[name]

    def close(self) -> None:
        for sock, _, _ in self.open.values():
            sock.close()
        self.open.clear()


def _media_socket(media: str, port: int) -> socket.socket | None:
    family = socket.AF_INET6 if ":" in media else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((media, port))
        sock.setblocking(False)
    except OSError:  # taken (the PBX's own RTP), or the address is not here
        sock.close()
        return None
    return sock


def _send_from(media: str, packet: bytes, targets: Sequence[tuple[str, int]]) -> int:
    """One datagram to each target from an ephemeral port of `media`; how many left."""
    family = socket.AF_INET6 if ":" in media else socket.AF_INET
    sent = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((media, 0))
        except OSError:
            return 0
        for target in targets:
            with contextlib.suppress(OSError):
                sock.sendto(packet, target)
                sent += 1
    return sent


# -- the responder --------------------------------------------------------------------------------


@dataclass
class Office:
    """Turns one datagram into what is sent because of it (often nothing). Its own I/O is the
    media side's (RTP ports); the main socket's answer is returned."""

    keys: Callable[[], Mapping[bytes, bytes]]
    media: MediaSide | None = None
    http_port: int | None = None
    limits: Limits | None = field(default_factory=Limits)
    sessions: Sessions = field(init=False)
    limiter: RateLimiter | None = field(init=False)
    clock_ns: Callable[[], int] = time.monotonic_ns
    # key tag -> the peer's tunnel addresses: RTP-OPEN and RTP-CALL are only obeyed from one of
    # them (a request replayed from a spoofed source makes nothing leave). None: from anywhere.
    addresses: Callable[[], Mapping[bytes, frozenset[str]]] | None = None

    def __post_init__(self) -> None:
        limits = self.limits or Limits()
        self.sessions = Sessions(limits.sessions, limits.buckets)
        self.limiter = RateLimiter(self.limits) if self.limits is not None else None

    def __repr__(self) -> str:
        return f"Office(media={self.media!r}, http_port={self.http_port})"

    def handle(
        self, packet: bytes, source: tuple[str, int], arrived_ns: int | None = None
    ) -> bytes | None:
        """The answer to `packet` from `source`, never longer than `packet`. `arrived_ns`: the
        kernel's receive time (monotonic ns), so t2 leaves out this process's wake-up delay."""
        t2 = arrived_ns if arrived_ns is not None else self.clock_ns()
        try:
            host = _source_address(source[0])
        except ValueError:
            return None
        found = wire.parse_request(packet, self.keys())
        if found is None or not self._answerable(found[1].tag, host):
            return None
        answer = self._answer(found[0], found[1], (host, source[1]), t2)
        return answer if answer is not None and len(answer) <= len(packet) else None

    def _allowed(self, tag: bytes) -> bool:
        return self.limiter is None or self.limiter.key(tag)

    def _answerable(self, tag: bytes, host: str) -> bool:
        return self.limiter is None or self.limiter.answer(tag, host)

    def _answer(
        self, key: bytes, request: wire.Request, source: tuple[str, int], t2: int
    ) -> bytes | None:
        if request.kind == wire.T_PROBE:
            counters = self.sessions.get(request.tag, request.session)
            counters.received(request.seq)
            rseq = counters.tx
            counters.tx += 1
            return wire.reflect(key, request, t2, self.clock_ns(), rseq, counters.rx)
        if request.kind == wire.T_SUMMARY:
            c = self.sessions.get(request.tag, request.session)
            return wire.summary_reply(key, request, c.rx, c.tx, c.first_seq or 0, c.last_seq or 0)
        if request.kind == wire.T_HELLO:
            caps = wire.Caps(
                self.clock_ns(),
                self.media.media if self.media else (),
                self.http_port,
                wire.MAX_PROBE_SIZE,
            )
            return wire.caps_reply(key, request, caps)
        if request.kind == wire.T_RTP_OPEN:
            done = self._rtp_open(key, request, source)
        else:
            done = self._rtp_call(key, request, source)
        # the main port's answer lists the ports opened (or called): a reply in the firewall's
        # eyes, it arrives even where the acks from the media ports, new flows, do not
        return wire.rtp_ack(key, request, done) if done is not None else None

    def _from_peer(self, tag: bytes, host: str) -> bool:
        """Whether `host` is one of the tunnel addresses of the peer whose key `tag` is."""
        if self.addresses is None:
            return True
        return host in self.addresses().get(tag, frozenset())

    def _rtp_open(
        self, key: bytes, request: wire.Request, source: tuple[str, int]
    ) -> list[int] | None:
        media = self.media.address_for(source[0]) if self.media else None
        if self.media is None or media is None or not self._from_peer(request.tag, source[0]):
            return None
        opened = []
        for port, sock in self.media.open_ports(media, request.ports, request.tag):
            opened.append(port)
            if self._allowed(request.tag):
                with contextlib.suppress(OSError):
                    sock.sendto(wire.rtp_ack(key, request, [port]), source)
        return opened

    def _rtp_call(
        self, key: bytes, request: wire.Request, source: tuple[str, int]
    ) -> list[int] | None:
        media = self.media.address_for(source[0]) if self.media else None
        if self.media is None or media is None or not self._from_peer(request.tag, source[0]):
            return None
        called = []
        for port in self.media.in_range(request.ports):
            if not self._allowed(request.tag):
                break
            if _send_from(media, wire.rtp_ack(key, request, [port]), [(source[0], port)]):
                called.append(port)
        return called

    def handle_media(self, packet: bytes, source: tuple[str, int], port: int) -> bytes | None:
        """A datagram to an opened RTP port: an RTP-OPEN naming it is acknowledged from it."""
        try:
            host = _source_address(source[0])
        except ValueError:
            return None
        found = wire.parse_request(packet, self.keys())
        if found is None or found[1].kind != wire.T_RTP_OPEN or port not in found[1].ports:
            return None
        if not self._from_peer(found[1].tag, host) or not self._answerable(found[1].tag, host):
            return None
        return wire.rtp_ack(found[0], found[1], [port])


# -- serving --------------------------------------------------------------------------------------


def serve(
    office: Office,
    sockets: Sequence[socket.socket],
    stop: threading.Event,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Answer datagrams on `sockets` (and the opened RTP ports) until `stop` is set. A packet
    that breaks the responder is reported to `on_error` and dropped."""
    media = office.media
    for sock in sockets:  # t2 from the kernel's receive time, as ping's own times are
        rxtime.enable(sock)
    while not stop.is_set():
        opened = media.sockets() if media else []
        ready, _, _ = select.select([*sockets, *opened], [], [], 0.2)
        for sock in ready:
            port = media.port_of(sock) if media and sock not in sockets else None
            _serve_one(office, sock, port, on_error)
        if media is not None:
            media.expire()


def _serve_one(
    office: Office,
    sock: socket.socket,
    media_port: int | None,
    on_error: Callable[[BaseException], None] | None,
) -> None:
    try:
        packet, ancillary, _, peer = sock.recvmsg(RECV_BYTES, 256)
    except OSError:
        return
    try:
        source = (str(peer[0]), int(peer[1]))
        if media_port is None:
            answer = office.handle(packet, source, rxtime.arrival(ancillary))
        else:
            answer = office.handle_media(packet, source, media_port)
        if answer is not None:
            sock.sendmsg([answer], _reply_from(ancillary), 0, peer)
    except OSError:
        pass
    except Exception as exc:
        if on_error is not None:
            on_error(exc)


def responder_token(state_dir: Path | None, token_file: Path | None, profile: Profile) -> SecretKey:
    """The office token: `token_file`, else the state folder's; an InputError when neither."""
    from netsetup.errors import InputError
    from netsetup.state import StateDir, load_token_file

    if token_file is not None:
        token = load_token_file(token_file)
        if token is None:
            raise InputError("cannot read the responder token: no such file", where=str(token_file))
        return token
    state = StateDir(state_dir)
    token = state.load_responder_token(profile.id)
    if token is None:
        raise InputError(
            "no responder token yet: the first provision of a peer makes it (or give "
            "--token-file, a copy of it on the office host)",
            where=str(state.responder_token_path(profile.id)),
        )
    return token


@dataclass(frozen=True)
class Serving:
    """Where a started office responder listens (what the CLI tells its operator)."""

    profile_id: str
    address: str
    port: int
    media: tuple[str, ...]
    http: bool  # the speed endpoint runs on the same TCP port
    peers: int  # active peers known at the start


def start_speed_server(address: tuple[str, int], keys: PeerKeys) -> Any:  # a speedhttp.SpeedServer
    """The HTTP speed endpoint on TCP `address`, tickets checked against the active peers'
    keys."""
    from netsetup.responder.speedhttp import SpeedServer

    def authorize(ticket: str) -> bool:
        return wire.check_ticket(ticket, keys.get(), time.time())

    return SpeedServer(address, authorize, wire.ticket_expiry).start()


def default_media(profile: Profile) -> list[str]:
    """The PBX's address (the profile's `[voip] sip_server`) when it is on this host."""
    if profile.voip is None:
        return []
    address = str(profile.voip.sip_server)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return []
    return [address]


def run_office_responder(
    profile: Profile,
    *,
    listen: tuple[str, int] | None = None,
    media: Sequence[str] | None = None,
    token: SecretKey,
    stop: threading.Event,
    on_ready: Callable[[Serving], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Serve the office responder of `profile` until `stop` is set."""
    from netsetup.errors import EnvironmentProblem, InputError

    if listen is None:
        if profile.diagnose.responder is None:
            raise InputError(
                "the profile names no office responder ([diagnose] responder); give --listen",
                where=str(profile.profile_file),
            )
        listen = (str(profile.diagnose.responder[0]), profile.diagnose.responder[1])
    try:
        host = str(ipaddress.ip_address(listen[0]))
    except ValueError:
        raise InputError("the responder listens on an IP address, not a name") from None
    keys = PeerKeys(profile, token)
    chosen = list(media) if media is not None else default_media(profile)
    rtp = profile.voip.rtp_ports if profile.voip else (0, -1)
    limits = Limits()
    per_key = limits.media_ports_per_key
    side = MediaSide(chosen, rtp, limits.media_ports, per_key) if chosen else None
    try:
        sockets = open_sockets([host], listen[1])
    except OSError as exc:
        raise EnvironmentProblem.from_os_error(exc, where=f"udp port {listen[1]}") from None
    http = None
    try:
        try:
            http = start_speed_server((host, listen[1]), keys)
        except OSError as exc:
            raise EnvironmentProblem.from_os_error(exc, where=f"tcp port {listen[1]}") from None
        office = Office(
            keys.get, side, listen[1] if http is not None else None, addresses=keys.addresses
        )
        if on_ready is not None:
            on_ready(
                Serving(
                    str(profile.id),
                    host,
                    listen[1],
                    side.media if side else (),
                    http is not None,
                    len(keys.get()),
                )
            )
        serve(office, sockets, stop, on_error)
    finally:
        if http is not None:
            http.close()
        if side is not None:
            side.close()
        for sock in sockets:
            sock.close()
