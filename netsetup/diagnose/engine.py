"""The diagnose engine: small independent checks, run concurrently under one deadline.

A check is an object with an id, a title, a budget and the ids of the checks it needs. Families
of checks register a factory (`@register_family`) that returns the checks that apply to a run
(one `reach.<name>` per target, say). `run_checks` starts every check whose needs have finished
(each in a thread of its own: checks wait on the network, not the CPU), skips a check whose needs
did not pass (naming which one to fix first), and ends a check that outlives its budget or the
global deadline as `unknown` with the reason: the run never hangs on one check. Ctrl-C ends the
run at once; what finished is kept and the rest is `unknown` (interrupted).

Phases (issue 9): phase 0 (connectivity) runs under --deadline; phase 1 (VoIP) runs beside it
with its own budget on top of that deadline; phase 2 (checks that load the link: speed.tunnel,
bufferbloat) starts only once no check of phases 0 and 1 runs or waits, with its own budget from
then, and an `exclusive` check runs alone (a loaded link would disturb any other measurement).
`--no-load` skips phase 2.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.result import CheckResult, Outcome, Status
from netsetup.errors import ExitCode, NetsetupError


class Check:
    """One check. Subclasses set the class attributes and implement `run`.

    `run` must return within `ctx.time_left()` (use it as every socket's timeout); the engine
    stops waiting for it at its deadline anyway. It returns an Outcome and never prints.
    Exceptions become `unknown` with the error's message (never a traceback for the assistant).
    """

    id: str = ""
    title: str = ""
    budget_s: float = 5.0
    needs: tuple[str, ...] = ()  # checks that must pass (or warn) before this one makes sense
    # issue 9: 0 connectivity (under --deadline), 1 VoIP (its own budget on top), 2 checks that
    # load the link: they run after the others, one at a time when `exclusive`
    phase: int = 0
    exclusive: bool = False
    long_budget_s: float | None = None  # with --long (None: budget_s)

    def budget(self, long: bool) -> float:
        """This check's budget for a run with or without --long."""
        return self.long_budget_s if long and self.long_budget_s is not None else self.budget_s

    def run(self, ctx: CheckContext) -> Outcome:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


Family = Callable[[DiagnoseContext], Iterable[Check]]
FAMILIES: list[tuple[str, Family]] = []


def register_family(name: str) -> Callable[[Family], Family]:
    """Register a factory of checks; `name` is the family (the module's name)."""

    def decorate(factory: Family) -> Family:
        FAMILIES.append((name, factory))
        return factory

    return decorate


def load_families() -> None:
    """Import every check module (importing one registers its family)."""
    import importlib

    from netsetup.diagnose.checks import MODULES

    for module in MODULES:
        importlib.import_module(f"netsetup.diagnose.checks.{module}")


def selected(check_id: str, only: Sequence[str]) -> bool:
    """`--only tunnel,dns`: an id matches itself and its prefix before a dot."""
    return not only or any(check_id == o or check_id.startswith(o + ".") for o in only)


def plan_checks(ctx: DiagnoseContext) -> list[Check]:
    """Every check that applies to this run, in the registry's order, filtered by --only."""
    load_families()
    checks = [c for _, factory in FAMILIES for c in factory(ctx)]
    return [c for c in checks if selected(c.id, ctx.options.only)]


OnResult = Callable[[CheckResult], None]
OnPhase = Callable[[int], None]  # called (in the engine's thread) as phase 1 or 2 begins
PHASE_WORDS = {0: "the run", 1: "the VoIP checks", 2: "the speed checks"}
NO_LOAD = "not run: --no-load asked not to load the connection"


@dataclass
class _Running:
    check: Check
    started: float
    deadline: float
    thread: threading.Thread
    phase_deadline: float  # the deadline of its phase (the check's own may be earlier)


class _Run:
    """The state of one engine run (all of it touched by the calling thread only, except the
    queue the check threads put their outcomes on)."""

    def __init__(
        self,
        ctx: DiagnoseContext,
        checks: Sequence[Check],
        on_result: OnResult,
        on_phase: OnPhase = lambda phase: None,
    ) -> None:
        self.ctx = ctx
        self.checks = list(checks)
        self.on_result = on_result
        self.on_phase = on_phase
        self.phases_begun: set[int] = set()
        self.planned = {c.id for c in checks}
        self.waiting = list(checks)
        self.running: dict[str, _Running] = {}
        self.done: dict[str, CheckResult] = {}
        self.outcomes: queue.Queue[tuple[str, Outcome]] = queue.Queue()

    def finish(self, check: Check, outcome: Outcome, started: float | None = None) -> None:
        duration = time.monotonic() - started if started is not None else 0.0
        result = CheckResult(check.id, check.title, outcome, duration)
        self.done[check.id] = result
        self.running.pop(check.id, None)
        with self.ctx._lock:
            self.ctx.results[check.id] = result
        self.on_result(result)

    def start_ready(self) -> None:
        """Start what can start: phases 0 and 1 first, then (when none of those is left) the
        load phase, one exclusive check at a time."""
        for check in [c for c in self.waiting if c.phase < 2]:
            self._try_start(check)
        if any(c.check.phase < 2 for c in self.running.values()):
            return
        if any(c.phase < 2 for c in self.waiting):
            return
        for check in [c for c in self.waiting if c.phase >= 2]:
            if any(r.check.exclusive for r in self.running.values()):
                return
            if check.exclusive and self.running:
                return
            self._try_start(check)

    def _try_start(self, check: Check) -> None:
        needs = [n for n in check.needs if n in self.planned]
        if any(n not in self.done for n in needs):
            return
        self.waiting.remove(check)
        blocker = next((self.done[n] for n in needs if not _usable(self.done[n])), None)
        if blocker is not None:
            self.finish(check, _skipped_for(blocker))
            return
        if check.phase >= 2 and not self.ctx.options.load:
            self.finish(check, Outcome(Status.skip, NO_LOAD))
            return
        self._begin_phase(check.phase)
        if time.monotonic() >= self.ctx.phase_deadline(check.phase):
            limit = self.ctx.options.phase_budget(check.phase)
            self.finish(check, _out_of_time(limit, PHASE_WORDS.get(check.phase, "the run")))
        else:
            self._start(check)

    def _begin_phase(self, phase: int) -> None:
        if phase in self.phases_begun:
            return
        self.phases_begun.add(phase)
        if phase >= 2 and self.ctx.load_started is None:
            self.ctx.load_started = time.monotonic()
        if phase > 0:
            self.on_phase(phase)

    def _start(self, check: Check) -> None:
        now = time.monotonic()
        phase_deadline = self.ctx.phase_deadline(check.phase)
        deadline = min(phase_deadline, now + check.budget(self.ctx.options.long))
        view = CheckContext(self.ctx, deadline)
        thread = threading.Thread(
            target=self._body, args=(check, view), name=f"check {check.id}", daemon=True
        )
        self.running[check.id] = _Running(check, now, deadline, thread, phase_deadline)
        thread.start()

    def _body(self, check: Check, view: CheckContext) -> None:
        try:
            outcome = check.run(view)
        except Exception as exc:  # a check's bug or an unexpected error: unknown, with why
            outcome = Outcome(Status.unknown, f"the check could not finish: {_plain(exc)}")
        self.outcomes.put((check.id, outcome))

    def wait(self) -> None:
        """Take finished outcomes (the first until the next deadline of a running check, then
        every one already there: taking one per round made hundreds of targets a quadratic
        loop that called checks finished long before "did not finish")."""
        next_deadline = min(r.deadline for r in self.running.values())
        timeout = max(0.0, next_deadline - time.monotonic())
        finished: list[tuple[str, Outcome]] = []
        try:
            finished.append(self.outcomes.get(timeout=timeout))
            while True:
                finished.append(self.outcomes.get_nowait())
        except queue.Empty:
            pass
        for check_id, outcome in finished:
            running = self.running.get(check_id)
            if running is not None:  # not already ended by its deadline
                self.finish(running.check, outcome, running.started)
        now = time.monotonic()
        for r in list(self.running.values()):
            if now >= r.deadline:
                self.finish(r.check, self._late(r), r.started)

    def _late(self, r: _Running) -> Outcome:
        if r.deadline >= r.phase_deadline:
            phase = r.check.phase
            limit = self.ctx.options.phase_budget(phase)
            return _out_of_time(limit, PHASE_WORDS.get(phase, "the run"))
        return _out_of_time(r.check.budget(self.ctx.options.long), "this check")

    def interrupt(self) -> None:
        for check in [r.check for r in self.running.values()] + self.waiting:
            self.finish(check, Outcome(Status.unknown, "interrupted (Ctrl-C) before it finished"))
        self.waiting.clear()

    def ordered(self) -> list[CheckResult]:
        return [self.done[c.id] for c in self.checks if c.id in self.done]


def run_checks(
    ctx: DiagnoseContext,
    checks: Sequence[Check],
    on_result: OnResult = lambda r: None,
    on_phase: OnPhase = lambda phase: None,
) -> tuple[list[CheckResult], bool]:
    """Run `checks`; returns their results in plan order and whether Ctrl-C cut the run short.
    `on_result` is called (in this thread) as each check ends, `on_phase` as the VoIP (1) or
    the load (2) phase begins."""
    run = _Run(ctx, checks, on_result, on_phase)
    try:
        run.start_ready()
        while run.running or run.waiting:
            if not run.running:  # every waiting check needs one that is not planned: cannot be
                for check in list(run.waiting):
                    run.waiting.remove(check)
                    run.finish(check, Outcome(Status.skip, "its prerequisite did not run"))
                break
            run.wait()
            run.start_ready()
    except KeyboardInterrupt:
        run.interrupt()
        return run.ordered(), True
    except NetsetupError as exc:  # the CLI's SIGINT handler raises its own Interrupted
        if exc.exit_code != ExitCode.INTERRUPTED:
            raise
        run.interrupt()
        return run.ordered(), True
    return run.ordered(), False


def _usable(result: CheckResult) -> bool:
    return result.status in (Status.passed, Status.warn)


def _skipped_for(blocker: CheckResult) -> Outcome:
    why = {
        Status.fail: "failed",
        Status.unknown: "could not tell",
        Status.skip: "did not run",
    }[blocker.status]
    return Outcome(
        Status.skip,
        f"not checked: {blocker.id} {why}; fix that first ({blocker.outcome.summary})",
        {"blocked_by": blocker.id},
    )


def _out_of_time(limit: float, what: str) -> Outcome:
    return Outcome(
        Status.unknown,
        f"no answer within the time {what} allows ({limit:g} s): it did not finish",
        {"timed_out": True},
    )


def _plain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
