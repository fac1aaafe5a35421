"""The Markdown report: ready to paste into a ticket (GitHub, GitLab, Jira and most helpdesks)."""

from __future__ import annotations

from netsetup.diagnose.explain import CheckView, ReportView, report_view
from netsetup.diagnose.report.phone import PhoneCalls, phone_calls
from netsetup.diagnose.result import DiagnoseReport

# What a Markdown renderer would act on in found text (a server's banner, an error it sent): raw
# HTML and autolinks open with `<`, links and images with `](`. Backslash-escaped, they show as
# themselves in a ticket; raw, a banner could put a link or a tracking image there.
_ACTIVE = (("\\", "\\\\"), ("<", "\\<"), ("](", "]\\("))


def _cell(text: str) -> str:
    """Text safe inside a table cell: pipes escaped, one line."""
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    """Found text on one line, shown as itself (nothing in it becomes a link or HTML)."""
    for active, escaped in _ACTIVE:
        text = text.replace(active, escaped)
    return " ".join(text.split())


def _problem(number: int, check: CheckView) -> list[str]:
    head = f"{number}. **{check.label}** `{check.id}` {_inline(check.title)}"
    lines = [f"{head}: {_inline(check.summary)}"]
    if check.fix:
        lines.append(f"   - **Fix:** {_inline(check.fix)}")
    if check.who:
        lines.append(f"   - **Who:** {_inline(check.who)}")
    return lines


def _measurements(view: ReportView) -> list[str]:
    lines = ["| Check | Status | Time | Result | Measurements |", "|---|---|---|---|---|"]
    for check in view.checks:
        metrics = "; ".join(f"{k}: {v}" for k, v in check.metrics) or "-"
        lines.append(
            f"| `{check.id}` | {check.label} | {check.duration} | {_cell(check.summary)} "
            f"| {_cell(metrics)} |"
        )
    return lines


def _phone_calls(section: PhoneCalls) -> list[str]:
    lines = ["## Phone calls", ""]
    mos = f"MOS {section.mos:.2f} (estimate): " if section.mos is not None else ""
    lines += [f"**{mos}{_inline(section.verdict)}**", ""]
    if section.fix:
        lines += [f"- **Fix:** {_inline(section.fix)}"]
    if section.who:
        lines += [f"- **Who:** {_inline(section.who)}"]
    lines += [f"- **{label}:** {_inline(value)}" for label, value in section.facts]
    if section.estimate:
        lines += [f"- **MOS:** {_inline(section.estimate)}"]
    lines += [f"- **Sources:** {_inline(section.sources)}", ""]
    return lines


def render_markdown(report: DiagnoseReport) -> str:
    view = report_view(report)
    lines = [f"# {_inline(view.title)}", "", f"**{view.verdict_label}: {view.headline}**", ""]
    if view.interrupted:
        lines += [f"> {view.interrupted}", ""]
    lines += [f"- **{label}:** {_inline(value)}" for label, value in view.facts]
    lines.append("")
    if view.problems:
        lines += ["## What to fix, first things first", ""]
        for number, check in enumerate(view.problems, start=1):
            lines += _problem(number, check)
        lines.append("")
    section = phone_calls(report)
    if section is not None:
        lines += _phone_calls(section)
    lines += ["## What passed", "", view.passed_line, "", "## Measurements", ""]
    lines += _measurements(view)
    lines += ["", "_Made by `netsetup diagnose`._", ""]
    return "\n".join(lines)
