"""The result model of `diagnose`: every renderer (terminal, JSON, Markdown, HTML) reads these."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SCHEMA = "netsetup.diagnose/1"

Metric = str | int | float | bool | None | list[Any] | dict[str, Any]


class Status(enum.StrEnum):
    """How a check ended. The verdict is the worst status: pass < warn < unknown < fail; skip does
    not count (a skipped check says which other check to fix first)."""

    passed = "pass"
    warn = "warn"
    unknown = "unknown"
    fail = "fail"
    skip = "skip"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.skip: -1, Status.passed: 0, Status.warn: 1, Status.unknown: 2, Status.fail: 3}


class Owner(enum.StrEnum):
    """Who must act on a problem."""

    assistant = "assistant"
    it = "it"  # the company's IT
    isp = "isp"  # the assistant's internet provider


@dataclass(frozen=True)
class Outcome:
    """What a check found. `fix` is the concrete next step (the value to change, the person to
    call), and `owner` who takes it; both are None for a pass."""

    status: Status
    summary: str
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    fix: str | None = None
    owner: Owner | None = None

    @classmethod
    def passed(cls, summary: str, **metrics: Metric) -> Outcome:
        return cls(Status.passed, summary, metrics)

    @classmethod
    def skip(cls, summary: str, **metrics: Metric) -> Outcome:
        return cls(Status.skip, summary, metrics)

    @classmethod
    def problem(
        cls, status: Status, summary: str, fix: str, owner: Owner, **metrics: Metric
    ) -> Outcome:
        return cls(status, summary, metrics, fix, owner)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome with its identity and how long it ran."""

    id: str
    title: str
    outcome: Outcome
    duration_s: float

    @property
    def status(self) -> Status:
        return self.outcome.status

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": self.id,
            "title": self.title,
            "status": str(o.status),
            "summary": o.summary,
            "metrics": dict(o.metrics),
            "fix": o.fix,
            "owner": str(o.owner) if o.owner else None,
            "duration_s": round(self.duration_s, 3),
        }


def verdict_of(results: Sequence[CheckResult]) -> Status:
    """The worst status among the checks (skips do not count); pass when nothing ran."""
    ranked = [r.status for r in results if r.status is not Status.skip]
    return max(ranked, key=lambda s: s.rank, default=Status.passed)


def fix_order(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The problems, what to fix first at the top: failures before unknowns before warnings, and
    within one status in the order the checks are listed (the tunnel before what runs in it)."""
    problems = [r for r in results if r.status in (Status.fail, Status.unknown, Status.warn)]
    return sorted(problems, key=lambda r: -r.status.rank)


@dataclass(frozen=True)
class DiagnoseReport:
    """One run of diagnose: when and where it ran, on which config, and every check's result."""

    started: datetime
    duration_s: float
    checks: tuple[CheckResult, ...]
    host: str  # the machine's name: the report says where it was made
    platform: str  # e.g. "Linux 6.1", "Windows 11", "macOS 14.5"
    config: str | None  # the config file's name (not its contents)
    profile_id: str | None
    interrupted: bool = False
    company: str | None = None  # the company's name, as the config or profile gives it
    contact: str | None = None  # whom the assistant asks at the company's IT
    public_ip_shown: bool = False  # --include-public-ip: public addresses were left as found
    # issue 9: each phase's name and budget ({"phase": 0, "name": "connectivity", "budget_s": 10})
    phases: tuple[Mapping[str, Any], ...] = ()

    @property
    def verdict(self) -> Status:
        return verdict_of(self.checks)

    @property
    def problems(self) -> list[CheckResult]:
        return fix_order(self.checks)

    def to_envelope(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started": self.started.isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "verdict": str(self.verdict),
            "interrupted": self.interrupted,
            "host": self.host,
            "platform": self.platform,
            "config": self.config,
            "profile": self.profile_id,
            "company": self.company,
            "contact": self.contact,
            "public_ip_shown": self.public_ip_shown,
            "phases": [dict(p) for p in self.phases],
            "problems": [c.id for c in self.problems],
            "checks": [c.to_dict() for c in self.checks],
        }
