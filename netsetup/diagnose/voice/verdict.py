"""How the VoIP checks judge their measurements: the words, the thresholds, who must act.

Thresholds: MOS 4.0 and 3.6 (G.107's R 80 and 70: "satisfied" and "some users dissatisfied"),
one-way delay 150 and 400 ms (ITU-T G.114), the first hop to blame when it already loses at
least half of what the call loses (at least 1 %) or its jitter passes 10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.diagnose.voice.emodel import SOURCES, Estimate
from netsetup.diagnose.voice.metrics import HopMetrics, VoiceMetrics

MOS_CLEAR = 4.0
MOS_CHOPPY = 3.6
ONE_WAY_GOOD_MS = 150.0
ONE_WAY_MAX_MS = 400.0
LOSS_NOTICED_PCT = 1.0  # Cisco's design figure for voice: at most 1 % loss
JITTER_NOTICED_MS = 30.0  # ... and at most 30 ms jitter
FIRST_HOP_LOSS_PCT = 1.0
FIRST_HOP_JITTER_MS = 10.0

FIRST_HOP_FIX = (
    "connect this computer to the router with a network cable, or use the router's 5 GHz "
    "Wi-Fi, or move closer to the router; then run diagnose again"
)


def first_hop_blamed(hop: HopMetrics | None, voice: VoiceMetrics | None) -> bool:
    """The home network (this computer to the router) already causes the trouble."""
    if hop is None or hop.answered == 0:
        return False
    if hop.jitter_ms is not None and hop.jitter_ms > FIRST_HOP_JITTER_MS:
        return True
    if hop.loss_pct < FIRST_HOP_LOSS_PCT:
        return False
    return voice is None or hop.loss_pct >= voice.worse_loss_pct / 2


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def voice_metrics(m: VoiceMetrics, est: Estimate | None) -> dict[str, Metric]:
    """The numbers the report's "Phone calls" section shows."""
    out: dict[str, Metric] = {
        "rtt_ms": _r(m.rtt_ms, 2),
        "rtt_min_ms": _r(m.rtt_min_ms, 2),
        "rtt_mean_ms": _r(m.rtt_mean_ms, 2),
        "jitter_up_ms": _r(m.jitter_up_ms, 2),
        "jitter_down_ms": _r(m.jitter_down_ms, 2),
        "loss_up_pct": _r(m.loss_up_pct, 2),
        "loss_down_pct": _r(m.loss_down_pct, 2),
        "loss_pct": _r(m.loss_pct, 2),
        "burst_windows": m.burst_windows,
        "windows": m.windows,
        "longest_loss_run": m.longest_loss_run,
        "burst_ratio": _r(m.burst_ratio, 2),
        "reordered": m.reordered,
        "probes": m.sent,
        "answered": m.answered,
    }
    if est is not None:
        out.update(
            mos=round(est.mos, 2),
            r_factor=round(est.r_factor, 1),
            one_way_ms=round(est.one_way_ms, 1),
            codec=est.codec.name,
            plc=est.plc,
            estimate=est.label(),
            sources=SOURCES,
        )
    return out


def _figures(m: VoiceMetrics) -> str:
    def pct(x: float | None) -> str:
        return "?" if x is None else f"{x:.1f} %"

    def ms(x: float | None) -> str:
        return "?" if x is None else f"{x:.1f} ms"

    return (
        f"RTT {ms(m.rtt_ms)}, jitter {ms(m.jitter_up_ms)} up / {ms(m.jitter_down_ms)} down, "
        f"loss {pct(m.loss_up_pct)} up / {pct(m.loss_down_pct)} down"
    )


def verdict_status(est: Estimate) -> Status:
    if est.mos < MOS_CHOPPY or est.one_way_ms > ONE_WAY_MAX_MS:
        return Status.fail
    if est.mos < MOS_CLEAR or est.one_way_ms > ONE_WAY_GOOD_MS:
        return Status.warn
    return Status.passed


VERDICT = {
    Status.passed: "calls should sound clear",
    Status.warn: "calls may break up now and then",
    Status.fail: "expect choppy audio",
}


@dataclass(frozen=True)
class Cause:
    fix: str
    owner: Owner
    words: str  # the cause, for the summary


def _worse_direction(m: VoiceMetrics) -> str:
    if m.loss_up_pct is None or m.loss_down_pct is None:
        return "on the way to the office and back"
    if m.loss_up_pct >= m.loss_down_pct:
        return "on the way to the office (upload)"
    return "on the way from the office (download)"


def cause(m: VoiceMetrics, est: Estimate, hop: HopMetrics | None, router: str | None) -> Cause:
    """Who must act on a poor estimate, and how."""
    if first_hop_blamed(hop, m):
        assert hop is not None
        return Cause(
            FIRST_HOP_FIX,
            Owner.assistant,
            f"the first hop (home Wi-Fi or cable to the router {router}) already loses "
            f"{hop.loss_pct:.1f} % with {hop.jitter_ms or 0:.1f} ms jitter",
        )
    if m.worse_loss_pct >= LOSS_NOTICED_PCT:
        where = _worse_direction(m)
        return Cause(
            f"call your internet provider: {m.worse_loss_pct:.1f} % of the packets {where} are "
            "lost beyond your home network, enough to break up calls; if they find nothing, "
            "ask IT to check the office's internet connection",
            Owner.isp,
            f"{m.worse_loss_pct:.1f} % of the packets are lost {where}, beyond the home network",
        )
    if est.one_way_ms > ONE_WAY_GOOD_MS:
        return Cause(
            f"ask your internet provider why the delay is so long ({est.one_way_ms:.0f} ms one "
            f"way; ITU-T G.114 advises under {ONE_WAY_GOOD_MS:.0f} ms); a satellite or mobile "
            "connection is often the reason",
            Owner.isp,
            f"the delay is long ({est.one_way_ms:.0f} ms one way)",
        )
    return Cause(
        "the delay varies a lot (jitter): pause big uploads and downloads in the house during "
        "calls (see the bufferbloat check); if it stays, call your internet provider",
        Owner.isp,
        f"the delay varies by {max(m.jitter_up_ms or 0, m.jitter_down_ms or 0):.0f} ms (jitter)",
    )


def judge_voice(
    m: VoiceMetrics, est: Estimate, hop: HopMetrics | None, router: str | None
) -> Outcome:
    status = verdict_status(est)
    metrics = voice_metrics(m, est)
    metrics["first_hop_blamed"] = first_hop_blamed(hop, m)
    head = f"{VERDICT[status]}: MOS {est.mos:.1f}, {est.label()}; {_figures(m)}"
    if status is Status.passed:
        return Outcome(Status.passed, head, metrics)
    why = cause(m, est, hop, router)
    return Outcome(status, f"{head}. Cause: {why.words}", metrics, why.fix, why.owner)


def judge_hop(hop: HopMetrics, router: str, voice: VoiceMetrics | None) -> Outcome:
    metrics: dict[str, Metric] = {
        "router": router,
        "rtt_ms": _r(hop.rtt_ms, 2),
        "jitter_ms": _r(hop.jitter_ms, 2),
        "loss_pct": _r(hop.loss_pct, 2),
        "longest_loss_run": hop.longest_loss_run,
        "probes": hop.sent,
        "answered": hop.answered,
        "voice_loss_pct": _r(voice.worse_loss_pct, 2) if voice is not None else None,
    }
    if hop.answered == 0:
        return Outcome(
            Status.unknown,
            f"the home router ({router}) does not answer ping (some routers never do): the "
            "home network could not be measured",
            metrics,
            "nothing to do unless calls break up; then try a network cable to the router",
            Owner.assistant,
        )
    figures = (
        f"loss {hop.loss_pct:.1f} %, jitter {hop.jitter_ms or 0:.1f} ms, "
        f"RTT {hop.rtt_ms or 0:.1f} ms"
    )
    if first_hop_blamed(hop, voice):
        return Outcome(
            Status.fail,
            f"the home network already spoils calls: to the router ({router}) {figures}",
            metrics,
            FIRST_HOP_FIX,
            Owner.assistant,
        )
    return Outcome(
        Status.passed, f"the home network to the router ({router}) is clean: {figures}", metrics
    )
