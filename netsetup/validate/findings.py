"""What validate reports: findings as plain data, and the report that collects them."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Ordered so that `severity >= fail_on` decides the exit status."""

    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"severity {text!r} must be one of {choices}") from None


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one place. Field order is the sort order of a report."""

    path: str  # as the user named it: relative paths stay relative, with "/" separators
    line: int
    column: int
    code: str
    rule: str
    severity: Severity
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "rule": self.rule,
            "severity": self.severity.label,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckedProfile:
    """A profile that was checked: its id and the folder it was found in."""

    id: str
    path: str
    peers: int


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    profiles: list[CheckedProfile] = field(default_factory=list)
    files: int = 0
    fail_on: Severity = Severity.ERROR

    @property
    def failed(self) -> bool:
        return any(f.severity >= self.fail_on for f in self.findings)

    def counts(self) -> dict[str, int]:
        counted = Counter(f.severity for f in self.findings)
        return {s.label: counted.get(s, 0) for s in sorted(Severity, reverse=True)}

    def summary(self) -> str:
        counts = self.counts()
        peers = sum(p.peers for p in self.profiles)
        scope = (
            f"{_plural(len(self.profiles), 'profile')}, {_plural(peers, 'peer')}, "
            f"{_plural(self.files, 'file')}"
        )
        if not self.findings:
            return f"no findings ({scope})"
        parts = ", ".join(_plural(n, label) for label, n in counts.items() if n)
        verdict = "failed" if self.failed else "passed"
        return f"{parts} ({scope}): {verdict} at --fail-on {self.fail_on.label}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
