"""The rule registry: every rule's code, kebab-case name, default severity and documentation.

Rule modules call `define(...)` at import time for the rules they own and register their check
functions with `profile_check` (run once per profile) or `tree_check` (run once over everything).
`netsetup rule NS105` shows a rule's doc; SARIF output lists every rule from here.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from netsetup.validate.findings import Severity

if TYPE_CHECKING:
    from netsetup.validate.context import Context, ProfileEntry, Tree

_CODE = re.compile(r"^NS[0-2]\d\d$")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str  # one line: what is wrong
    why: str  # what breaks, and for whom
    failing: str  # an example that fires
    passing: str  # the same example, fixed

    @property
    def doc(self) -> str:
        """The full explanation shown by `netsetup rule CODE`, and as SARIF help text."""
        return (
            f"{self.code} {self.name} (default severity: {self.severity.label})\n\n"
            f"What: {self.summary}\n\n"
            f"Why: {self.why}\n\n"
            f"Fails:\n{textwrap.indent(self.failing, '    ')}\n\n"
            f"Passes:\n{textwrap.indent(self.passing, '    ')}\n"
        )


RULES: dict[str, Rule] = {}

ProfileCheck = Callable[["ProfileEntry", "Context"], None]
TreeCheck = Callable[["Tree", "Context"], None]
PROFILE_CHECKS: list[ProfileCheck] = []
TREE_CHECKS: list[TreeCheck] = []

F = TypeVar("F")


def define(
    code: str,
    name: str,
    severity: Severity,
    summary: str,
    why: str,
    failing: str,
    passing: str,
) -> Rule:
    if not _CODE.match(code) or not _NAME.match(name):
        raise ValueError(f"bad rule code or name: {code} {name}")
    if code in RULES or any(r.name == name for r in RULES.values()):
        raise ValueError(f"rule {code} {name} is defined twice")
    rule = Rule(
        code,
        name,
        severity,
        " ".join(summary.split()),
        " ".join(why.split()),
        textwrap.dedent(failing).strip("\n"),
        textwrap.dedent(passing).strip("\n"),
    )
    RULES[code] = rule
    return rule


def profile_check(check: ProfileCheck) -> ProfileCheck:
    PROFILE_CHECKS.append(check)
    return check


def tree_check(check: TreeCheck) -> TreeCheck:
    TREE_CHECKS.append(check)
    return check


def all_rules() -> list[Rule]:
    """Every rule, sorted by code (importing the rule modules first)."""
    import netsetup.validate.rules  # noqa: F401  (defines the rules)

    return [RULES[code] for code in sorted(RULES)]


def find_rule(ref: str) -> Rule | None:
    """A rule by code (`NS105`, `ns105`) or by name (`allowedips-identical`)."""
    all_rules()
    wanted = ref.strip()
    if wanted.upper() in RULES:
        return RULES[wanted.upper()]
    return next((r for r in RULES.values() if r.name == wanted.lower()), None)
