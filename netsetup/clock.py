"""The one clock every time-dependent path takes.

Core functions receive a `Clock` (or the `datetime` it gave) instead of reading the system time
in the middle of their logic, so tests can fix the time or move it a year forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


@dataclass
class FixedClock:
    """A clock for tests: stands still at `moment` until moved with `advance`."""

    moment: datetime

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


SYSTEM_CLOCK = SystemClock()
