"""What every check is given: the config, the optional profile, the clock and the time left."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.diagnose.clientconfig import ClientConfig, DiagnoseInfo
from netsetup.diagnose.result import CheckResult
from netsetup.profile.model import Profile

T = TypeVar("T")


OFFLINE_ENV = "NETSETUP_OFFLINE"  # "1": nothing may reach the internet (tests, the lab)

# The three phases of a run (issue 9): each has its own budget, so the VoIP and speed checks never
# eat the connectivity checks' time, and the checks that load the link never overlap the others.
PHASE_NAMES = {0: "connectivity", 1: "voip", 2: "load"}
VOIP_BUDGET_S = 8.0  # a few seconds of voice-shaped probes
VOIP_LONG_BUDGET_S = 200.0  # --long: ~1,100 voice probes (~25 s) and the NAT lifetime (<= 190 s)
LOAD_BUDGET_S = 40.0  # speed.tunnel (~12 s) then bufferbloat (~18 s), one after the other
LOAD_LONG_BUDGET_S = 55.0  # --long: bufferbloat loads each direction longer (~30 s)
INTERNET_SPEED_S = 25.0  # speed.internet, when it runs, adds its own time to the load phase


def offline_from_environment() -> bool:
    return os.environ.get(OFFLINE_ENV) == "1"


@dataclass
class DiagnoseOptions:
    """What the assistant asked for (the command's options, already checked)."""

    deadline_s: float = 10.0
    only: tuple[str, ...] = ()  # check ids or id prefixes ("reach" selects every reach.<name>)
    include_public_ip: bool = False
    long: bool = False  # long measurements (the NAT binding lifetime, issue 9)
    internet_speed: bool = True  # issue 9: the public speed test (never in tests)
    load: bool = True  # issue 9: the checks that load the link (speed.tunnel, bufferbloat)
    # NETSETUP_OFFLINE=1 (the test suite, the lab): the public speed test skips. Read when the
    # options are made, so a test that builds options directly is offline too.
    offline: bool = field(default_factory=offline_from_environment)
    voip_budget_s: float | None = None  # None: VOIP_BUDGET_S, or VOIP_LONG_BUDGET_S with --long
    load_budget_s: float | None = None  # None: LOAD_BUDGET_S (+ INTERNET_SPEED_S when it runs)

    @property
    def runs_internet_speed(self) -> bool:
        return self.internet_speed and self.load and not self.offline

    def phase_budget(self, phase: int) -> float:
        """Seconds phase `phase` may take: 0 is --deadline, 1 comes on top of it, 2 starts when
        the others are done."""
        if phase == 0:
            return self.deadline_s
        if phase == 1:
            if self.voip_budget_s is not None:
                return self.voip_budget_s
            return VOIP_LONG_BUDGET_S if self.long else VOIP_BUDGET_S
        if self.load_budget_s is not None:
            return self.load_budget_s
        base = LOAD_LONG_BUDGET_S if self.long else LOAD_BUDGET_S
        return base + (INTERNET_SPEED_S if self.runs_internet_speed else 0.0)

    def phases(self) -> list[dict[str, Any]]:
        """Each phase's name and budget, as the JSON envelope shows them."""
        return [
            {"phase": number, "name": name, "budget_s": self.phase_budget(number)}
            for number, name in PHASE_NAMES.items()
        ]


@dataclass
class DiagnoseContext:
    """Shared by all checks of one run. Checks read it; the engine fills `results`.

    `shared` caches facts several checks need (the tunnel's interface, the WireGuard state read
    once): `ctx.once(key, compute)` computes a fact once even when checks ask at the same time.
    """

    config: ClientConfig
    profile: Profile | None = None
    options: DiagnoseOptions = field(default_factory=DiagnoseOptions)
    clock: Clock = SYSTEM_CLOCK
    started_monotonic: float = field(default_factory=time.monotonic)
    results: dict[str, CheckResult] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    load_started: float | None = None  # when phase 2 began (time.monotonic()), None: not yet
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending: dict[str, threading.Event] = field(default_factory=dict, repr=False)

    @property
    def info(self) -> DiagnoseInfo:
        return self.config.info

    @property
    def deadline(self) -> float:
        """The global deadline as a time.monotonic() instant."""
        return self.started_monotonic + self.options.deadline_s

    def phase_deadline(self, phase: int) -> float:
        """When phase `phase` must end (time.monotonic()): phase 1 on top of the global
        deadline; phase 2 from when it began (or from now, when it has not yet)."""
        if phase <= 0:
            return self.deadline
        if phase == 1:
            return self.deadline + self.options.phase_budget(1)
        began = self.load_started if self.load_started is not None else time.monotonic()
        return began + self.options.phase_budget(2)

    def result(self, check_id: str) -> CheckResult | None:
        with self._lock:
            return self.results.get(check_id)

    def once(self, key: str, compute: Callable[[], T], wait_until: float | None = None) -> T:
        """`compute()` run once per run for `key`; concurrent callers wait for the first one
        (until `wait_until`, a time.monotonic() instant; default the global deadline: a VoIP or
        load check passes its own, later one). An exception is cached too (and raised to every
        caller)."""
        with self._lock:
            if key in self.shared:
                return self._cached(key)
            event = self._pending.get(key)
            owner = event is None
            if owner:
                event = self._pending[key] = threading.Event()
        assert event is not None
        if not owner:
            until = self.deadline if wait_until is None else wait_until
            event.wait(max(0.0, until - time.monotonic()))
            with self._lock:
                if key not in self.shared:
                    raise TimeoutError(f"{key} was not ready in time")
                return self._cached(key)
        try:
            value: Any = compute()
        except Exception as exc:  # cached and re-raised to every caller
            value = _Failed(exc)
        with self._lock:
            self.shared[key] = value
        event.set()
        return self._cached(key)

    def _cached(self, key: str) -> T:  # type: ignore[type-var]
        value = self.shared[key]
        if isinstance(value, _Failed):
            raise value.exc
        return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Failed:
    exc: Exception


@dataclass(frozen=True)
class CheckContext:
    """One check's view of the run: the shared context plus its own deadline."""

    run: DiagnoseContext
    deadline: float  # time.monotonic() instant: the earlier of the global one and the budget's

    @property
    def config(self) -> ClientConfig:
        return self.run.config

    @property
    def info(self) -> DiagnoseInfo:
        return self.run.config.info

    @property
    def profile(self) -> Profile | None:
        return self.run.profile

    @property
    def options(self) -> DiagnoseOptions:
        return self.run.options

    @property
    def clock(self) -> Clock:
        return self.run.clock

    def time_left(self, at_most: float | None = None) -> float:
        """Seconds left before this check must end (never negative), capped at `at_most`."""
        left = max(0.0, self.deadline - time.monotonic())
        return left if at_most is None else min(left, at_most)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def result(self, check_id: str) -> CheckResult | None:
        return self.run.result(check_id)

    def once(self, key: str, compute: Callable[[], T]) -> T:
        return self.run.once(key, compute, wait_until=self.deadline)
