"""Voice-shaped probes against the office responder (NSR1): 50 packets a second, 20 ms apart on
an absolute schedule, about 200 bytes each, like one direction of a G.711 call; each REFLECT
comes back with the responder's receive and send times. At the end the responder's SUMMARY
(asked up to three times) gives its own counts, from which the loss of each direction follows.

Also the RTP range test: RTP-OPEN asks the responder to open ports of the profile's RTP range on
its media address and answer from each (the office's side of a call reaches the assistant), and
RTP-CALL asks it to send one datagram from the media address to ports of ours (a new flow in the
direction of an incoming call).

Plain UDP sockets and select: portable. Keys never leave `OfficeSession`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from netsetup.diagnose.platform import rxtime
from netsetup.diagnose.voice.metrics import ProbeRecord, ResponderCounts
from netsetup.responder.office_wire import (
    Caps,
    OfficeSession,
    Reflect,
    RtpAck,
    Summary,
)

PROBE_INTERVAL_S = 0.020
PROBE_SIZE = 200
DEFAULT_PROBES = 150  # 3 s
LONG_PROBES = 1100  # 22 s: enough for loss within +-1.5 points at 5-20 %
SETTLE_S = 0.4  # after the last probe, for reflects still on their way
SUMMARY_TRIES = 5  # at 20 % loss three tries all fail one run in 125; five, one in 3,000
SUMMARY_WAIT_S = 0.3
RECEIVE_BYTES = 2048


class ResponderSilent(Exception):
    """The responder answered nothing at all (not reachable, or it does not know our key)."""


@dataclass(frozen=True)
class ProbePlan:
    count: int = DEFAULT_PROBES
    interval_s: float = PROBE_INTERVAL_S
    size: int = PROBE_SIZE
    settle_s: float = SETTLE_S

    def reserve_s(self) -> float:
        """Time needed after the last probe: late reflects and the summary's tries."""
        return self.settle_s + SUMMARY_TRIES * SUMMARY_WAIT_S

    def fitted(self, seconds: float) -> ProbePlan:
        """This plan with fewer probes when only `seconds` are left for all of it."""
        room = int((seconds - self.reserve_s()) / self.interval_s)
        return ProbePlan(max(0, min(self.count, room)), self.interval_s, self.size, self.settle_s)


@dataclass
class SessionResult:
    records: list[ProbeRecord]
    counts: ResponderCounts | None  # None: no SUMMARY came back
    duplicates: int = 0


def open_socket(address: tuple[str, int]) -> socket.socket:
    """A UDP socket connected to the responder (answers from elsewhere are not ours)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Probing:
    sock: socket.socket
    session: OfficeSession
    deadline: float  # monotonic seconds
    sent: dict[int, int] = field(default_factory=dict)  # seq -> t1
    reflects: dict[int, tuple[Reflect, int, int]] = field(default_factory=dict)  # (r, t4, order)
    summary: Summary | None = None
    duplicates: int = 0
    stamped: bool = False  # the kernel stamps arrivals (rxtime)

    def __post_init__(self) -> None:
        self.stamped = rxtime.enable(self.sock)

    def receive_until(self, until_ns: int, done: bool = False) -> None:
        """Read answers until `until_ns` (monotonic), the deadline, or (with `done`) every probe
        answered."""
        while True:
            to_deadline = int((self.deadline - time.monotonic()) * 1e9)
            left = min(until_ns - time.monotonic_ns(), to_deadline)
            if left <= 0 or (done and len(self.reflects) == len(self.sent)):
                return
            ready, _, _ = select.select([self.sock], [], [], left / 1e9)
            if ready:
                self._read()

    def _read(self) -> None:
        try:
            data, _, t4 = rxtime.receive(self.sock, RECEIVE_BYTES, self.stamped)
        except OSError:  # an ICMP error for an earlier probe (port unreachable)
            return
        answer = self.session.parse(data)
        if isinstance(answer, Reflect) and answer.seq in self.sent:
            if answer.seq in self.reflects or answer.t1_ns != self.sent[answer.seq]:
                self.duplicates += 1
                return
            self.reflects[answer.seq] = (answer, t4, len(self.reflects))
        elif isinstance(answer, Summary):
            self.summary = answer

    def send(self, packet: bytes) -> None:
        with contextlib.suppress(OSError):  # refused for a moment: the probe counts as lost
            self.sock.send(packet)

    def probes(self, plan: ProbePlan) -> None:
        start = time.monotonic_ns()
        step = int(plan.interval_s * 1e9)
        for seq in range(plan.count):
            self.receive_until(start + seq * step)
            if time.monotonic() >= self.deadline:
                return
            t1 = time.monotonic_ns()
            self.sent[seq] = t1
            self.send(self.session.probe(seq, t1, plan.size))

    def ask_summary(self) -> None:
        for _ in range(SUMMARY_TRIES):
            if self.summary is not None or time.monotonic() >= self.deadline:
                return
            self.send(self.session.summary())
            until = time.monotonic_ns() + int(SUMMARY_WAIT_S * 1e9)
            while self.summary is None and time.monotonic_ns() < until:
                self.receive_until(until, done=False)

    def records(self) -> list[ProbeRecord]:
        out = []
        for seq, t1 in self.sent.items():
            got = self.reflects.get(seq)
            if got is None:
                out.append(ProbeRecord(seq, t1))
            else:
                r, t4, order = got
                out.append(ProbeRecord(seq, t1, r.t2_ns, r.t3_ns, t4, order))
        return out


def run_probes(
    address: tuple[str, int], session: OfficeSession, plan: ProbePlan, deadline: float
) -> SessionResult:
    """Send the plan's probes to the responder at `address`, then ask for its SUMMARY."""
    with open_socket(address) as sock:
        probing = _Probing(sock, session, deadline)
        probing.probes(plan)
        settle = time.monotonic_ns() + int(plan.settle_s * 1e9)
        probing.receive_until(settle, done=True)
        probing.ask_summary()
    if not probing.reflects and probing.summary is None:
        raise ResponderSilent(f"no answer from the responder to {len(probing.sent)} probes")
    counts = None
    if probing.summary is not None:
        counts = ResponderCounts(probing.summary.rx_count, probing.summary.tx_count)
    return SessionResult(probing.records(), counts, probing.duplicates)


def ask(
    address: tuple[str, int], session: OfficeSession, packet: bytes, wait_s: float, tries: int = 3
) -> Caps | Summary | RtpAck | Reflect | None:
    """One request, resent up to `tries` times, and its first authentic answer (None: none)."""
    with open_socket(address) as sock:
        for _ in range(tries):
            with contextlib.suppress(OSError):
                sock.send(packet)
            until = time.monotonic() + wait_s
            while (left := until - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                try:
                    answer = session.parse(sock.recv(RECEIVE_BYTES))
                except OSError:
                    continue
                if answer is not None:
                    return answer
    return None


@dataclass(frozen=True)
class PortsResult:
    asked: tuple[int, ...]
    answered: tuple[int, ...]  # the responder acknowledged them (opened / called)
    reached: tuple[int, ...]  # proven to get through in the direction tested


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _acks(
    sock: socket.socket,
    session: OfficeSession,
    sources: dict[tuple[str, int], set[int] | None],
    wait_s: float,
) -> set[int]:
    """Ports acknowledged to `sock` within `wait_s` by an authentic RTP-ACK: from a source of
    `sources` mapped to the ports it may vouch for (None: the ports its ack lists, the
    responder's main port), until every port a source may vouch for is in."""
    got: set[int] = set()
    wanted = set().union(*(p for p in sources.values() if p is not None))
    until = time.monotonic() + wait_s
    while (not wanted or wanted - got) and (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        try:
            data, source = sock.recvfrom(RECEIVE_BYTES)
        except OSError:
            continue
        key = (str(source[0]), int(source[1]))
        answer = session.parse(data)
        if key not in sources or not isinstance(answer, RtpAck):
            continue
        vouched = sources[key]
        got |= set(answer.ports) if vouched is None else set(answer.ports) & vouched
        if vouched is None and not wanted:
            break  # the main port's ack lists everything opened
    return got


def rtp_open(
    address: tuple[str, int],
    session: OfficeSession,
    media: str,
    ports: Sequence[int],
    wait_s: float,
) -> PortsResult:
    """Toward the office: RTP-OPEN makes the responder open `ports` on `media` (its main port's
    ack lists those it opened: `answered`); then a datagram of ours to media:port must be
    acknowledged from that port (`reached`: this computer's audio gets to the office's media
    port; the ack is a reply in a firewall's eyes)."""
    opened: set[int] = set()
    with socket.socket(_family(media), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        main: dict[tuple[str, int], set[int] | None] = {address: None}
        for _ in range(3):
            with contextlib.suppress(OSError):
                sock.sendto(session.rtp_open(ports), address)
            opened |= _acks(sock, session, main, wait_s)
            if opened:
                break
    reached: set[int] = set()
    # a fresh socket: the acks the media ports sent when they opened do not count as answers
    with socket.socket(_family(media), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for _ in range(3):
            missing = sorted(opened - reached)
            if not missing:
                break
            for port in missing:
                with contextlib.suppress(OSError):
                    sock.sendto(session.rtp_open([port]), (media, port))
            reached |= _acks(sock, session, {(media, p): {p} for p in missing}, wait_s)
    return PortsResult(tuple(ports), tuple(sorted(opened)), tuple(sorted(reached)))


def rtp_call(
    address: tuple[str, int],
    session: OfficeSession,
    media: str,
    ports: Sequence[int],
    wait_s: float,
) -> PortsResult:
    """Toward us: sockets bound to `ports` here, and RTP-CALL makes the responder send one
    datagram from `media` to each (a new flow, like an incoming call's audio). A port taken on
    this computer is not asked."""
    socks: dict[int, socket.socket] = {}
    try:
        for port in ports:
            s = socket.socket(_family(media), socket.SOCK_DGRAM)
            try:
                s.bind(("", port))
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            socks[port] = s
        return _call(address, session, media, socks, wait_s)
    finally:
        for s in socks.values():
            s.close()


def _call(
    address: tuple[str, int],
    session: OfficeSession,
    media: str,
    socks: dict[int, socket.socket],
    wait_s: float,
) -> PortsResult:
    reached: set[int] = set()
    called: set[int] = set()
    with socket.socket(_family(media), socket.SOCK_DGRAM) as asker:
        for _ in range(3):
            missing = [p for p in socks if p not in reached]
            if not missing:
                break
            with contextlib.suppress(OSError):
                asker.sendto(session.rtp_call(missing), address)
            reached |= _arrivals(session, media, {p: socks[p] for p in missing}, wait_s)
            called |= _acks(asker, session, {address: None}, 0.05)  # the main port's list
    return PortsResult(tuple(sorted(socks)), tuple(sorted(called)), tuple(sorted(reached)))


def _arrivals(
    session: OfficeSession, media: str, socks: dict[int, socket.socket], wait_s: float
) -> set[int]:
    got: set[int] = set()
    until = time.monotonic() + wait_s
    while set(socks) - got and (left := until - time.monotonic()) > 0:
        ready, _, _ = select.select([s for p, s in socks.items() if p not in got], [], [], left)
        if not ready:
            break
        for port, s in socks.items():
            if s in ready:
                with contextlib.suppress(OSError):
                    data, source = s.recvfrom(RECEIVE_BYTES)
                    if source[0] == media and isinstance(session.parse(data), RtpAck):
                        got.add(port)
    return got
