"""Helpers shared by the benchmark scripts: side-by-side whole-process timing and goals."""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def console_script(name: str) -> list[str] | None:
    """The console script `pip install` made for `name`, beside this interpreter.

    Found there first, not on $PATH: a version manager's shim on $PATH (pyenv's is a bash script
    that runs `pyenv exec`) adds 100 ms or more to every run of either tool and belongs to
    neither, so it would push every ratio towards 1."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return [str(beside)]
    found = shutil.which(name)
    return [found] if found else None


def netsetup_command() -> list[str]:
    return console_script("netsetup") or [sys.executable, "-m", "netsetup"]


def precompile() -> None:
    """Byte-compile netsetup as `pip install` does for the tools it is compared with (an editable
    install under PYTHONDONTWRITEBYTECODE would otherwise compile every module on every run)."""
    import compileall

    compileall.compile_dir(REPO / "netsetup", quiet=1)


# What time_process measures: "wall" (as the user waits) or "cpu" (user + system time of the
# child, which other work on a shared machine disturbs far less than wall time).
CLOCK = "wall"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_process(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    start, start_cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(argv, capture_output=True, env=env)
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - start_cpu
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}\n{result.stderr.decode()}")
    return cpu if CLOCK == "cpu" else elapsed


def side_by_side(rounds: int, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
    """Run each contender once per round, interleaved, and return the median of each (seconds).

    Interleaving makes every side see the same machine noise, so the ratio is fair even when the
    absolute times wander; the order turns every round so that no side always runs first.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for round_ in range(rounds):
        shift = round_ % len(order)
        for name, run in order[shift:] + order[:shift]:
            samples[name].append(run(round_))
    return {name: statistics.median(values) for name, values in samples.items()}


@dataclass(frozen=True)
class Goal:
    """`ours / theirs` must stay at most `at_most` (times) or at least `at_least` (rates)."""

    at_most: float | None = None
    at_least: float | None = None

    @property
    def informative(self) -> bool:
        return self.at_most is None and self.at_least is None

    def met(self, ratio: float) -> bool:
        if self.at_most is not None and ratio > self.at_most:
            return False
        return self.at_least is None or ratio >= self.at_least

    def __str__(self) -> str:
        if self.informative:
            return "none: for context"
        return f"<= {self.at_most}x" if self.at_most is not None else f">= {self.at_least}x"


class Report:
    """Prints one line per comparison and remembers the goals missed, for the exit status."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def compare(
        self, title: str, ours: float, theirs: float, goal: Goal, unit: str = "ms"
    ) -> float:
        ratio = ours / theirs
        if unit == "ms":
            figures = f"{ours * 1000:9.1f} ms vs {theirs * 1000:9.1f} ms"
        else:
            figures = f"{ours:9.0f}{unit} vs {theirs:9.0f}{unit}"
        verdict = "" if goal.informative else "ok" if goal.met(ratio) else "GOAL MISSED"
        print(f"{title:<58} {figures}  ratio {ratio:5.2f}x  (goal {goal})  {verdict}", flush=True)
        if not goal.met(ratio):
            self.missed.append(f"{title}: {ratio:.2f}x, goal {goal}")
        return ratio

    def finish(self) -> None:
        """Exit 1 with one `goal missed:` line per miss, else say that every goal was met."""
        for line in self.missed:
            print(f"goal missed: {line}", flush=True)
        if self.missed:
            raise SystemExit(1)
        print("every goal met", flush=True)
