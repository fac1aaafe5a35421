"""`path:line:col: NS105 [error] message (allowedips-identical)` per finding, then a summary."""

from __future__ import annotations

from netsetup.validate.findings import Finding, Report


def line(f: Finding) -> str:
    return f"{f.path}:{f.line}:{f.column}: {f.code} [{f.severity.label}] {f.message} ({f.rule})"


def render(report: Report) -> str:
    return "".join(line(f) + "\n" for f in report.findings) + report.summary() + "\n"
