"""GitHub Actions workflow commands: one annotation per finding, then the plain summary.

GitHub shows only the first few annotations of a step, so the text lines follow as well.
"""

from __future__ import annotations

from netsetup.validate.findings import Finding, Report, Severity
from netsetup.validate.formats import text

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning"}


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding) -> str:
    props = ",".join(
        f"{name}={escape_property(value)}"
        for name, value in (
            ("file", f.path),
            ("line", str(f.line)),
            ("col", str(f.column)),
            ("title", f"{f.code} {f.rule}"),
        )
    )
    return f"::{_COMMAND[f.severity]} {props}::{escape_data(f.message)}"


def render(report: Report) -> str:
    annotations = "".join(annotation(f) + "\n" for f in report.findings)
    return annotations + text.render(report)
