"""The "Phone calls" section (issue 9) in the terminal, Markdown, HTML and JSON: the MOS labelled
an estimate with its formula and sources, the verdict in words, the fix; absent when no VoIP
check ran."""

from __future__ import annotations

import io
import json

import pytest

from netsetup.diagnose.explain import report_view
from netsetup.diagnose.report import render_all
from netsetup.diagnose.report.phone import phone_calls
from netsetup.diagnose.report.text import Terminal
from netsetup.diagnose.result import CheckResult, DiagnoseReport, Outcome, Owner, Status

from .test_report import flat, make_report, result, text_of_html

VOICE_FIX = "Use a cable instead of Wi-Fi, or move closer to the router (the first hop loses 6 %)"


def voice(mos: float, status: Status = Status.passed, fix: str | None = None) -> CheckResult:
    metrics = {
        "mos": mos,
        "r_factor": 91.7,
        "rtt_ms": 24.5,
        "one_way_ms": 52.3,
        "jitter_up_ms": 1.2,
        "jitter_down_ms": 0.8,
        "loss_up_pct": 0.0,
        "loss_down_pct": 6.1,
        "burst_windows": 2,
        "codec": "g711",
        "plc": True,
    }
    if fix is None:
        return result("voice.quality", Outcome(status, "call quality measured", metrics))
    return result("voice.quality", Outcome(status, "choppy", metrics, fix, Owner.assistant))


def report_with(*checks: CheckResult) -> DiagnoseReport:
    base = [result("tunnel.handshake", Outcome.passed("the tunnel carries traffic"))]
    return make_report(*base, *checks)


def texts_of(report: DiagnoseReport) -> tuple[str, str, dict[str, object], str]:
    texts = render_all(report)
    out = io.StringIO()
    Terminal(out, is_terminal=False).summary(report_view(report), None, phone_calls(report))
    envelope = json.loads(texts["report.json"])
    return flat(texts["report.md"]), text_of_html(texts["report.html"]), envelope, out.getvalue()


@pytest.mark.parametrize(
    ("mos", "status", "words"),
    [
        (4.38, "pass", "calls should sound clear"),
        (3.86, "warn", "calls may break up now and then"),
        (2.56, "fail", "expect choppy audio"),
    ],
)
def test_the_verdict_in_words_follows_the_mos(mos: float, status: str, words: str) -> None:
    section = phone_calls(report_with(voice(mos)))
    assert section is not None
    assert section.status == status and section.verdict == words and section.mos == mos


def test_every_format_shows_mos_verdict_fix_estimate_and_sources() -> None:
    report = report_with(voice(2.56, Status.fail, VOICE_FIX))
    markdown, page, envelope, terminal = texts_of(report)
    section = envelope["phone_calls"]
    assert isinstance(section, dict)
    assert section["mos"] == 2.56 and section["verdict"] == "expect choppy audio"
    assert section["fix"] == VOICE_FIX
    assert "G.107" in section["estimate"] and "Bpl 25.1" in section["estimate"]
    for text in (markdown, page):
        assert "Phone calls" in text
        assert "MOS 2.56 (estimate): expect choppy audio" in text
        assert VOICE_FIX in text
        assert "an estimate, not a measurement of a real call" in text
        assert "R = 93.2 - Id - Ie,eff" in text
        assert "ITU-T G.113 Appendix I" in text and "ITU-T G.114" in text
        assert "Lost, what you hear" in text and "6.1 %" in text and "52.3 ms" in text
    assert "Phone calls: MOS 2.56 (estimate): expect choppy audio" in terminal
    assert VOICE_FIX in terminal


def test_the_section_comes_before_the_measurements() -> None:
    markdown, page, _, _ = texts_of(report_with(voice(4.38)))
    for text in (markdown, page):
        assert text.index("Phone calls") < text.index("Measurements")


def test_absent_when_no_voip_check_ran() -> None:
    skipped = result("voice.quality", Outcome.skip("not checked: tunnel.handshake failed"))
    for report in (report_with(), report_with(skipped)):
        assert phone_calls(report) is None
        markdown, page, envelope, terminal = texts_of(report)
        assert envelope["phone_calls"] is None
        assert "Phone calls" not in markdown and "Phone calls" not in page
        assert "Phone calls" not in terminal


def test_without_a_mos_the_voip_checks_decide_and_their_fix_is_shown() -> None:
    sip = result(
        "sip.udp",
        Outcome.problem(
            Status.fail, "no answer on UDP 5060", "Switch the phone to TCP or TLS", Owner.it
        ),
    )
    section = phone_calls(report_with(sip))
    assert section is not None and section.mos is None and section.estimate is None
    assert section.status == "fail" and section.fix == "Switch the phone to TCP or TLS"
    assert section.verdict == "calls may not connect (sip.udp failed)"


def test_a_failing_voip_check_beside_a_good_mos_is_not_called_clear() -> None:
    alg = result(
        "sip.alg",
        Outcome.problem(Status.fail, "SIP rewritten", "Turn off SIP ALG", Owner.assistant),
    )
    section = phone_calls(report_with(voice(4.38), alg))
    assert section is not None and section.status == "fail"
    assert section.fix == "Turn off SIP ALG"
    assert section.who == "You can fix this"


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ("sip.udp", "calls may not connect"),
        ("sip.alg", "calls may not connect"),
        ("rtp.ports", "calls may connect without sound"),
    ],
)
def test_a_failing_voip_check_gives_its_own_words_not_choppy_audio(check: str, words: str) -> None:
    failing = result(check, Outcome.problem(Status.fail, "blocked", "Ask IT to open it", Owner.it))
    report = report_with(voice(4.38), failing)
    section = phone_calls(report)
    assert section is not None and section.status == "fail"
    assert section.verdict.startswith(words) and "choppy" not in section.verdict
    assert "the sound itself measured clear" in section.verdict
    markdown, page, envelope, terminal = texts_of(report)
    shown = f"MOS 4.38 (estimate): {section.verdict}"
    for text in (markdown, page, terminal):
        assert shown in text and "expect choppy audio" not in text
        assert "Who: Ask your company's IT" in text.replace("**", "")
    assert isinstance(envelope["phone_calls"], dict)
    assert envelope["phone_calls"]["who"].startswith("Ask your company's IT")


def test_one_warn_wording_and_named_cut_off_sources() -> None:
    from netsetup.diagnose.voice.emodel import SOURCES as EMODEL_SOURCES
    from netsetup.diagnose.voice.verdict import VERDICT

    section = phone_calls(report_with(voice(3.86, Status.warn)))
    assert section is not None and section.verdict == VERDICT[Status.warn]
    for sources in (section.sources, EMODEL_SOURCES):
        assert "ITU-T G.109" in sources and "Cisco" in sources and "30 ms jitter" in sources


def test_the_section_names_who_acts_on_the_voice_fix() -> None:
    report = report_with(voice(2.56, Status.fail, VOICE_FIX))
    section = phone_calls(report)
    assert section is not None and section.who == "You can fix this"
    markdown, page, _, terminal = texts_of(report)
    for text in (markdown, page, terminal):
        assert "Who: You can fix this" in text.replace("**", "")


def test_the_bufferbloat_grade_is_listed() -> None:
    bloat = result(
        "bufferbloat",
        Outcome.problem(Status.warn, "grade D", "SQM", Owner.assistant, grade="D"),
    )
    section = phone_calls(report_with(voice(4.38), bloat))
    assert section is not None
    assert ("Delay under load (bufferbloat)", "grade D") in section.facts
