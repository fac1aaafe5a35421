"""The diagnose engine: concurrency, one deadline, budgets, dependency skips, Ctrl-C."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext, DiagnoseContext, DiagnoseOptions
from netsetup.diagnose.engine import Check, run_checks, selected
from netsetup.diagnose.result import CheckResult, Outcome, Owner, Status, verdict_of

CONFIG = """[Interface]
Address = 198.18.10.2/32
[Peer]
PublicKey = MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=
Endpoint = 192.0.2.1:51820
AllowedIPs = 192.0.2.0/24
"""


def context(deadline: float = 5.0) -> DiagnoseContext:
    config = ClientConfig.parse(CONFIG, Path("wg-test.conf"))
    return DiagnoseContext(config, options=DiagnoseOptions(deadline_s=deadline))


class Fixed(Check):
    def __init__(self, check_id: str, outcome: Outcome, *, sleep: float = 0.0, needs=()) -> None:
        self.id = check_id
        self.title = check_id
        self.outcome = outcome
        self.sleep = sleep
        self.needs = tuple(needs)
        self.started_at: float | None = None

    def run(self, ctx: CheckContext) -> Outcome:
        self.started_at = time.monotonic()
        time.sleep(self.sleep)
        return self.outcome


class Hangs(Check):
    """Never returns by itself: the engine must stop waiting for it."""

    def __init__(self, check_id: str, budget: float = 30.0) -> None:
        self.id = check_id
        self.title = check_id
        self.budget_s = budget
        self.release = threading.Event()

    def run(self, ctx: CheckContext) -> Outcome:
        self.release.wait(60)
        return Outcome.passed("late")


PASS = Outcome.passed("fine")
FAIL = Outcome.problem(Status.fail, "broken", "do X", Owner.it)


def test_checks_run_concurrently() -> None:
    checks = [Fixed(f"c{i}", PASS, sleep=0.4) for i in range(5)]
    began = time.monotonic()
    results, interrupted = run_checks(context(), checks)
    took = time.monotonic() - began
    assert not interrupted
    assert [r.id for r in results] == [f"c{i}" for i in range(5)]
    assert all(r.status is Status.passed for r in results)
    assert took < 5 * 0.4 * 0.6, f"five 0.4 s checks took {took:.2f} s: not concurrent"


def test_a_hanging_check_ends_unknown_at_the_global_deadline_and_the_rest_finish() -> None:
    hang = Hangs("slow")
    quick = Fixed("quick", PASS)
    began = time.monotonic()
    results, _ = run_checks(context(deadline=1.0), [hang, quick])
    took = time.monotonic() - began
    hang.release.set()
    by_id = {r.id: r for r in results}
    assert by_id["quick"].status is Status.passed
    assert by_id["slow"].status is Status.unknown
    assert "1 s" in by_id["slow"].outcome.summary
    assert 0.9 < took < 1.8


def test_a_check_over_its_own_budget_ends_unknown_before_the_deadline() -> None:
    hang = Hangs("slow", budget=0.3)
    began = time.monotonic()
    results, _ = run_checks(context(deadline=5.0), [hang])
    hang.release.set()
    assert time.monotonic() - began < 1.5
    assert results[0].status is Status.unknown
    assert "this check" in results[0].outcome.summary


def test_a_check_whose_prerequisite_failed_is_skipped_naming_it() -> None:
    first = Fixed("tunnel.handshake", FAIL, sleep=0.1)
    after = Fixed("reach.files", PASS, needs=["tunnel.handshake"])
    results, _ = run_checks(context(), [after, first])
    by_id = {r.id: r for r in results}
    assert by_id["reach.files"].status is Status.skip
    assert "tunnel.handshake" in by_id["reach.files"].outcome.summary
    assert after.started_at is None  # it never ran


def test_a_check_waits_for_its_prerequisite_then_runs() -> None:
    first = Fixed("tunnel.handshake", PASS, sleep=0.2)
    after = Fixed("reach.files", PASS, needs=["tunnel.handshake"])
    results, _ = run_checks(context(), [first, after])
    assert [r.status for r in results] == [Status.passed, Status.passed]
    assert first.started_at is not None and after.started_at is not None
    assert after.started_at >= first.started_at + 0.2


def test_a_prerequisite_not_planned_does_not_block() -> None:
    after = Fixed("reach.files", PASS, needs=["tunnel.handshake"])
    results, _ = run_checks(context(), [after])
    assert results[0].status is Status.passed


def test_an_exception_in_a_check_is_unknown_with_its_message() -> None:
    class Broken(Check):
        id = "broken"
        title = "broken"

        def run(self, ctx: CheckContext) -> Outcome:
            raise RuntimeError("socket exploded")

    results, _ = run_checks(context(), [Broken()])
    assert results[0].status is Status.unknown
    assert "socket exploded" in results[0].outcome.summary


def test_ctrl_c_keeps_what_finished_and_marks_the_rest_interrupted() -> None:
    hang = Hangs("slow")
    quick = Fixed("quick", PASS)
    seen: list[CheckResult] = []

    def on_result(result: CheckResult) -> None:
        seen.append(result)
        if result.id == "quick":
            raise KeyboardInterrupt

    results, interrupted = run_checks(context(), [quick, hang], on_result)
    hang.release.set()
    assert interrupted
    by_id = {r.id: r for r in results}
    assert by_id["quick"].status is Status.passed
    assert by_id["slow"].status is Status.unknown
    assert "interrupted" in by_id["slow"].outcome.summary


def test_verdict_is_the_worst_status_and_skip_does_not_count() -> None:
    def result(status: Status) -> CheckResult:
        return CheckResult("x", "x", Outcome(status, "s"), 0.0)

    assert verdict_of([]) is Status.passed
    assert verdict_of([result(Status.skip)]) is Status.passed
    assert verdict_of([result(Status.passed), result(Status.warn)]) is Status.warn
    assert verdict_of([result(Status.warn), result(Status.unknown)]) is Status.unknown
    assert verdict_of([result(Status.unknown), result(Status.fail)]) is Status.fail


@pytest.mark.parametrize(
    ("check_id", "only", "chosen"),
    [
        ("reach.files", (), True),
        ("reach.files", ("reach",), True),
        ("reach.files", ("reach.files",), True),
        ("reach.files", ("tunnel",), False),
        ("reachable", ("reach",), False),
    ],
)
def test_only_selects_ids_and_families(check_id: str, only: tuple[str, ...], chosen: bool) -> None:
    assert selected(check_id, only) is chosen
