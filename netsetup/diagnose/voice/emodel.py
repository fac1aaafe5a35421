"""The MOS estimate of a call: the ITU-T G.107 E-model with its default values, from the delay,
jitter and loss measured by the voice probes.

    R = 93.2 - Id - Ie,eff                                   (G.107 §7: Ro - Is = 93.2, A = 0)
    Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)     (G.107 eq. 7-29, Ppl in %)
    Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)             (Cole & Rosenbluth 2001)
    MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6            (G.107 Annex B, for 0 <= R <= 100)

d is the one-way mouth-to-ear delay: half the round trip, plus the packetisation (20 ms frames),
plus the receiver's jitter buffer (twice the worse direction's jitter, at least 20 ms), plus the
codec's look-ahead. Ppl is the worse direction's loss: each party hears one direction. Ie and Bpl
come from ITU-T G.113 Appendix I; codecs that table does not list (Opus, G.722) get no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

R_DEFAULT = 93.2
PACKETISATION_MS = 20.0
MIN_JITTER_BUFFER_MS = 20.0
ID_KNEE_MS = 177.3
SOURCES = (
    "ITU-T G.107 (E-model, Annex B), ITU-T G.113 Appendix I (Ie, Bpl), "
    "Cole & Rosenbluth 2001 (delay impairment), ITU-T G.114 (one-way delay), "
    "ITU-T G.109 (R 80 / 70, MOS 4.0 / 3.6: satisfied / some users dissatisfied), "
    "Cisco voice design figures (at most 1 % loss, 30 ms jitter)"
)


class UnknownCodec(ValueError):
    """A codec G.113 Appendix I gives no values for: no estimate rather than an invented one."""


@dataclass(frozen=True)
class Codec:
    name: str
    shown: str  # how the report names it
    ie: float  # equipment impairment without loss
    bpl_plc: float  # packet-loss robustness with concealment
    bpl_no_plc: float  # ... without it
    lookahead_ms: float


CODECS = {
    "g711": Codec("g711", "G.711", 0.0, 25.1, 4.3, 0.0),
    # G.729A (+VAD): concealment is part of the codec, so the one Bpl applies either way;
    # 10 ms frames with a 5 ms look-ahead
    "g729": Codec("g729", "G.729", 11.0, 19.0, 19.0, 5.0),
}


def codec(name: str) -> Codec:
    try:
        return CODECS[name.lower()]
    except KeyError:
        supported = ", ".join(CODECS)
        raise UnknownCodec(
            f"no published E-model values (ITU-T G.113 Appendix I) for codec {name!r}; "
            f"supported: {supported}"
        ) from None


def r_to_mos(r: float) -> float:
    """G.107 Annex B."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def delay_impairment(one_way_ms: float) -> float:
    """Id from the one-way mouth-to-ear delay (Cole & Rosenbluth's fit of G.107)."""
    extra = one_way_ms - ID_KNEE_MS
    return 0.024 * one_way_ms + (0.11 * extra if extra > 0 else 0.0)


def effective_ie(c: Codec, plc: bool, loss_pct: float, burst_ratio: float = 1.0) -> float:
    """Ie,eff (G.107 eq. 7-29); BurstR is clamped to [1, 2], the range G.107 Table 2 covers."""
    bpl = c.bpl_plc if plc else c.bpl_no_plc
    burst = min(2.0, max(1.0, burst_ratio))
    ppl = max(0.0, loss_pct)
    if ppl == 0.0:
        return c.ie
    return c.ie + (95.0 - c.ie) * ppl / (ppl / burst + bpl)


def jitter_buffer_ms(jitter_ms: float) -> float:
    return max(MIN_JITTER_BUFFER_MS, 2.0 * jitter_ms)


def one_way_delay_ms(rtt_ms: float, jitter_ms: float, c: Codec) -> float:
    """Mouth-to-ear: half the round trip + packetisation + jitter buffer + look-ahead."""
    return rtt_ms / 2.0 + PACKETISATION_MS + jitter_buffer_ms(jitter_ms) + c.lookahead_ms


@dataclass(frozen=True)
class Estimate:
    r_factor: float
    mos: float
    one_way_ms: float
    id: float
    ie_eff: float
    codec: Codec
    plc: bool
    buffer_ms: float = MIN_JITTER_BUFFER_MS  # the jitter buffer within one_way_ms

    def label(self) -> str:
        """The estimate's label for the report, with its inputs."""
        bpl = self.codec.bpl_plc if self.plc else self.codec.bpl_no_plc
        concealment = "with" if self.plc else "without"
        return (
            f"estimate (ITU-T G.107 E-model, {self.codec.shown} {concealment} packet-loss "
            f"concealment, Ie {self.codec.ie:g} Bpl {bpl:g}, d = RTT/2 + 20 ms + jitter buffer)"
        )


def estimate(
    c: Codec,
    plc: bool,
    rtt_ms: float,
    jitter_ms: float,
    loss_pct: float,
    burst_ratio: float = 1.0,
) -> Estimate:
    """The E-model's R and MOS for one direction's (the worse one's) jitter and loss."""
    d = one_way_delay_ms(rtt_ms, jitter_ms, c)
    id_ = delay_impairment(d)
    ie_eff = effective_ie(c, plc, loss_pct, burst_ratio)
    r = R_DEFAULT - id_ - ie_eff
    return Estimate(r, r_to_mos(r), d, id_, ie_eff, c, plc, jitter_buffer_ms(jitter_ms))
