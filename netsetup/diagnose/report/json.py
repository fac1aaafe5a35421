"""`netsetup.diagnose/1` as JSON: the envelope of DESIGN.md plus what the report adds."""

from __future__ import annotations

import json

from netsetup.diagnose.result import DiagnoseReport


def render_json(report: DiagnoseReport) -> str:
    return json.dumps(report.to_envelope(), indent=2, default=str) + "\n"
