"""The reports' "Phone calls" section: will calls sound good, in words, with the MOS estimate.

Computed once from the VoIP checks' metrics (voice.quality's mos, r_factor, rtt_ms, jitter and
loss per direction, codec, plc, one_way_ms; the other VoIP checks' statuses), so the terminal,
Markdown, HTML and JSON say the same. Absent (None) when no VoIP check ran. The MOS is an
estimate and says so, with the formula and its sources named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from netsetup.diagnose.explain import metric_text, who_acts
from netsetup.diagnose.result import CheckResult, DiagnoseReport, Status
from netsetup.diagnose.voice.verdict import MOS_CHOPPY, MOS_CLEAR, VERDICT

VOIP_CHECKS = (
    "voice.quality",
    "lan.gateway",
    "rtp.ports",
    "sip.udp",
    "sip.tcp",
    "sip.tls",
    "sip.alg",
    "nat",
    "bufferbloat",
)
CLEAR_MOS = MOS_CLEAR  # G.107 R 80 and above: "satisfied" (G.109)
FAIR_MOS = MOS_CHOPPY  # R 70: "some users dissatisfied"; below it, many are
VERDICTS = VERDICT  # the same words as voice.quality's summary
NO_MOS = {
    Status.passed: "calls should work (the call quality itself was not measured)",
    Status.warn: "calls may have problems (see the fix)",
    Status.fail: "calls will not work as they should (see the fix)",
    Status.unknown: "could not tell whether calls will work",
}
BROKEN = {  # what a failing VoIP check means for calls, whatever the MOS says
    "sip.udp": "calls may not connect",
    "sip.tcp": "calls may not connect",
    "sip.tls": "calls may not connect",
    "sip.alg": "calls may not connect, or connect without sound",
    "rtp.ports": "calls may connect without sound",
    "nat": "calls may connect without sound",
    "lan.gateway": "calls may break up (the home network)",
    "bufferbloat": "calls may break up while the internet line is busy",
}
SOURCES = (
    "ITU-T G.107 (E-model, R to MOS: Annex B); ITU-T G.113 Appendix I (codec Ie and Bpl); "
    "Cole & Rosenbluth, ACM CCR 31(2) 2001 (delay impairment Id); ITU-T G.114 (one-way delay "
    'under 150 ms); ITU-T G.109 (MOS 4.0 / 3.6 cut-offs: R 80 "satisfied", R 70 "some users '
    "dissatisfied\"); Cisco's voice design figures (at most 1 % loss and 30 ms jitter); "
    "RFC 3550 (jitter)"
)
SHOWN = (  # (metric, label, unit) in the order the section lists them
    ("rtt_ms", "Round trip", "ms"),
    ("one_way_ms", "One-way delay (mouth to ear)", "ms"),
    ("jitter_up_ms", "Jitter, your voice", "ms"),
    ("jitter_down_ms", "Jitter, what you hear", "ms"),
    ("loss_up_pct", "Lost, your voice", "%"),
    ("loss_down_pct", "Lost, what you hear", "%"),
    ("burst_windows", "Bursts of loss (200 ms windows)", ""),
)


@dataclass(frozen=True)
class PhoneCalls:
    status: str  # pass | warn | fail | unknown
    verdict: str  # the sentence: "calls should sound clear", "expect choppy audio"
    mos: float | None
    r_factor: float | None
    estimate: str | None  # what the MOS is: an estimate, from which formula and inputs
    fix: str | None
    who: str | None  # who takes the fix, in the words the other problems use
    facts: tuple[tuple[str, str], ...]  # (label, value) measurements behind the verdict
    checks: tuple[tuple[str, str], ...]  # (check id, status) of each VoIP check that ran
    sources: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["facts"] = [list(f) for f in self.facts]
        data["checks"] = {check: status for check, status in self.checks}
        return data


def phone_calls(report: DiagnoseReport) -> PhoneCalls | None:
    """The section for `report`, or None when no VoIP check ran (all absent or skipped)."""
    ran = [c for c in report.checks if c.id in VOIP_CHECKS and c.status is not Status.skip]
    if not ran:
        return None
    voice = next((c for c in ran if c.id == "voice.quality"), None)
    metrics: Mapping[str, Any] = voice.outcome.metrics if voice is not None else {}
    mos = _number(metrics.get("mos"))
    status = _status(mos, voice, ran)
    acting = _acting(voice, ran)
    return PhoneCalls(
        status=str(status),
        verdict=_verdict(mos, status, ran),
        mos=mos,
        r_factor=_number(metrics.get("r_factor")),
        estimate=estimate_label(metrics) if mos is not None else None,
        fix=acting.outcome.fix if acting is not None else None,
        who=who_acts(acting.outcome.owner, report.contact) if acting is not None else None,
        facts=_facts(metrics, ran),
        checks=tuple((c.id, str(c.status)) for c in ran),
        sources=SOURCES,
    )


def _verdict(mos: float | None, status: Status, ran: list[CheckResult]) -> str:
    """The MOS's words, unless another VoIP check fails: then that check's meaning for calls."""
    broken = [c for c in ran if c.status is Status.fail and c.id in BROKEN]
    if broken:
        words = f"{BROKEN[broken[0].id]} ({broken[0].id} failed)"
        if mos is not None and mos >= CLEAR_MOS:
            words += "; the sound itself measured clear"
        elif mos is not None and mos < FAIR_MOS:
            words = f"{VERDICTS[Status.fail]}; {words}"
        return words
    if mos is None:
        return NO_MOS[status]
    return VERDICTS.get(status, NO_MOS[Status.unknown])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _status(mos: float | None, voice: CheckResult | None, ran: list[CheckResult]) -> Status:
    """voice.quality's status when it gave a MOS (then a failing VoIP check still makes it
    fail), else the worst status of the VoIP checks."""
    worst = max((c.status for c in ran), key=lambda s: s.rank)
    if mos is None or voice is None:
        return worst
    if worst is Status.fail:
        return Status.fail
    by_mos = Status.passed if mos >= CLEAR_MOS else Status.warn if mos >= FAIR_MOS else Status.fail
    if voice.status in (Status.warn, Status.fail):  # jitter or delay may warn beside a good MOS
        return max(voice.status, by_mos, key=lambda s: s.rank)
    return by_mos


def _acting(voice: CheckResult | None, ran: list[CheckResult]) -> CheckResult | None:
    """Whose fix the section shows: a failing VoIP check's first (it decides the verdict), else
    voice.quality's (it names the cause it found), else the first VoIP problem's."""
    problems = [c for c in ran if c.status in (Status.fail, Status.warn, Status.unknown)]
    problems.sort(key=lambda c: -c.status.rank)
    failing = [c for c in problems if c.status is Status.fail and c.outcome.fix]
    if failing and failing[0] is not voice and (voice is None or voice.status is not Status.fail):
        return failing[0]
    if voice is not None and voice.outcome.fix:
        return voice
    return next((c for c in problems if c.outcome.fix), None)


def estimate_label(metrics: Mapping[str, Any]) -> str:
    from netsetup.diagnose.voice.emodel import CODECS

    codec = str(metrics.get("codec") or "g711")
    plc = metrics.get("plc") is not False
    known = CODECS.get(codec.lower())
    values = "G.113 values"
    if known is not None:  # the E-model's own table (ITU-T G.113 Appendix I)
        values = f"Ie {known.ie:g}, Bpl {known.bpl_plc if plc else known.bpl_no_plc:g}"
    concealment = "with" if plc else "without"
    return (
        f"an estimate, not a measurement of a real call: ITU-T G.107 E-model, "
        f"R = 93.2 - Id - Ie,eff with Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl); "
        f"{codec.upper()} {concealment} packet-loss concealment ({values}); Id from the one-way "
        "delay d = RTT/2 + 20 ms packetisation + jitter buffer; Ppl the worse direction's loss"
    )


def _facts(metrics: Mapping[str, Any], ran: list[CheckResult]) -> tuple[tuple[str, str], ...]:
    rows = []
    for name, label, unit in SHOWN:
        if name in metrics and metrics[name] is not None:
            rows.append((label, f"{metric_text(metrics[name])} {unit}".strip()))
    bloat = next((c for c in ran if c.id == "bufferbloat"), None)
    if bloat is not None and "grade" in bloat.outcome.metrics:
        rows.append(("Delay under load (bufferbloat)", f"grade {bloat.outcome.metrics['grade']}"))
    return tuple(rows)
