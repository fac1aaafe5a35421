"""The phone-call checks: `voice.quality` (voice-shaped probes to the office responder through
the tunnel, and the MOS the ITU-T G.107 E-model estimates from them), `lan.gateway` (the same
probes to the home router: is the home network already the problem?) and `rtp.ports` (the
profile's RTP range open both ways between this computer and the office's media address).

`voice.quality` and `lan.gateway` share one measurement of each path, started together, so they
judge the same moment (`netsetup.diagnose.voice.measure`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from netsetup.diagnose.checks.dns import ask_it
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.diagnose.voice import measure
from netsetup.diagnose.voice.emodel import Estimate
from netsetup.diagnose.voice.measure import HopRun, Unmeasured, VoiceRun
from netsetup.diagnose.voice.metrics import VoiceMetrics


def _unmeasured(ctx: CheckContext, exc: Unmeasured, what: str) -> Outcome:
    """The outcome of a measurement that could not be made."""
    reason = str(exc)
    if exc.status == "skip":
        return Outcome.skip(f"not checked: {reason}")
    if exc.status == "silent":
        assert ctx.info.responder is not None
        host, port = ctx.info.responder
        return Outcome.problem(
            Status.unknown,
            f"the office responder ({host}:{port}) does not answer through the tunnel: "
            f"{what} could not be measured ({reason})",
            f"{ask_it(ctx)} whether the office responder runs on {host}:{port} and the gateway "
            "firewall lets this tunnel reach it (and whether this config is the newest one)",
            Owner.it,
        )
    if exc.status == "no-ping":
        return Outcome.skip(
            f"not checked: {reason} (nothing to fix for calls; to check the home network too, "
            "run diagnose as an administrator)"
        )
    return Outcome.problem(
        Status.unknown,
        f"{what} could not be measured: {reason}",
        "run diagnose again; if it says the same, send this report to IT",
        Owner.assistant,
    )


def _hop_metrics(pending: measure.Pending[HopRun], wait: float) -> HopRun | None:
    try:
        return pending.result(wait)
    except Exception:  # no first-hop figures: the call is judged without them
        return None


def estimate(ctx: CheckContext, m: VoiceMetrics) -> Estimate:
    """The E-model's estimate for the profile's codec (UnknownCodec when G.113 has none)."""
    from netsetup.diagnose.voice import emodel

    return emodel.estimate(
        emodel.codec(ctx.info.codec),
        ctx.info.plc,
        m.rtt_ms or 0.0,
        m.worse_jitter_ms,
        m.worse_loss_pct,
        m.burst_ratio or 1.0,
    )


def call_status(ctx: CheckContext, m: VoiceMetrics | None) -> Status | None:
    """voice.quality's status for these figures (None: no call figures or no estimate)."""
    from netsetup.diagnose.voice import emodel
    from netsetup.diagnose.voice.verdict import verdict_status

    if m is None:
        return None
    try:
        return verdict_status(estimate(ctx, m), m)
    except emodel.UnknownCodec:
        return None


class VoiceQualityCheck(Check):
    """Voice-shaped probes (50 a second, 20 ms apart, ~200 bytes) to the office responder: RTT,
    RFC 3550 jitter and loss in each direction, bursts, reordering, and the MOS estimate."""

    id = "voice.quality"
    title = "Call quality through the tunnel (MOS estimate)"
    needs = ("tunnel.handshake",)
    phase = 1

    budget_s = measure.BUDGET_S
    long_budget_s = measure.BUDGET_LONG_S

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.voice import emodel
        from netsetup.diagnose.voice.verdict import judge_voice, voice_metrics

        missing = measure.responder_missing(ctx)
        if missing == measure.NO_RESPONDER_KEY:
            return Outcome.problem(
                Status.warn,
                f"calls were not measured: {missing}",
                measure.no_key_fix(ctx.info.profile_id),
                Owner.it,
            )
        if missing is not None:
            return Outcome.skip(f"not checked: {missing}")
        voice, hop = measure.start_both(ctx)
        try:
            run: VoiceRun = voice.result(ctx.time_left())
        except Unmeasured as exc:
            return _unmeasured(ctx, exc, "call quality")
        first = _hop_metrics(hop, ctx.time_left(1.0))
        m = run.metrics
        try:
            est = estimate(ctx, m)
        except emodel.UnknownCodec as exc:
            return Outcome.problem(
                Status.unknown,
                f"measured, but no MOS estimate: {exc}",
                f"{ask_it(ctx)} to set [voip] codec to g711 or g729 if the phones use one",
                Owner.it,
                **voice_metrics(m, None),
            )
        router = first.router if first is not None else None
        return judge_voice(m, est, first.metrics if first else None, router)


class LanGatewayCheck(Check):
    """The same voice-shaped probes (ICMP echo) to the home router, alongside voice.quality:
    loss or jitter already on the first hop is the assistant's to fix."""

    id = "lan.gateway"
    title = "Home network to the router (for calls)"
    phase = 1

    budget_s = measure.BUDGET_S
    long_budget_s = measure.BUDGET_LONG_S

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.voice.verdict import judge_hop

        if measure.responder_missing(ctx) is None:
            voice, hop = measure.start_both(ctx)
        else:
            voice, hop = None, measure.hop_run(ctx)
        try:
            first = hop.result(ctx.time_left())
        except Unmeasured as exc:
            return _unmeasured(ctx, exc, "the home network")
        call = None
        if voice is not None:
            try:
                call = voice.result(ctx.time_left(2.0)).metrics
            except Exception:  # judged on its own figures, without the call's to compare
                call = None
        return judge_hop(first.metrics, first.router, call, call_status(ctx, call))


SAMPLE_PORTS = 8  # the first, the last and six at random
RTP_WAIT_S = 0.6


def sample_ports(low: int, high: int, rng: random.Random | None = None) -> list[int]:
    """The first and last port of the range and six others at random (all when fewer)."""
    every = range(low, high + 1)
    if len(every) <= SAMPLE_PORTS:
        return list(every)
    inner = (rng or random.Random()).sample(range(low + 1, high), SAMPLE_PORTS - 2)
    return [low, *sorted(inner), high]


class RtpPortsCheck(Check):
    """The profile's RTP range through the tunnel, both ways: the responder opens sampled ports
    on the office's media address and answers from them (RTP-OPEN), and sends from the media
    address to sampled ports here (RTP-CALL: an incoming call's audio)."""

    id = "rtp.ports"
    title = "Call audio ports (RTP) through the tunnel"
    needs = ("tunnel.handshake",)
    phase = 1
    budget_s = 6.0

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.voice.rtp import check_rtp

        missing = measure.responder_missing(ctx)
        if missing is not None:
            return Outcome.skip(f"not checked: {missing}")
        if ctx.info.sip is None:
            return Outcome.skip("not checked: this config names no RTP range (no [voip])")
        try:
            return check_rtp(ctx, sample_ports(*ctx.info.sip.rtp_ports))
        except Unmeasured as exc:
            return _unmeasured(ctx, exc, "the RTP ports")


@register_family("voice")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    if ctx.info.responder is None and ctx.info.sip is None:
        return []  # a company without phones through the tunnel
    return [VoiceQualityCheck(), LanGatewayCheck(), RtpPortsCheck()]
