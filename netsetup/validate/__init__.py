"""`netsetup validate`: check profiles offline and report findings at the right file and line.

    report = validate([Path("profiles")], now=datetime.now(UTC))
    print(render(report, "text"))

Nothing here imports Typer; the CLI in `netsetup.cli.validate` only parses, calls, renders, exits.
"""

from netsetup.validate.engine import validate
from netsetup.validate.findings import Finding, Report, Severity
from netsetup.validate.formats import FORMATS, choose_format, render
from netsetup.validate.registry import Rule, all_rules, find_rule

__all__ = [
    "FORMATS",
    "Finding",
    "Report",
    "Rule",
    "Severity",
    "all_rules",
    "choose_format",
    "find_rule",
    "render",
    "validate",
]
