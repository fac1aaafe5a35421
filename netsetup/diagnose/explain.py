"""The words every diagnose renderer shows, computed once: the verdict's headline, who must act,
the problems in fix-first order, the measurements as text, when and where the run was made.

Renderers (terminal, Markdown, HTML) only lay out a `ReportView`; the JSON renderer writes the
report's envelope. So the three reports carry the same facts by construction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netsetup.diagnose.result import CheckResult, DiagnoseReport, Owner, Status

HEADLINES = {
    Status.passed: "Everything works.",
    Status.warn: "It works, but something should be improved (see below).",
    Status.unknown: "Some checks could not tell whether everything works (see below).",
    Status.fail: "Something is broken. Fix the first problem below first.",
}
LABELS = {
    Status.passed: "PASS",
    Status.warn: "WARN",
    Status.unknown: "UNKNOWN",
    Status.fail: "FAIL",
    Status.skip: "SKIP",
}
INTERRUPTED_NOTE = "Interrupted (Ctrl-C): the checks that had not finished are marked unknown."


def who_acts(owner: Owner | None, contact: str | None) -> str:
    """Who takes the next step, in plain words."""
    it = f"Ask your company's IT ({contact})" if contact else "Ask your company's IT"
    if owner is Owner.assistant:
        return "You can fix this"
    if owner is Owner.isp:
        return "Call your internet provider"
    if owner is Owner.it:
        return it
    return f"{it}: send them this report"


def metric_text(value: Any) -> str:
    """One measurement as text: numbers as they are, yes/no, lists joined, tables as key=value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_nested(v) for v in value) or "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _nested(value: Any) -> str:
    """A value inside a list or table: bracketed when it is itself a list or table."""
    text = metric_text(value)
    return f"({text})" if isinstance(value, Mapping | list | tuple) and value else text


@dataclass(frozen=True)
class CheckView:
    id: str
    title: str
    status: str  # pass, warn, ... (the JSON value: CSS classes and colours key on it)
    label: str  # PASS, WARN, ...
    summary: str
    fix: str | None
    who: str | None  # None for a pass or a skip: nobody has to act
    duration: str
    metrics: tuple[tuple[str, str], ...]
    line: str  # the summary as the terminal's progress line shows it (shorter for a skip)


def check_view(result: CheckResult, contact: str | None = None) -> CheckView:
    o = result.outcome
    acting = o.status in (Status.fail, Status.unknown, Status.warn)
    return CheckView(
        id=result.id,
        title=result.title,
        status=str(o.status),
        label=LABELS[o.status],
        summary=o.summary,
        fix=o.fix,
        who=who_acts(o.owner, contact) if acting else None,
        duration=f"{result.duration_s:.2f} s",
        metrics=tuple((str(k), metric_text(v)) for k, v in o.metrics.items()),
        line=_progress_line(result),
    )


def _progress_line(result: CheckResult) -> str:
    """A skip names the check to fix first without repeating that check's whole summary (which
    has its own line)."""
    blocker = result.outcome.metrics.get("blocked_by")
    if result.status is Status.skip and isinstance(blocker, str):
        return f"not checked: {blocker} must work first"
    return result.outcome.summary


@dataclass(frozen=True)
class ReportView:
    verdict: str
    verdict_label: str
    headline: str
    title: str
    facts: tuple[tuple[str, str], ...]  # when and where: (label, value)
    problems: tuple[CheckView, ...]  # fix-first order
    passed_line: str
    checks: tuple[CheckView, ...]  # every check, in the order they are listed
    interrupted: str | None


def report_view(report: DiagnoseReport) -> ReportView:
    verdict = report.verdict
    company = f" for {report.company}" if report.company else ""
    return ReportView(
        verdict=str(verdict),
        verdict_label=LABELS[verdict],
        headline=HEADLINES[verdict],
        title=f"netsetup diagnose{company}: {LABELS[verdict]}",
        facts=facts(report),
        problems=tuple(check_view(c, report.contact) for c in report.problems),
        passed_line=passed_line(report),
        checks=tuple(check_view(c, report.contact) for c in report.checks),
        interrupted=INTERRUPTED_NOTE if report.interrupted else None,
    )


def facts(report: DiagnoseReport) -> tuple[tuple[str, str], ...]:
    """When and where the run was made, and on what."""
    rows = [
        ("When", report.started.isoformat(timespec="seconds")),
        ("Took", f"{report.duration_s:.1f} s"),
        ("Computer", report.host),
        ("System", report.platform),
        ("Config file", report.config or "-"),
    ]
    if report.profile_id:
        rows.append(("Profile", report.profile_id))
    if report.company:
        rows.append(("Company", report.company))
    if report.contact:
        rows.append(("IT contact", report.contact))
    shown = "shown" if report.public_ip_shown else "hidden (x.x)"
    rows.append(("Public addresses", shown))
    return tuple(rows)


def passed_line(report: DiagnoseReport) -> str:
    """One line for what passed (and what was skipped): the good news stays short."""
    passed = [c.id for c in report.checks if c.status is Status.passed]
    skipped = [c.id for c in report.checks if c.status is Status.skip]
    if not report.checks:
        return "No check ran."
    line = f"Passed {len(passed)} of {len(report.checks)}: {', '.join(passed) or 'none'}."
    if skipped:
        line += f" Skipped {len(skipped)}: {', '.join(skipped)}."
    return line
