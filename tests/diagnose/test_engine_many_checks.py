"""A config with thousands of targets (a netsetup-diagnose line per target): the engine takes
every outcome that is ready at once. Taking one per round made its bookkeeping quadratic (for
3000 quick checks, about 3 s: checks that had finished were called "did not finish")."""

from __future__ import annotations

import pytest

from netsetup.diagnose import engine
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.engine import Check, run_checks
from netsetup.diagnose.result import Outcome, Status

from .helpers import config_text, context


class Instant(Check):
    budget_s = 10.0

    def __init__(self, index: int) -> None:
        self.id = f"reach.t{index}"
        self.title = f"target {index}"

    def run(self, ctx: CheckContext) -> Outcome:
        return Outcome.passed("answered")


def test_outcomes_ready_together_are_taken_together(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = 0
    wait = engine._Run.wait

    def counted(self: engine._Run) -> None:
        nonlocal rounds
        rounds += 1
        wait(self)

    monkeypatch.setattr(engine._Run, "wait", counted)
    ctx = context(config_text([]), deadline_s=5.0)
    results, _ = run_checks(ctx, [Instant(i) for i in range(400)])
    assert [r.status for r in results] == [Status.passed] * 400
    assert rounds < 200  # one round per outcome would be 400
