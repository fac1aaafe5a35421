"""The gateway witness: answers, outside the tunnel, what only the gateway can tell an assistant.

To the owner of a key (a STATUS query MAC'd with X25519 of their key and the gateway's): whether
WireGuard packets from their public address arrived lately (the rendered firewall keeps the
sources of packets to WireGuard's port in timed nftables sets, `wg_seen_v4` and `wg_seen_v6`),
the state of their key (active, unknown, revoked, expired: from the profile's peer files and the
live `wg show <iface> dump`), its last handshake and the port WireGuard really listens on. Nothing
about any other key. A query that does not verify gets the fingerprint of the gateway's *current*
public key, read from the live interface (so a key changed with `wg set` is what counts).

To anyone: probes (an ack with the probe's token and how many bytes arrived, never the payload),
for reachability through the tunnel and the path MTU search.

No answer is longer than its query; answers (only those sent: junk costs nothing) are rate
limited per asker and for the whole, in separate budgets for anonymous askers (per /24 or /64),
the SIP mirror and verified key owners (`Limits`); a malformed packet gets no answer at all.
The private key stays a `SecretKey` in memory and is never logged.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from netsetup.keys import SecretKey, fingerprint, is_valid_key, public_from_private
from netsetup.profile.model import Peer, PeerState, Profile
from netsetup.responder import auth, sipmirror, stun

SEEN_RECENT_S = 30.0  # packets this recent count as "seen lately" (the age is told as well)
SEEN_SETS = {4: "wg_seen_v4", 6: "wg_seen_v6"}
TIMESTAMP_WINDOW_MS = 60_000  # a query's clock may be this far from the witness's
REPLAY_MEMORY = 50_000  # nonces remembered (the global rate limit keeps it from filling)
LIVE_TTL_S = 0.5  # how long a read of `wg show` and the seen sets is reused
FRESH_S = 0.1  # a read asked for afresh (the key may have changed) is at least this old
FILES_TTL_S = 2.0  # how long the peer files read are reused
RECV_BYTES = 65535
KEY_FILE_BYTES = 4096  # a key file is 45 bytes; anything far larger is not one


# -- what the gateway knows ----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveState:
    """The running WireGuard interface, as `wg show <iface> dump` tells it."""

    private_key: SecretKey | None = field(default=None, repr=False)
    listen_port: int | None = None
    handshakes: Mapping[str, int] = field(default_factory=dict)  # peer key -> unix s (0: never)
    key_is_live: bool = True  # False: the key is the fallback (the interface could not be read)

    @property
    def public_key(self) -> str | None:
        return public_from_private(self.private_key) if self.private_key else None


class GatewaySource(Protocol):
    """Where the witness reads the gateway's state (the system, or a test's stand-in)."""

    def live(self, fresh: bool = False) -> LiveState: ...

    def seen_age(self, address: str) -> tuple[bool, float | None]:
        """(whether the record can tell, seconds since `address` last sent to WireGuard's port
        or None when it did not within the record's timeout). The record cannot tell when it
        cannot be read, or when it is full and `address` is not in it."""
        ...

    def peers(self) -> Mapping[str, Peer]: ...


Runner = Callable[[Sequence[str]], str | None]


def run_tool(argv: Sequence[str]) -> str | None:
    """The stdout of a program, or None when it failed or is missing (never its stderr, which
    could echo what it was given)."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=5, check=False, stdin=None
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_dump(text: str) -> LiveState:
    """`wg show <iface> dump`: the interface line (private key, public key, listen port,
    fwmark), then one line per peer (public key, psk, endpoint, allowed ips, handshake, ...)."""
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines or len(lines[0]) < 3:
        return LiveState()
    head = lines[0]
    private = SecretKey(head[0]) if is_valid_key(head[0]) else None
    port = int(head[2]) if head[2].isdigit() and 0 < int(head[2]) < 65536 else None
    handshakes = {
        parts[0]: int(parts[4]) if parts[4].isdigit() else 0
        for parts in lines[1:]
        if len(parts) >= 5 and is_valid_key(parts[0])
    }
    return LiveState(private, port, handshakes)


def _seen_sets(text: str) -> list[dict[str, Any]] | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    items = document.get("nftables") if isinstance(document, dict) else None
    found = [
        i["set"] for i in items or [] if isinstance(i, dict) and isinstance(i.get("set"), dict)
    ]
    return found or None


def parse_seen_set(text: str) -> dict[str, float] | None:
    """`nft -j list set ...`: each address in the set and how long ago it was last refreshed
    (the set's timeout minus what is left of it). None when the text holds no set."""
    found = _seen_sets(text)
    if found is None:
        return None
    ages: dict[str, float] = {}
    for one in found:
        for entry in one.get("elem") or []:
            age = _element_age(entry, one.get("timeout"))
            if age is not None:
                ages[age[0]] = age[1]
    return ages


def seen_set_full(text: str) -> bool:
    """Whether the set holds as many addresses as its size allows (nft gives a dynamic set 65535
    unless told otherwise). Packets with spoofed sources fill it within a second, and from then on
    a new source is not recorded: its absence then says nothing."""
    for one in _seen_sets(text) or []:
        size, elements = one.get("size"), one.get("elem") or []
        if isinstance(size, int) and 0 < size <= len(elements):
            return True
    return False


def _element_age(entry: Any, set_timeout: Any) -> tuple[str, float] | None:
    elem = entry.get("elem") if isinstance(entry, dict) else None
    if not isinstance(elem, dict) or not isinstance(elem.get("val"), str):
        return None
    timeout = elem.get("timeout", set_timeout)
    expires = elem.get("expires")
    if not isinstance(timeout, int | float) or not isinstance(expires, int | float):
        return None
    try:
        address = str(ipaddress.ip_address(elem["val"]))
    except ValueError:
        return None
    return address, max(0.0, float(timeout) - float(expires))


class _Cached:
    """One value, read again when older than `ttl` seconds, or on demand (`fresh`) when older
    than FRESH_S: a flood of forged queries cannot make the witness run `wg` for each. With a
    `stamp` (say, a folder's mtime), also read again as soon as the stamp changes."""

    def __init__(
        self,
        ttl: float,
        read: Callable[[], Any],
        stamp: Callable[[], object] = lambda: None,
    ) -> None:
        self.ttl, self.read, self.stamp = ttl, read, stamp
        self.value: Any = None
        self.at = float("-inf")
        self.stamped: object = None

    def get(self, fresh: bool = False) -> Any:
        now = time.monotonic()
        stamp = self.stamp()
        if now - self.at > (FRESH_S if fresh else self.ttl) or stamp != self.stamped:
            self.value, self.at, self.stamped = self.read(), now, stamp
        return self.value


def _folder_stamp(folder: Path) -> object:
    """What changes when a file in `folder` is written (netsetup writes by rename)."""
    try:
        info = folder.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)


class SystemGateway:
    """The gateway's state from `wg show`, `nft -j list set` and the profile's peer files."""

    def __init__(
        self,
        profile: Profile,
        key_file: SecretKey | None = None,
        runner: Runner = run_tool,
        table: str | None = None,
    ) -> None:
        from netsetup.gateway.firewall import table_name

        self.profile = profile
        self.interface = profile.gateway.interface
        self.table = table or table_name(self.interface)
        self.fallback_key = key_file
        self.runner = runner
        self._live = _Cached(LIVE_TTL_S, self._read_live)
        self._seen = {v: _Cached(LIVE_TTL_S, partial(self._read_seen, v)) for v in SEEN_SETS}
        # a revoke or an expiry counts at once: the peer files are read again when the peers
        # folder changes, not only every FILES_TTL_S (the live interface may already lack the
        # key, and a stale file would then make a revoked key look merely "unknown")
        self._peers = _Cached(
            FILES_TTL_S, self._read_peers, partial(_folder_stamp, profile.peers_dir)
        )

    def __repr__(self) -> str:
        return f"SystemGateway({self.profile.id!r}, {self.interface!r})"

    def live(self, fresh: bool = False) -> LiveState:
        state: LiveState = self._live.get(fresh)
        return state

    def _read_live(self) -> LiveState:
        text = self.runner(["wg", "show", self.interface, "dump"])
        state = parse_dump(text) if text else LiveState()
        if state.private_key is None and self.fallback_key is not None:
            return LiveState(self.fallback_key, state.listen_port, state.handshakes, False)
        return state

    def _read_seen(self, version: int) -> tuple[dict[str, float], bool] | None:
        """(each address's age, whether the set is full), or None when it cannot be read."""
        text = self.runner(["nft", "-j", "list", "set", "inet", self.table, SEEN_SETS[version]])
        ages = parse_seen_set(text) if text else None
        return None if ages is None or text is None else (ages, seen_set_full(text))

    def seen_age(self, address: str) -> tuple[bool, float | None]:
        version = ipaddress.ip_address(address).version
        record: tuple[dict[str, float], bool] | None = self._seen[version].get()
        if record is None:
            return False, None
        ages, full = record
        if address not in ages and full:  # a full set records no new source: cannot tell
            return False, None
        return True, ages.get(address)

    def peers(self) -> Mapping[str, Peer]:
        peers: Mapping[str, Peer] = self._peers.get()
        return peers

    def _read_peers(self) -> dict[str, Peer]:
        from netsetup.profile.store import readable_peers

        by_key: dict[str, Peer] = {}
        # the peers of this gateway only: with several sites, another site's peer is unknown here
        profile = self.profile
        for peer in profile.peers_of(profile.gateway, readable_peers(profile)):
            known = by_key.get(peer.public_key)
            # a key in two records (a retired one and a live one): the live one speaks
            if known is None or known.status == "revoked":
                by_key[peer.public_key] = peer
        return by_key


def key_state(public_key: str, source: GatewaySource, now: datetime) -> str:
    """What the gateway thinks of `public_key`: revoked or expired by the profile, else active
    when the live interface has it, else unknown."""
    peer = source.peers().get(public_key)
    if peer is not None:
        state = peer.state(now)
        if state != PeerState.active:
            return state.value
    return "active" if public_key in source.live().handshakes else "unknown"


# -- rate limits and replays ---------------------------------------------------------------------


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class Limits:
    """Answers per second (and bursts) per asker and for the whole witness, in three pools of
    their own: anonymous answers (probes, plain STUN, fingerprints), the SIP mirror's, and the
    answers to verified askers. An anonymous asker is its /24 (IPv4) or /64 (IPv6) prefix, a
    verified one its address."""

    per_source: float = 20.0
    per_source_burst: float = 40.0
    total: float = 200.0
    total_burst: float = 400.0
    sources: int = 10_000  # buckets kept per pool; the oldest go first


ANONYMOUS, SIP, VERIFIED = "anonymous", "sip", "verified"


def prefix_of(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of `address`: what one anonymous asker is."""
    ip = ipaddress.ip_address(address)
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


class _Pool:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = TokenBucket(limits.total, limits.total_burst)
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, name: str, now: float) -> bool:
        bucket = self.buckets.pop(name, None)
        if bucket is None:
            bucket = TokenBucket(self.limits.per_source, self.limits.per_source_burst)
            while len(self.buckets) >= self.limits.sources:
                self.buckets.popitem(last=False)
        self.buckets[name] = bucket
        return bucket.take(now) and self.total.take(now)


class RateLimiter:
    """Spent only on answers about to be sent: junk that gets no answer costs no one anything,
    and neither anonymous traffic nor the SIP mirror's can use up what verified askers get."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pools = {kind: _Pool(limits) for kind in (ANONYMOUS, SIP, VERIFIED)}

    def allow(self, source: str, kind: str = ANONYMOUS) -> bool:
        name = source if kind == VERIFIED else prefix_of(source)
        return self.pools[kind].take(name, time.monotonic())


class ReplayGuard:
    """Nonces of the queries answered within the timestamp window: each is answered once."""

    def __init__(self, window_ms: int = TIMESTAMP_WINDOW_MS, memory: int = REPLAY_MEMORY) -> None:
        self.window_ms, self.memory = window_ms, memory
        self.seen: OrderedDict[bytes, int] = OrderedDict()

    def fresh(self, nonce: bytes, now_ms: int) -> bool:
        """True the first time `nonce` is shown (and remembered); False for a replay, or when
        the memory is full of nonces still in their window (refused rather than forgotten)."""
        while self.seen and next(iter(self.seen.values())) < now_ms:
            self.seen.popitem(last=False)
        if nonce in self.seen or len(self.seen) >= self.memory:
            return False
        self.seen[nonce] = now_ms + 2 * self.window_ms
        return True


# -- the witness -------------------------------------------------------------------------------


def _source_address(host: str) -> str:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class Witness:
    """Turns one datagram into its answer (or None). No I/O of its own besides `source`."""

    def __init__(
        self,
        source: GatewaySource,
        limits: Limits | None = Limits(),
        *,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.source = source
        self.limiter = RateLimiter(limits) if limits is not None else None
        self.replays = ReplayGuard()
        self.wall_ms = wall_ms

    def __repr__(self) -> str:
        return f"Witness({self.source!r})"

    def handle(self, packet: bytes, host: str, port: int = 0) -> bytes | None:
        """The answer to `packet` from address `host` (and UDP `port`), never longer than
        `packet`. Where it goes: `route`."""
        routed = self.route(packet, host, port)
        return routed[0] if routed is not None else None

    def route(self, packet: bytes, host: str, port: int = 0) -> tuple[bytes, int] | None:
        """(the answer, the port to send it to) or None. The port is the sender's, except for
        an authenticated STUN request with RESPONSE-PORT (RFC 5780: the NAT lifetime test)."""
        try:
            address = _source_address(host)
        except ValueError:
            return None
        try:
            routed = self._answer(packet, address, port)
        except (auth.Malformed, stun.Malformed, ValueError):
            return None
        if routed is None or len(routed[0]) > len(packet):
            return None
        answer, destination, kind = routed
        if self.limiter is not None and not self.limiter.allow(address, kind):
            return None
        return answer, destination

    def mirror(self, packet: bytes, host: str) -> bytes | None:
        """The SIP mirror's answer to a request that came over TCP (rate limited as UDP is)."""
        try:
            address = _source_address(host)
        except ValueError:
            return None
        answer = sipmirror.mirror(packet)
        if answer is None or (self.limiter is not None and not self.limiter.allow(address, SIP)):
            return None
        return answer

    def _answer(self, packet: bytes, address: str, port: int) -> tuple[bytes, int, str] | None:
        """(the answer, its port, the budget it is paid from: ANONYMOUS, SIP or VERIFIED)."""
        kind = auth.packet_type(packet)
        if kind == auth.T_PROBE:
            return auth.build_ack(auth.probe_token(packet), len(packet)), port, ANONYMOUS
        if kind == auth.T_QUERY:
            status = self._status(auth.parse_query(packet), address)
            return (status[0], port, status[1]) if status is not None else None
        if stun.looks_like_stun(packet):
            return self._stun(packet, address, port)
        if sipmirror.looks_like_sip(packet):
            answer = sipmirror.mirror(packet)
            return (answer, port, SIP) if answer is not None else None
        return None

    def _stun(self, packet: bytes, address: str, port: int) -> tuple[bytes, int, str] | None:
        message = stun.parse(packet)
        if message.kind != stun.BINDING_REQUEST or not 0 < port < 65536:
            return None
        destination = stun.response_port(message)
        if destination is not None and not self._stun_signed(message, destination):
            return None
        answer = stun.binding_answer(message.txid, address, port)
        return answer, destination or port, ANONYMOUS if destination is None else VERIFIED

    def _stun_signed(self, message: stun.Message, destination: int) -> bool:
        """A RESPONSE-PORT request carries a NETSETUP-AUTH of an active peer, fresh and not
        seen before: the witness never sends to a port for an anonymous asker."""
        value = message.first(stun.NETSETUP_AUTH)
        live = self.source.live()
        if value is None or live.private_key is None or live.public_key is None:
            return False
        found = stun.parse_auth(value)
        gateway_public = auth.raw_key(live.public_key)
        query_key, _ = auth.shared_keys(
            auth.raw_key(live.private_key.reveal()),
            found.client_public,
            found.client_public,
            gateway_public,
        )
        if not stun.auth_verifies(found, query_key, message.txid, destination):
            return False
        now_ms = self.wall_ms()
        if abs(now_ms - found.timestamp_ms) > TIMESTAMP_WINDOW_MS:
            return False
        public = base64.b64encode(found.client_public).decode("ascii")
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        if key_state(public, self.source, now) != "active":
            return False
        return self.replays.fresh(b"stun" + message.txid, now_ms)

    def _keys(self, query: auth.Query, live: LiveState) -> tuple[bytes, bytes] | None:
        if live.private_key is None or live.public_key is None:
            return None
        gateway_public = auth.raw_key(live.public_key)
        keys = auth.shared_keys(
            auth.raw_key(live.private_key.reveal()),
            query.client_public,
            query.client_public,
            gateway_public,
        )
        return keys if query.verifies(keys[0]) else None

    def _status(self, query: auth.Query, address: str) -> tuple[bytes, str] | None:
        live = self.source.live()
        keys = self._keys(query, live)
        if keys is None:  # perhaps the key changed since the last read: read it again once
            live = self.source.live(fresh=True)
            keys = self._keys(query, live)
        if keys is None:
            if live.public_key is None:
                return None  # no key to speak for: say nothing rather than something wrong
            return auth.build_mismatch(query.nonce, fingerprint(live.public_key)), ANONYMOUS
        answer_key = keys[1]
        now_ms = self.wall_ms()
        if abs(now_ms - query.timestamp_ms) > TIMESTAMP_WINDOW_MS:
            # an old query can be replayed from anywhere: its answer is paid as anonymous
            return auth.build_stale(query.nonce, answer_key, now_ms), ANONYMOUS
        if not self.replays.fresh(query.nonce, now_ms):
            return None
        facts = self._facts(query, address, live)
        # anyone can make a key that verifies: only a key the gateway knows (a peer file, or the
        # live interface) is paid from the budget that floods cannot reach
        public = base64.b64encode(query.client_public).decode("ascii")
        known = public in self.source.peers() or public in live.handshakes
        return auth.build_status(query.nonce, answer_key, facts), VERIFIED if known else ANONYMOUS

    def _facts(self, query: auth.Query, address: str, live: LiveState) -> auth.Status:
        public = base64.b64encode(query.client_public).decode("ascii")
        now = datetime.fromtimestamp(self.wall_ms() / 1000, UTC)
        known, seen_age = self.source.seen_age(address)
        handshake = live.handshakes.get(public, 0)
        recent = seen_age is not None and seen_age <= SEEN_RECENT_S
        return auth.Status(
            seen_recently=recent if known else None,
            seen_age_s=seen_age,
            key_state=key_state(public, self.source, now),
            last_handshake_age_s=max(0.0, now.timestamp() - handshake) if handshake else None,
            listen_port=live.listen_port,
            public_address=address,
        )


# -- serving -----------------------------------------------------------------------------------


# Linux's values; Python's socket module leaves these two out
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, local address (spec_dst), header destination
_IN6_PKTINFO = struct.Struct("=16si")  # address, ifindex


def open_sockets(addresses: Iterable[str], port: int) -> list[socket.socket]:
    """One UDP socket per address (`0.0.0.0` and `::` for every address). An address that is
    not (yet) on the machine is bound all the same (IP_FREEBIND), so the gateway's tunnel
    addresses can be served before the interface is up. Each socket learns the address a query
    was sent to, so that the answer leaves from it (a NAT on the way expects it from there)."""
    sockets: list[socket.socket] = []
    try:
        for text in addresses:
            address = ipaddress.ip_address(text)
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if not address.is_unspecified:
                sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            _learn_destination(sock)
            sock.bind((str(address), port))
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _learn_destination(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, AttributeError):  # elsewhere than Linux: the route decides
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def _reply_from(ancillary: list[tuple[int, int, bytes]]) -> list[Any]:
    """The control message that makes an answer leave from the address its query was sent to."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            _, _, destination = _IN_PKTINFO.unpack_from(data)
            return [(level, kind, _IN_PKTINFO.pack(0, destination, bytes(4)))]
        v6 = level == socket.IPPROTO_IPV6 and kind == getattr(socket, "IPV6_PKTINFO", -1)
        if v6 and len(data) >= _IN6_PKTINFO.size:
            destination, index = _IN6_PKTINFO.unpack_from(data)
            # a link-local destination needs its interface; any other one does not
            keep = index if destination[:2] == b"\xfe\x80" else 0
            return [(level, kind, _IN6_PKTINFO.pack(destination, keep))]
    return []


def serve(
    witness: Witness,
    sockets: Sequence[socket.socket],
    stop: threading.Event,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Answer datagrams on `sockets` until `stop` is set. A packet that breaks the witness is
    reported to `on_error` and dropped: one bad packet never ends the service."""
    while not stop.is_set():
        ready, _, _ = select.select(list(sockets), [], [], 0.2)
        for sock in ready:
            _serve_one(witness, sock, on_error)


def _serve_one(
    witness: Witness, sock: socket.socket, on_error: Callable[[BaseException], None] | None
) -> None:
    try:
        packet, ancillary, _, peer = sock.recvmsg(RECV_BYTES, 256)
    except OSError:
        return
    try:
        routed = witness.route(packet, str(peer[0]), int(peer[1]))
        if routed is not None:
            answer, port = routed
            sock.sendmsg([answer], _reply_from(ancillary), 0, (peer[0], port, *peer[2:]))
    except OSError:
        pass
    except Exception as exc:
        if on_error is not None:
            on_error(exc)


EVERY_ADDRESS = ("0.0.0.0", "::")


def listen_addresses(profile: Profile, listen: Sequence[str]) -> list[str]:
    """`listen` (default: every address) and the gateway's tunnel addresses, once each."""
    chosen = list(listen) or list(EVERY_ADDRESS)
    if listen:
        network = profile.network
        tunnel = [network.gateway_address_v4, network.gateway_address_v6]
        chosen += [str(a) for a in tunnel if a is not None]
    return list(dict.fromkeys(str(ipaddress.ip_address(a)) for a in chosen))


def gateway_key(
    profile: Profile, key_file: Path | None, state_dir: Path | None
) -> SecretKey | None:
    """The fallback private key (the live interface's comes first): `key_file`, else the one in
    the state directory, else None. A key file that was named but cannot be read is an error; so
    is one that is not a regular file of a few bytes (a FIFO would block the start for good, even
    SIGTERM, and /dev/zero fill the memory)."""
    from netsetup.errors import InputError
    from netsetup.state import StateDir
    from netsetup.validate.reading import Unreadable, read_regular

    if key_file is None:
        stored = StateDir(state_dir).load_gateway_key(profile.id)
        if stored is None or not profile.multi_site:
            return stored
        # one key per profile there: with several sites it is one site's, not necessarily this one's
        from netsetup.keys import public_from_private

        return stored if public_from_private(stored) == profile.gateway.public_key else None
    try:
        return SecretKey(read_regular(key_file, KEY_FILE_BYTES).decode("ascii").strip())
    except Unreadable as exc:
        reason = str(exc) if os.path.lexists(key_file) else "no such file"
        raise InputError(f"cannot read the gateway key: {reason}", where=str(key_file)) from None
    except ValueError:  # UnicodeDecodeError too
        raise InputError(
            "the gateway key file holds no WireGuard key", where=str(key_file)
        ) from None


@dataclass(frozen=True)
class Serving:
    """Where a started witness listens (what the CLI tells its operator)."""

    profile_id: str
    port: int
    addresses: tuple[str, ...]
    interface: str
    key: str  # whose key it answers with: "live", "fallback" or "none" (then it stays silent)
    # the SIP mirror on UDP and TCP 5060: "off" (the profile does not ask for it), "on", or
    # why it could not start (then it answers on the witness port only)
    sip_mirror: str = "off"


def run_gateway_witness(
    profile: Profile,
    *,
    listen: Sequence[str] = (),
    key_file: Path | None = None,
    state_dir: Path | None = None,
    stop: threading.Event,
    on_ready: Callable[[Serving], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Serve the witness of `profile`'s gateway until `stop` is set."""
    from netsetup.errors import EnvironmentProblem, InputError

    port = profile.gateway.witness_port
    if port == 0:
        raise InputError(
            "the profile turns the witness off (gateway.witness_port = 0)",
            where=str(profile.profile_file),
        )
    try:
        addresses = listen_addresses(profile, listen)
    except ValueError:
        raise InputError("--listen takes IP addresses") from None
    source = SystemGateway(profile, gateway_key(profile, key_file, state_dir))
    try:
        sockets = open_sockets(addresses, port)
    except OSError as exc:
        raise EnvironmentProblem.from_os_error(exc, where=f"udp port {port}") from None
    mirror_udp, mirror_tcp, mirror_state = _mirror_sockets(profile, addresses)
    witness = Witness(source)
    try:
        if on_ready is not None:
            live = source.live()
            key = "none" if live.private_key is None else "live" if live.key_is_live else "fallback"
            on_ready(
                Serving(
                    str(profile.id), port, tuple(addresses), source.interface, key, mirror_state
                )
            )
        if mirror_tcp:
            threading.Thread(
                target=serve_tcp_mirror,
                args=(witness, mirror_tcp, stop),
                name="sip mirror tcp",
                daemon=True,
            ).start()
        serve(witness, [*sockets, *mirror_udp], stop, on_error)
    finally:
        for sock in [*sockets, *mirror_udp, *mirror_tcp]:
            sock.close()


SIP_PORT = 5060
TCP_MIRROR_CONNECTIONS = 16
TCP_MIRROR_PER_SOURCE = 2  # one address cannot take every slot
TCP_READ_TIMEOUT_S = 5.0  # for the whole request of a connection, however slowly it drips


def _mirror_sockets(
    profile: Profile, addresses: Sequence[str]
) -> tuple[list[socket.socket], list[socket.socket], str]:
    """UDP and TCP sockets on 5060 for the SIP mirror when the profile asks for it. Taken (a PBX
    on the gateway): none, and the reason (the witness port still mirrors)."""
    if not profile.mirrors_sip:
        return [], [], "off"
    try:
        udp = open_sockets(addresses, SIP_PORT)
    except OSError as exc:
        return [], [], f"not on port {SIP_PORT} (udp: {exc.strerror or exc})"
    try:
        tcp = open_tcp_listeners(addresses, SIP_PORT)
    except OSError as exc:
        for sock in udp:
            sock.close()
        return [], [], f"not on port {SIP_PORT} (tcp: {exc.strerror or exc})"
    return udp, tcp, "on"


def open_tcp_listeners(addresses: Iterable[str], port: int) -> list[socket.socket]:
    listeners: list[socket.socket] = []
    try:
        for text in addresses:
            address = ipaddress.ip_address(text)
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if not address.is_unspecified:
                sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.bind((str(address), port))
            sock.listen(16)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class _Slots:
    """Connections served at once: at most `total`, at most `per_source` from one address."""

    def __init__(self, total: int, per_source: int) -> None:
        self.total, self.per_source = total, per_source
        self.held: dict[str, int] = {}
        self.lock = threading.Lock()

    def take(self, source: str) -> bool:
        with self.lock:
            if sum(self.held.values()) >= self.total or self.held.get(source, 0) >= self.per_source:
                return False
            self.held[source] = self.held.get(source, 0) + 1
            return True

    def give_back(self, source: str) -> None:
        with self.lock:
            left = self.held.pop(source, 1) - 1
            if left > 0:
                self.held[source] = left


def serve_tcp_mirror(
    witness: Witness, listeners: Sequence[socket.socket], stop: threading.Event
) -> None:
    """Accept SIP over TCP and mirror one request per connection (at most
    TCP_MIRROR_CONNECTIONS at once, TCP_MIRROR_PER_SOURCE from one address; a connection gets
    TCP_READ_TIMEOUT_S in all for its request)."""
    slots = _Slots(TCP_MIRROR_CONNECTIONS, TCP_MIRROR_PER_SOURCE)
    while not stop.is_set():
        try:
            ready, _, _ = select.select(list(listeners), [], [], 0.2)
        except (OSError, ValueError):
            return  # the listeners were closed: the witness is stopping
        for listener in ready:
            try:
                conn, peer = listener.accept()
            except OSError:
                continue
            host = str(peer[0])
            if not slots.take(host):
                conn.close()
                continue
            threading.Thread(
                target=_mirror_connection, args=(witness, conn, host, slots), daemon=True
            ).start()


def _mirror_connection(witness: Witness, conn: socket.socket, host: str, slots: _Slots) -> None:
    try:
        with conn:
            conn.setblocking(True)
            data = read_sip_stream(conn)
            answer = witness.mirror(data, host) if data is not None else None
            if answer is not None:
                conn.settimeout(TCP_READ_TIMEOUT_S)
                conn.sendall(answer)
    except OSError:
        pass
    finally:
        slots.give_back(host)


def read_sip_stream(conn: socket.socket, limit: int = sipmirror.MAX_MESSAGE) -> bytes | None:
    """One SIP message from a stream: the headers, then Content-Length bytes of body, all
    within TCP_READ_TIMEOUT_S (each read waits only for what is left of it). None when it is
    broken, too long, cut or late."""
    deadline = time.monotonic() + TCP_READ_TIMEOUT_S
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > limit:
            return None
        chunk = _recv_by(conn, deadline)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = _content_length(head)
    if length is None or length > limit:
        return None
    while len(body) < length:
        chunk = _recv_by(conn, deadline)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body[:length]


def _recv_by(conn: socket.socket, deadline: float) -> bytes:
    """Up to 4096 bytes, or b"" when the deadline passes (or the peer closed)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return b""
    conn.settimeout(left)
    try:
        return conn.recv(4096)
    except TimeoutError:
        return b""


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 7 else None
    return 0
