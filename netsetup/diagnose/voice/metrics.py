"""What a run of voice-shaped probes says about a call: round-trip time, interarrival jitter in
each direction (RFC 3550 §6.4.1), loss in each direction, loss in 200 ms bursts, the burst ratio
and reordering.

Each probe carries four timestamps: t1 (sent, the client's clock), t2 (received by the responder)
and t3 (answered, the responder's clock), t4 (the answer received, the client's clock). The clocks
are never compared with each other: the RTT is (t4 - t1) - (t3 - t2), the forward jitter uses t1
and t2 differences only, the backward jitter t3 and t4 differences only, so an offset between the
two clocks cancels out.

Loss per direction comes from counts, not from timestamps: the responder's SUMMARY says how many
probes it received (forward loss = sent - received there) and how many answers it sent (backward
loss = answers sent - answers received here). Without a SUMMARY only the round trip is known.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PACKET_INTERVAL_MS = 20.0
BURST_WINDOW = 10  # probes: 200 ms at 20 ms apart
BURST_LOST = 3  # lost in one window (a 60 ms gap): more than concealment hides


@dataclass(frozen=True)
class ProbeRecord:
    """One probe: its sequence number and timestamps in nanoseconds (None when never answered)."""

    seq: int
    t1_ns: int
    t2_ns: int | None = None
    t3_ns: int | None = None
    t4_ns: int | None = None
    arrival: int | None = None  # the order in which answers reached the client (0, 1, ...)

    @property
    def answered(self) -> bool:
        return self.t2_ns is not None and self.t3_ns is not None and self.t4_ns is not None

    @property
    def rtt_ns(self) -> int | None:
        if self.t2_ns is None or self.t3_ns is None or self.t4_ns is None:
            return None
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)


@dataclass(frozen=True)
class ResponderCounts:
    """The responder's SUMMARY for the session: probes it received and answers it sent."""

    rx_count: int
    tx_count: int


def rfc3550_jitter(pairs: Iterable[tuple[int, int]]) -> float:
    """The interarrival jitter J (same unit as the input) over (send, receive) timestamp pairs
    given in order of arrival: D(i-1, i) = (R_i - R_{i-1}) - (S_i - S_{i-1}), J += (|D| - J)/16."""
    jitter = 0.0
    previous: tuple[int, int] | None = None
    for sent, received in pairs:
        if previous is not None:
            d = (received - previous[1]) - (sent - previous[0])
            jitter += (abs(d) - jitter) / 16.0
        previous = (sent, received)
    return jitter


def forward_pairs(records: Sequence[ProbeRecord]) -> list[tuple[int, int]]:
    """(t1, t2) of the answered probes in the order the responder received them."""
    got = [r for r in records if r.answered]
    got.sort(key=lambda r: r.t2_ns or 0)
    return [(r.t1_ns, r.t2_ns or 0) for r in got]


def backward_pairs(records: Sequence[ProbeRecord]) -> list[tuple[int, int]]:
    """(t3, t4) of the answered probes in the order their answers reached the client."""
    got = [r for r in records if r.answered]
    got.sort(key=lambda r: (r.t4_ns or 0, r.arrival or 0))
    return [(r.t3_ns or 0, r.t4_ns or 0) for r in got]


def round_trip_pairs(records: Sequence[ProbeRecord]) -> list[tuple[int, int]]:
    """(t1, t4) of the answered probes in order of arrival: the jitter of the round trip, for an
    answerer without timestamps of its own (an ICMP echo)."""
    got = [r for r in records if r.t4_ns is not None]
    got.sort(key=lambda r: (r.t4_ns or 0, r.arrival or 0))
    return [(r.t1_ns, r.t4_ns or 0) for r in got]


def lost_flags(records: Sequence[ProbeRecord]) -> list[bool]:
    """For each probe in order of sending: True when no answer came (lost either way)."""
    return [r.t4_ns is None for r in sorted(records, key=lambda r: r.seq)]


def loss_runs(lost: Sequence[bool]) -> list[int]:
    """The lengths of the runs of consecutive losses."""
    runs: list[int] = []
    current = 0
    for flag in lost:
        if flag:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def burst_ratio(lost: Sequence[bool]) -> float | None:
    """BurstR (McGowan): the mean observed loss-run length divided by the mean run length random
    loss of the same rate would give, 1 / (1 - L): mean run x (1 - L). 1 for random loss, above 1
    when losses bunch together. None when nothing (or everything) was lost."""
    runs = loss_runs(lost)
    if not runs or not lost:
        return None
    rate = sum(runs) / len(lost)
    if rate >= 1.0:
        return None
    return statistics.fmean(runs) * (1.0 - rate)


def burst_windows(lost: Sequence[bool]) -> tuple[int, int]:
    """(windows with a burst, complete windows): the probes cut into windows of BURST_WINDOW (200
    ms); a window with BURST_LOST or more lost is a burst the listener hears as a gap."""
    complete = len(lost) // BURST_WINDOW
    bursts = 0
    for index in range(complete):
        window = lost[index * BURST_WINDOW : (index + 1) * BURST_WINDOW]
        if sum(window) >= BURST_LOST:
            bursts += 1
    return bursts, complete


def reordered(sequence: Iterable[int]) -> int:
    """Packets that arrived after one with a higher sequence number (RFC 4737, simple form)."""
    highest: int | None = None
    count = 0
    for seq in sequence:
        if highest is not None and seq < highest:
            count += 1
        else:
            highest = seq
    return count


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


@dataclass(frozen=True)
class VoiceMetrics:
    """Everything the E-model and the report need from one probe session (times in ms)."""

    sent: int
    answered: int
    rtt_ms: float | None  # the median round trip
    rtt_mean_ms: float | None
    rtt_min_ms: float | None
    rtt_max_ms: float | None
    jitter_up_ms: float | None
    jitter_down_ms: float | None
    loss_pct: float  # the round trip: no answer
    loss_up_pct: float | None  # None: the responder's counts are not known
    loss_down_pct: float | None
    burst_windows: int
    windows: int
    longest_loss_run: int
    burst_ratio: float | None
    reordered: int

    @property
    def worse_loss_pct(self) -> float:
        """The worse direction (each party hears one direction); the round trip when the
        directions are not known."""
        known = [x for x in (self.loss_up_pct, self.loss_down_pct) if x is not None]
        return max(known) if known else self.loss_pct

    @property
    def worse_jitter_ms(self) -> float:
        known = [x for x in (self.jitter_up_ms, self.jitter_down_ms) if x is not None]
        return max(known) if known else 0.0


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def _direction_loss(
    sent: int, answered: int, counts: ResponderCounts | None
) -> tuple[float | None, float | None]:
    if counts is None:
        return None, None
    forward = max(0, sent - counts.rx_count)
    backward = max(0, counts.tx_count - answered)
    return _percent(forward, sent), _percent(backward, counts.tx_count)


def summarize(records: Sequence[ProbeRecord], counts: ResponderCounts | None) -> VoiceMetrics:
    """The metrics of a session: `records` one per probe sent, `counts` the responder's."""
    rtts = [r.rtt_ns for r in records if r.rtt_ns is not None]
    answered = [r for r in records if r.answered]
    lost = lost_flags(records)
    up, down = _direction_loss(len(records), len(answered), counts)
    bursts, windows = burst_windows(lost)
    runs = loss_runs(lost)
    arrival = sorted(answered, key=lambda r: (r.t4_ns or 0, r.arrival or 0))
    return VoiceMetrics(
        sent=len(records),
        answered=len(answered),
        rtt_ms=_ms(statistics.median(rtts)) if rtts else None,
        rtt_mean_ms=_ms(statistics.fmean(rtts)) if rtts else None,
        rtt_min_ms=_ms(min(rtts)) if rtts else None,
        rtt_max_ms=_ms(max(rtts)) if rtts else None,
        jitter_up_ms=_ms(rfc3550_jitter(forward_pairs(records))) if len(answered) > 1 else None,
        jitter_down_ms=_ms(rfc3550_jitter(backward_pairs(records))) if len(answered) > 1 else None,
        loss_pct=_percent(sum(lost), len(records)),
        loss_up_pct=up,
        loss_down_pct=down,
        burst_windows=bursts,
        windows=windows,
        longest_loss_run=max(runs, default=0),
        burst_ratio=burst_ratio(lost),
        reordered=reordered(r.seq for r in arrival),
    )


@dataclass(frozen=True)
class HopMetrics:
    """The first hop (the home router) measured with echoes: round trip only."""

    sent: int
    answered: int
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float
    longest_loss_run: int


def summarize_round_trip(records: Sequence[ProbeRecord]) -> HopMetrics:
    """Metrics of echoes that carry no timestamps of the answerer: RTT = t4 - t1."""
    rtts = [r.t4_ns - r.t1_ns for r in records if r.t4_ns is not None]
    lost = lost_flags(records)
    pairs = round_trip_pairs(records)
    return HopMetrics(
        sent=len(records),
        answered=len(rtts),
        rtt_ms=_ms(statistics.median(rtts)) if rtts else None,
        jitter_ms=_ms(rfc3550_jitter(pairs)) if len(pairs) > 1 else None,
        loss_pct=_percent(sum(lost), len(records)),
        longest_loss_run=max(loss_runs(lost), default=0),
    )
