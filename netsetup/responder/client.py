"""What the assistant's side asks the gateway witness: the status of their own key, and probes.

Portable: plain UDP sockets, `cryptography` for X25519 and the answer's box, getaddrinfo for the
witness's address (IPv4 and IPv6). No answer within the timeout is `None`, never an exception:
the caller decides what an absent witness means.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from netsetup.keys import SecretKey
from netsetup.responder import auth

SEND_TRIES = 3  # each with a fresh nonce: a resent query would be refused as a replay


@dataclass(frozen=True)
class WitnessStatus:
    """The witness's answer about the asker's own key, MAC'd with the asker's key."""

    seen_recently: bool | None  # WireGuard packets from my public address arrived lately
    seen_age_s: float | None
    key_state: str  # "active" | "unknown" | "revoked" | "expired"
    last_handshake_age_s: float | None
    listen_port: int | None  # the port WireGuard really listens on
    public_address: str | None  # the asker's address as the gateway saw it (diagnose masks it)


@dataclass(frozen=True)
class KeyMismatch:
    """The witness could not verify the query: the gateway's key is not the one the asker has."""

    gateway_fingerprint: str  # fingerprint of the gateway's current public key


SockSetup = Callable[[socket.socket], None]


def _addresses(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    except (OSError, UnicodeError):
        return []
    out: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, address in infos:
        if (family, address) not in out:
            out.append((family, tuple(address)))
    return out


def _receive(sock: socket.socket, deadline: float) -> bytes | None:
    """One datagram before `deadline` (monotonic), or None."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    ready, _, _ = select.select([sock], [], [], left)
    if not ready:
        return None
    try:
        return sock.recv(auth.MAX_UDP + 1)
    except OSError:  # an ICMP error from an earlier send (port unreachable): nothing to read
        return b""


@dataclass
class _Asker:
    client_public: bytes
    query_key: bytes
    answer_key: bytes
    offset_ms: int = 0  # the witness's clock minus ours, once it said ours is off
    nonces: tuple[bytes, ...] = ()

    def query(self) -> bytes:
        nonce = os.urandom(auth.NONCE_BYTES)
        self.nonces += (nonce,)
        stamp = int(time.time() * 1000) + self.offset_ms
        return auth.build_query(self.client_public, self.query_key, nonce, max(0, stamp))

    def answer(self, packet: bytes) -> WitnessStatus | KeyMismatch | int | None:
        """The answer in `packet`, the witness's clock (ms) for a STALE answer, or None when
        the packet answers none of our queries."""
        kind = auth.packet_type(packet)
        for nonce in self.nonces:
            try:
                if kind == auth.T_STATUS:
                    return WitnessStatus(**vars(auth.parse_status(packet, nonce, self.answer_key)))
                if kind == auth.T_MISMATCH:
                    return KeyMismatch(auth.parse_mismatch(packet, nonce))
                if kind == auth.T_STALE:
                    return auth.parse_stale(packet, nonce, self.answer_key)
            except auth.Malformed:
                continue
        return None


def _derive_keys(
    client_private: SecretKey, gateway_public: str
) -> tuple[bytes, bytes, bytes] | None:
    """(our public key, query key, answer key) for the witness; None for unusable keys."""
    from netsetup.keys import public_from_private

    try:
        client_public = auth.raw_key(public_from_private(client_private))
        query_key, answer_key = auth.shared_keys(
            auth.raw_key(client_private.reveal()),
            auth.raw_key(gateway_public),
            client_public,
            auth.raw_key(gateway_public),
        )
    except (ValueError, auth.Malformed):
        return None
    return client_public, query_key, answer_key


def ask_witness(
    host: str, port: int, client_private: SecretKey, gateway_public: str, timeout: float
) -> WitnessStatus | KeyMismatch | None:
    """Ask the witness at host:port about our own key. None: no (usable) answer in `timeout`."""
    derived = _derive_keys(client_private, gateway_public)
    if derived is None:
        return None
    client_public, query_key, answer_key = derived
    asker = _Asker(client_public, query_key, answer_key)
    deadline = time.monotonic() + timeout
    addresses = _addresses(host, port)
    for index, (family, address) in enumerate(addresses):
        share = (deadline - time.monotonic()) / (len(addresses) - index)
        found = _ask_one(asker, family, address, time.monotonic() + share)
        if found is not None:
            return found
    return None


def _ask_one(
    asker: _Asker, family: int, address: tuple[object, ...], deadline: float
) -> WitnessStatus | KeyMismatch | None:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    with sock:
        interval = max(0.05, (deadline - time.monotonic()) / SEND_TRIES)
        clock_fixed = False
        while time.monotonic() < deadline:
            try:
                sock.sendto(asker.query(), address)
            except OSError:
                return None
            found = _wait_answer(asker, sock, min(deadline, time.monotonic() + interval))
            if isinstance(found, int):
                if clock_fixed:
                    return None  # the witness keeps calling our time stale: give up
                asker.offset_ms = found - int(time.time() * 1000)
                clock_fixed = True
                continue
            if found is not None:
                return found
    return None


def _wait_answer(
    asker: _Asker, sock: socket.socket, until: float
) -> WitnessStatus | KeyMismatch | int | None:
    while True:
        packet = _receive(sock, until)
        if packet is None:
            return None
        found = asker.answer(packet)
        if found is not None:
            return found


# -- probes -------------------------------------------------------------------------------------


PROBE_MIN_SIZE = auth.PROBE_MIN_SIZE


def probe_payload(size: int) -> tuple[bytes, bytes]:
    """(a probe of exactly `size` bytes, its token). `size` is at least PROBE_MIN_SIZE."""
    token = os.urandom(auth.TOKEN_BYTES)
    return auth.build_probe(size, token), token


def probe_reply_size(reply: bytes, token: bytes) -> int | None:
    """How many bytes the witness got of the probe with `token`, or None if `reply` is not its
    ack."""
    try:
        return auth.parse_ack(reply, token)
    except auth.Malformed:
        return None


def probe(
    host: str, port: int, size: int, timeout: float, *, sock_setup: SockSetup | None = None
) -> int | None:
    """Send one probe of `size` bytes to the witness and wait for its ack: the number of bytes
    the witness received, or None (no ack in time, or the local system refused to send it, as
    it does for a Don't-Fragment packet larger than the route's MTU). `sock_setup(sock)` is
    called before sending, e.g. to set Don't Fragment."""
    addresses = _addresses(host, port)
    if not addresses:
        return None
    family, address = addresses[0]
    packet, token = probe_payload(size)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    with sock:
        try:
            if sock_setup is not None:
                sock_setup(sock)
            sock.sendto(packet, address)
        except OSError:
            return None
        while True:
            reply = _receive(sock, deadline)
            if reply is None:
                return None
            got = probe_reply_size(reply, token)
            if got is not None:
                return got


# -- STUN on the witness port (the public mapping, the NAT's binding lifetime) -------------------


@dataclass(frozen=True)
class Mapping:
    """This computer's UDP socket as it is (`local`) and as the witness saw it (`mapped`)."""

    local: tuple[str, int]
    mapped: tuple[str, int]

    @property
    def translated(self) -> bool:
        return self.local[0] != self.mapped[0]


def stun_mapping(
    address: tuple[str, int], timeout: float, sock: socket.socket | None = None, tries: int = 3
) -> Mapping | None:
    """Ask the witness at `address` how it sees our UDP socket (`sock`, or a new one)."""
    from netsetup.responder import stun

    own = sock is None
    try:
        if sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                                 socket.SOCK_DGRAM)  # fmt: skip
            sock.connect(address)
        local = sock.getsockname()[:2]
    except OSError:
        if own and sock is not None:
            sock.close()
        return None
    try:
        deadline = time.monotonic() + timeout
        for index in range(tries):
            txid = os.urandom(stun.TXID_BYTES)
            try:
                sock.send(stun.binding_request(txid))
            except OSError:
                return None
            share = (deadline - time.monotonic()) / (tries - index)
            found = _wait_mapping(sock, txid, time.monotonic() + share)
            if found is not None:
                return Mapping((str(local[0]), int(local[1])), found)
        return None
    finally:
        if own:
            sock.close()


def _wait_mapping(sock: socket.socket, txid: bytes, until: float) -> tuple[str, int] | None:
    from netsetup.responder import stun

    while True:
        packet = _receive(sock, until)
        if packet is None:
            return None
        found = stun.mapped_address(packet, txid)
        if found is not None:
            return found


@dataclass(frozen=True)
class LifetimeKeys:
    """What a RESPONSE-PORT request is signed with (the witness's query key for our key)."""

    client_public: bytes
    query_key: bytes


def lifetime_keys(client_private: SecretKey, gateway_public: str) -> LifetimeKeys | None:
    derived = _derive_keys(client_private, gateway_public)
    return None if derived is None else LifetimeKeys(derived[0], derived[1])


LIFETIME_ANSWER_S = 1.5  # how long a socket waits for the answer sent to its mapped port
LIFETIME_TRIES = 2


@dataclass
class _Binding:
    idle_s: float
    sock: socket.socket
    mapping: Mapping
    due: float  # monotonic: when the other socket asks the witness to answer here
    txids: list[bytes]
    alive: bool | None = None


def binding_lifetime(
    address: tuple[str, int],
    idle_times: list[float],
    keys: LifetimeKeys,
    deadline: float,
) -> dict[float, bool | None]:
    """RFC 5780 4.6 with parallel sockets: for each idle time T a socket learns its mapping, stays
    silent T seconds, then another socket asks the witness (RESPONSE-PORT, signed) to answer to
    the first one's mapped port. Answer received: the NAT kept the binding T seconds. None for a
    T that could not be tried (no mapping, or past `deadline`)."""
    bindings = _open_bindings(address, idle_times, deadline)
    results: dict[float, bool | None] = {t: None for t in idle_times}
    try:
        with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                           socket.SOCK_DGRAM) as asker:  # fmt: skip
            asker.connect(address)
            _run_bindings(asker, bindings, keys, deadline)
    except OSError:
        pass
    finally:
        for b in bindings:
            results[b.idle_s] = b.alive
            b.sock.close()
    return results


def _open_bindings(
    address: tuple[str, int], idle_times: list[float], deadline: float
) -> list[_Binding]:
    bindings: list[_Binding] = []
    for idle in idle_times:
        if time.monotonic() + idle + LIFETIME_ANSWER_S > deadline:
            continue
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                             socket.SOCK_DGRAM)  # fmt: skip
        try:
            sock.connect(address)
            mapping = stun_mapping(address, 1.0, sock)
        except OSError:
            mapping = None
        if mapping is None:
            sock.close()
            continue
        bindings.append(_Binding(idle, sock, mapping, time.monotonic() + idle, []))
    return bindings


def _run_bindings(
    asker: socket.socket, bindings: list[_Binding], keys: LifetimeKeys, deadline: float
) -> None:
    from netsetup.responder import stun

    pending = list(bindings)
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for b in pending:
            tries_due = b.due + len(b.txids) * 0.4
            if len(b.txids) < LIFETIME_TRIES and now >= tries_due:
                txid = os.urandom(stun.TXID_BYTES)
                b.txids.append(txid)
                stamp = int(time.time() * 1000)
                signed = (keys.query_key, keys.client_public, stamp)
                request = stun.binding_request(
                    txid, size=128, response_port=b.mapping.mapped[1], signed_by=signed
                )
                asker.send(request)
        _collect(pending, min(deadline, time.monotonic() + 0.2))
        for b in list(pending):
            if b.alive is None and b.txids and time.monotonic() > b.due + LIFETIME_ANSWER_S:
                b.alive = False
                # a binding forgotten after T is forgotten after any longer idle time too: the
                # longer tests need not be waited for
                for longer in pending:
                    if longer.idle_s > b.idle_s and longer.alive is None:
                        longer.alive = False
        pending = [b for b in pending if b.alive is None]


def _collect(pending: list[_Binding], until: float) -> None:
    from netsetup.responder import stun

    socks = {b.sock: b for b in pending if b.txids}
    left = until - time.monotonic()
    if not socks or left <= 0:
        time.sleep(max(0.0, left))
        return
    ready, _, _ = select.select(list(socks), [], [], left)
    for sock in ready:
        try:
            packet = sock.recv(2048)
        except OSError:
            continue
        b = socks[sock]
        if any(stun.mapped_address(packet, t) is not None for t in b.txids):
            b.alive = True
