"""Bufferbloat: how much the round trip grows while the link is full (flent's RRUL question).

The RTT is sampled with the gateway witness's probes through the tunnel (10 a second, well under
the witness's per-source limit) while idle, then while a speed test (speedtest-cli in a child
process, >= 4 streams) fills the uplink only, then the downlink only. Added latency per direction
= median(loaded) - median(idle); graded like DSLReports' test (A+ < 5 ms, A < 30, B < 60,
C < 200, D < 400, F >= 400), the worse direction counts. One stream through a userspace tunnel
does not fill a queue (measured in the lab: +25 ms with one stream, +160 ms with four, on a
250 ms queue), so the load always has several.
"""

from __future__ import annotations

import select
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netsetup.diagnose.speed import SpeedChild, SpeedResult
from netsetup.responder.client import PROBE_MIN_SIZE, probe_payload, probe_reply_size

SAMPLE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0  # a probe unanswered this long is lost (a 500 ms queue answers well before)
IDLE_S = 2.0
RAMP_S = 2.0  # a load's first seconds (slow start overshooting, the queue filling) do not count
LOAD_LENGTH_S = 7.0
LONG_LOAD_LENGTH_S = 12.0  # --long: a queue under several TCP flows swings over seconds
LONG_IDLE_S = 3.0
SETTLE_S = 0.8
DIRECTIONS = ("upload", "download")

# (grade, added latency below which it is given, ms): DSLReports' bufferbloat grades
GRADES = (("A+", 5.0), ("A", 30.0), ("B", 60.0), ("C", 200.0), ("D", 400.0))
WORST = "F"
GOOD_GRADES = ("A+", "A", "B")


def grade(added_ms: float) -> str:
    for name, below in GRADES:
        if added_ms < below:
            return name
    return WORST


@dataclass
class Sample:
    sent: float  # time.monotonic()
    rtt_ms: float | None = None


@dataclass
class RttSampler:
    """Witness probes every SAMPLE_INTERVAL_S in a thread, each one's RTT kept."""

    host: str
    port: int
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RttSampler:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="bufferbloat rtt", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PROBE_TIMEOUT_S + 1)
        self._sock.close()

    def _run(self) -> None:
        pending: dict[bytes, Sample] = {}
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                self._send(pending, now)
                next_send += SAMPLE_INTERVAL_S
            ready, _, _ = select.select([self._sock], [], [], max(0.0, next_send - now))
            if ready:
                self._receive(pending)

    def _send(self, pending: dict[bytes, Sample], now: float) -> None:
        packet, token = probe_payload(PROBE_MIN_SIZE + 8)
        sample = Sample(now)
        try:
            self._sock.sendto(packet, (self.host, self.port))
        except OSError:
            return
        with self._lock:
            self.samples.append(sample)
        pending[token] = sample
        for old in [t for t, s in pending.items() if now - s.sent > PROBE_TIMEOUT_S]:
            del pending[old]

    def _receive(self, pending: dict[bytes, Sample]) -> None:
        try:
            reply = self._sock.recv(2048)
        except OSError:
            return
        arrived = time.monotonic()
        for token, sample in list(pending.items()):
            if probe_reply_size(reply, token) is not None:
                sample.rtt_ms = (arrived - sample.sent) * 1000.0
                del pending[token]
                return

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        """(RTTs of the probes sent in [start, end), how many of them were lost)."""
        with self._lock:
            chosen = [s for s in self.samples if start <= s.sent < end]
        rtts = [s.rtt_ms for s in chosen if s.rtt_ms is not None]
        return rtts, len(chosen) - len(rtts)


@dataclass(frozen=True)
class LoadedRtt:
    direction: str
    rtts_ms: list[float]
    lost: int
    speed: SpeedResult


@dataclass(frozen=True)
class Measurement:
    idle_ms: list[float]
    idle_lost: int
    loaded: tuple[LoadedRtt, ...]

    @property
    def idle_median(self) -> float | None:
        return statistics.median(self.idle_ms) if self.idle_ms else None

    def added(self, direction: str) -> float | None:
        """median(loaded) - median(idle) for `direction`, never below 0; None: not measured."""
        idle = self.idle_median
        for load in self.loaded:
            if load.direction == direction and load.rtts_ms and idle is not None:
                return max(0.0, statistics.median(load.rtts_ms) - idle)
        return None


Loader = Callable[[str], SpeedChild]  # direction -> a running speed test loading it


def measure(
    host: str, port: int, load: Loader, deadline: float, idle_s: float = IDLE_S
) -> Measurement:
    """Idle RTT for `idle_s`, then each direction loaded in turn, until `deadline` at most."""
    sampler = RttSampler(host, port).start()
    try:
        began = time.monotonic()
        time.sleep(max(0.0, min(idle_s, deadline - began)))
        idle, idle_lost = sampler.window(began, time.monotonic())
        loaded = []
        for direction in DIRECTIONS:
            if time.monotonic() >= deadline:
                break
            loaded.append(_loaded(sampler, load, direction, deadline))
        # the last probes of a loaded window come back through the queue: let them arrive
        time.sleep(max(0.0, min(SETTLE_S, deadline - time.monotonic())))
    finally:
        sampler.stop()
    # probes sent in a window may still be answered after it: read them once the sampler stopped
    return Measurement(idle, idle_lost, tuple(_refreshed(sampler, x) for x in loaded))


@dataclass(frozen=True)
class _Window:
    direction: str
    start: float
    end: float
    speed: SpeedResult


def _loaded(sampler: RttSampler, load: Loader, direction: str, deadline: float) -> _Window:
    child = load(direction)
    try:
        began = child.started(direction, deadline)
        speed = child.result(deadline)
    finally:
        child.kill()
    ended = time.monotonic()
    if began is None:
        return _Window(direction, ended, ended, speed)
    return _Window(direction, began + RAMP_S, ended, speed)


def _refreshed(sampler: RttSampler, window: _Window) -> LoadedRtt:
    rtts, lost = sampler.window(window.start, window.end)
    return LoadedRtt(window.direction, rtts, lost, window.speed)
