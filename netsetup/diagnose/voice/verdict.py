"""How the VoIP checks judge their measurements: the words, the thresholds, who must act.

Thresholds: MOS 4.0 and 3.6 (G.107's R 80 and 70, ITU-T G.109's "satisfied" and "some users
dissatisfied"), one-way delay 150 and 400 ms (ITU-T G.114), loss 1 % and jitter 30 ms (Cisco's
published voice design figures: more is heard). The first hop (this computer to the home router)
is blamed only when the call itself is degraded and that hop explains it: it already loses at least
half of what the call loses (at least 1 %), or its jitter passes 10 ms and is at least half the
call's.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.diagnose.voice.emodel import (
    MIN_JITTER_BUFFER_MS,
    SOURCES,
    Estimate,
    delay_impairment,
)
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
UNSURE_FIX = (
    "first connect this computer to the router with a network cable and run diagnose again; "
    "if the loss stays, call your internet provider; if they find nothing, ask IT to check the "
    "office's internet connection"
)

VERDICT = {
    Status.passed: "calls should sound clear",
    Status.warn: "calls may break up now and then",
    Status.fail: "expect choppy audio",
}


def _loss_explained(hop: HopMetrics, voice: VoiceMetrics | None) -> bool:
    if hop.loss_pct < FIRST_HOP_LOSS_PCT:
        return False
    return voice is None or hop.loss_pct >= voice.worse_loss_pct / 2


def _jitter_explained(hop: HopMetrics, voice: VoiceMetrics | None) -> bool:
    if hop.jitter_ms is None or hop.jitter_ms <= FIRST_HOP_JITTER_MS:
        return False
    return voice is None or hop.jitter_ms >= voice.worse_jitter_ms / 2


def first_hop_blamed(hop: HopMetrics | None, voice: VoiceMetrics | None) -> bool:
    """The home network (this computer to the router) explains a degraded call's trouble (the
    caller decides whether the call is degraded: a clear call blames nobody)."""
    if hop is None or hop.answered == 0:
        return False
    return _loss_explained(hop, voice) or _jitter_explained(hop, voice)


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


def _pct(x: float | None) -> str:
    if x is None:
        return "?"
    return "0 %" if x == 0 else f"{x:.1f} %"


def _figures(m: VoiceMetrics) -> str:
    """The plain figures: what was lost each way and the round trip."""
    rtt = "?" if m.rtt_ms is None else f"{m.rtt_ms:.{1 if m.rtt_ms < 10 else 0}f} ms"
    lost = f"{_pct(m.loss_up_pct)} of your voice lost"
    if m.loss_down_pct != m.loss_up_pct:
        lost += f", {_pct(m.loss_down_pct)} of what you hear"
    return f"{lost}, {rtt} round trip"


def verdict_status(est: Estimate, m: VoiceMetrics | None = None) -> Status:
    if est.mos < MOS_CHOPPY or est.one_way_ms > ONE_WAY_MAX_MS:
        return Status.fail
    if est.mos < MOS_CLEAR or est.one_way_ms > ONE_WAY_GOOD_MS:
        return Status.warn
    if m is not None and m.worse_jitter_ms > JITTER_NOTICED_MS:
        return Status.warn
    return Status.passed


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


def impairments(est: Estimate) -> dict[str, float]:
    """How much of R each impairment takes: loss (Ie,eff beyond the codec's own Ie), jitter (the
    part of Id the jitter buffer beyond its 20 ms minimum adds) and delay (the rest of Id)."""
    buffer_extra = max(0.0, est.buffer_ms - MIN_JITTER_BUFFER_MS)
    jitter = est.id - delay_impairment(est.one_way_ms - buffer_extra)
    return {"loss": est.ie_eff - est.codec.ie, "jitter": jitter, "delay": est.id - jitter}


def dominant(m: VoiceMetrics, est: Estimate) -> str:
    """The impairment to name: the largest; jitter past 30 ms or delay past 150 ms one way are
    named even when they take less of R (they are heard)."""
    parts = impairments(est)
    top = max(parts, key=lambda k: parts[k])
    if parts[top] > 0.5:
        return top
    if m.worse_jitter_ms > JITTER_NOTICED_MS:
        return "jitter"
    if est.one_way_ms > ONE_WAY_GOOD_MS:
        return "delay"
    return "loss" if m.worse_loss_pct > 0 else "jitter"


def _first_hop_cause(hop: HopMetrics, router: str | None) -> Cause:
    return Cause(
        FIRST_HOP_FIX,
        Owner.assistant,
        f"the first hop (home Wi-Fi or cable to the router {router}) already loses "
        f"{hop.loss_pct:.1f} % with {hop.jitter_ms or 0:.1f} ms jitter",
    )


def _no_plc_cause(m: VoiceMetrics) -> Cause:
    return Cause(
        f"ask IT: only {m.worse_loss_pct:.1f} % of the sound is lost, under the 1 % calls "
        "usually hide, but the phones are set up without packet-loss concealment ([voip] plc = "
        "false), so every lost packet is heard; turn concealment on in the phones (or the PBX) "
        "and set plc = true in the profile",
        Owner.it,
        f"{m.worse_loss_pct:.1f} % of the sound is lost and the phones do not conceal it "
        "(no packet-loss concealment)",
    )


def _loss_cause(m: VoiceMetrics, hop: HopMetrics | None) -> Cause:
    where = _worse_direction(m)
    lost = f"{m.worse_loss_pct:.1f} % of the packets {where} are lost"
    if hop is None or hop.answered == 0:  # the home hop was not measured: it may be to blame
        return Cause(
            UNSURE_FIX,
            Owner.assistant,
            f"{lost} somewhere between this computer and the office",
        )
    return Cause(
        f"call your internet provider: {lost} beyond your home network, enough to break up "
        "calls; if they find nothing, ask IT to check the office's internet connection",
        Owner.isp,
        f"{lost}, beyond the home network",
    )


def _delay_cause(est: Estimate) -> Cause:
    return Cause(
        f"ask your internet provider why the delay is so long ({est.one_way_ms:.0f} ms one "
        f"way; ITU-T G.114 advises under {ONE_WAY_GOOD_MS:.0f} ms); a satellite or mobile "
        "connection is often the reason",
        Owner.isp,
        f"the delay is long ({est.one_way_ms:.0f} ms one way)",
    )


def _jitter_cause(m: VoiceMetrics) -> Cause:
    return Cause(
        "the delay varies a lot (jitter): pause big uploads and downloads in the house during "
        "calls (see the bufferbloat check); if it stays, call your internet provider",
        Owner.isp,
        f"the delay varies by {m.worse_jitter_ms:.0f} ms (jitter; calls suffer past "
        f"{JITTER_NOTICED_MS:.0f} ms)",
    )


def cause(m: VoiceMetrics, est: Estimate, hop: HopMetrics | None, router: str | None) -> Cause:
    """Who must act on a poor estimate, and how: the impairment that dominates names it."""
    if hop is not None and first_hop_blamed(hop, m):
        return _first_hop_cause(hop, router)
    worst = dominant(m, est)
    if worst == "loss":
        if m.worse_loss_pct < LOSS_NOTICED_PCT and not est.plc:
            return _no_plc_cause(m)
        return _loss_cause(m, hop)
    if worst == "delay":
        return _delay_cause(est)
    return _jitter_cause(m)


def judge_voice(
    m: VoiceMetrics, est: Estimate, hop: HopMetrics | None, router: str | None
) -> Outcome:
    status = verdict_status(est, m)
    metrics = voice_metrics(m, est)
    metrics["first_hop_blamed"] = status is not Status.passed and first_hop_blamed(hop, m)
    head = f"{VERDICT[status]}: MOS {est.mos:.1f} of 5 (estimate); {_figures(m)}"
    if status is Status.passed:
        return Outcome(Status.passed, head, metrics)
    why = cause(m, est, hop, router)
    return Outcome(status, f"{head}. Cause: {why.words}", metrics, why.fix, why.owner)


def _hop_metrics(hop: HopMetrics, router: str, voice: VoiceMetrics | None) -> dict[str, Metric]:
    return {
        "router": router,
        "rtt_ms": _r(hop.rtt_ms, 2),
        "jitter_ms": _r(hop.jitter_ms, 2),
        "loss_pct": _r(hop.loss_pct, 2),
        "longest_loss_run": hop.longest_loss_run,
        "probes": hop.sent,
        "answered": hop.answered,
        "voice_loss_pct": _r(voice.worse_loss_pct, 2) if voice is not None else None,
    }


def judge_hop(
    hop: HopMetrics, router: str, voice: VoiceMetrics | None, call: Status | None = None
) -> Outcome:
    """The home network to the router, beside the call measured at the same time (`call`: its
    status, None when it was not measured). It fails only when the call is degraded and this
    hop explains it."""
    metrics = _hop_metrics(hop, router, voice)
    if hop.answered == 0:
        return Outcome.skip(
            f"not checked: the home router ({router}) does not answer ping (some routers never "
            "do); that does not affect calls",
            **metrics,
        )
    figures = (
        f"loss {hop.loss_pct:.1f} %, jitter {hop.jitter_ms or 0:.1f} ms, "
        f"RTT {hop.rtt_ms or 0:.1f} ms"
    )
    degraded = call in (Status.warn, Status.fail)
    if first_hop_blamed(hop, voice) and (degraded or call is None):
        return Outcome.problem(
            Status.fail if degraded else Status.warn,
            f"the home network {'already spoils' if degraded else 'may spoil'} calls: to the "
            f"router ({router}) {figures}",
            FIRST_HOP_FIX,
            Owner.assistant,
            **metrics,
        )
    if _jitter_explained(hop, None):
        fine = "calls are fine now, but " if call is Status.passed else ""
        return Outcome.problem(
            Status.warn,
            f"{fine}your Wi-Fi (or cable) to the router ({router}) adds "
            f"{hop.jitter_ms or 0:.0f} ms of jitter: {figures}",
            "nothing needed now; if calls break up, " + FIRST_HOP_FIX,
            Owner.assistant,
            **metrics,
        )
    note = ""
    if hop.loss_pct >= FIRST_HOP_LOSS_PCT:
        note = " (the router left some pings unanswered, as routers often do; the call did not)"
    return Outcome(
        Status.passed,
        f"the home network to the router ({router}) is clean: {figures}{note}",
        metrics,
    )
