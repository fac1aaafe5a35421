"""The versioned JSON envelope `{"schema": "netsetup.validate/1", ...}`."""

from __future__ import annotations

import json
from typing import Any

from netsetup.validate.findings import Report

SCHEMA = "netsetup.validate/1"


def payload(report: Report) -> dict[str, Any]:
    """Everything but the schema tag (the CLI's `emit_json` adds it)."""
    return {
        "ok": not report.failed,
        "fail_on": report.fail_on.label,
        "summary": {
            **report.counts(),
            "profiles": len(report.profiles),
            "peers": sum(p.peers for p in report.profiles),
            "files": report.files,
        },
        "profiles": [{"id": p.id, "path": p.path, "peers": p.peers} for p in report.profiles],
        "findings": [f.as_dict() for f in report.findings],
    }


def render(report: Report) -> str:
    return json.dumps({"schema": SCHEMA, **payload(report)}, indent=2) + "\n"
