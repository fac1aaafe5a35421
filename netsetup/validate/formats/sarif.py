"""SARIF 2.1.0, as GitHub code scanning and other CI systems read it.

Every registered rule is listed (stable ids: the NSxxx codes) so that viewers can show the help of
a rule even for runs where it did not fire; results refer to their rule by id and index.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import netsetup
from netsetup.validate.findings import Report, Severity
from netsetup.validate.registry import all_rules

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning"}


def _uri(path: str) -> dict[str, str]:
    if path.startswith("/"):
        return {"uri": "file://" + quote(path)}
    return {"uri": quote(path), "uriBaseId": "%SRCROOT%"}


def document(report: Report) -> dict[str, Any]:
    rules = all_rules()
    index = {rule.code: i for i, rule in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "netsetup",
                        "version": netsetup.__version__,
                        "rules": [
                            {
                                "id": rule.code,
                                "name": rule.name,
                                "shortDescription": {"text": rule.summary},
                                "fullDescription": {"text": f"{rule.summary} {rule.why}"},
                                "help": {"text": rule.doc},
                                "defaultConfiguration": {"level": _LEVEL[rule.severity]},
                            }
                            for rule in rules
                        ],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [
                    {
                        "ruleId": f.code,
                        "ruleIndex": index[f.code],
                        "level": _LEVEL[f.severity],
                        "message": {"text": f.message},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": _uri(f.path),
                                    "region": {"startLine": f.line, "startColumn": f.column},
                                }
                            }
                        ],
                    }
                    for f in report.findings
                ],
            }
        ],
    }


def render(report: Report) -> str:
    return json.dumps(document(report), indent=2) + "\n"
