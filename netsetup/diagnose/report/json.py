"""`netsetup.diagnose/1` as JSON: the envelope of DESIGN.md plus what the report adds (issue 9:
`phone_calls`, the "Phone calls" section; null when no VoIP check ran)."""

from __future__ import annotations

import json

from netsetup.diagnose.report.phone import phone_calls
from netsetup.diagnose.result import DiagnoseReport


def render_json(report: DiagnoseReport) -> str:
    envelope = report.to_envelope()
    section = phone_calls(report)
    envelope["phone_calls"] = section.to_dict() if section is not None else None
    return json.dumps(envelope, indent=2, default=str) + "\n"
