"""JUnit XML: one testcase per profile, failed when it has a finding at or above --fail-on.

Findings below the threshold are listed in the testcase's system-out, so nothing is lost.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from netsetup.validate.findings import Finding, Report
from netsetup.validate.formats import text

OTHER = "(files outside any profile)"


def _owner(finding: Finding, prefixes: list[tuple[str, str]]) -> str:
    for prefix, name in prefixes:
        if finding.path.startswith(prefix):
            return name
    return OTHER


def render(report: Report) -> str:
    # longest folder first, so a profile nested in another's folder gets its own findings
    prefixes = sorted(
        ((p.path.rstrip("/") + "/", p.path) for p in report.profiles), key=lambda x: -len(x[0])
    )
    grouped: dict[str, list[Finding]] = {p.path: [] for p in report.profiles}
    for finding in report.findings:
        grouped.setdefault(_owner(finding, prefixes), []).append(finding)
    failures = sum(1 for fs in grouped.values() if any(f.severity >= report.fail_on for f in fs))
    suites = ET.Element(
        "testsuites", name="netsetup validate", tests=str(len(grouped)), failures=str(failures)
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="netsetup.validate",
        tests=str(len(grouped)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for name, findings in grouped.items():
        case = ET.SubElement(suite, "testcase", classname="netsetup.validate", name=name)
        failing = [f for f in findings if f.severity >= report.fail_on]
        if failing:
            first = failing[0]
            failure = ET.SubElement(
                case,
                "failure",
                message=f"{len(failing)} finding(s) at or above {report.fail_on.label}; "
                f"first: {first.code} {first.message}",
                type=first.code,
            )
            failure.text = "".join(text.line(f) + "\n" for f in failing)
        others = [f for f in findings if f.severity < report.fail_on]
        if others:
            ET.SubElement(case, "system-out").text = "".join(text.line(f) + "\n" for f in others)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
