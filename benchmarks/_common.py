"""Helpers shared by the benchmark scripts: side-by-side whole-process timing and reporting."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def netsetup_command() -> list[str]:
    found = shutil.which("netsetup")
    return [found] if found else [sys.executable, "-m", "netsetup"]


def precompile() -> None:
    """Byte-compile netsetup as `pip install` does for the tools it is compared with (an editable
    install under PYTHONDONTWRITEBYTECODE would otherwise compile every module on every run)."""
    import compileall

    compileall.compile_dir(REPO / "netsetup", quiet=1)


def time_process(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}\n{result.stderr.decode()}")
    return elapsed


def side_by_side(rounds: int, contenders: dict[str, Callable[[int], float]]) -> dict[str, float]:
    """Run each contender once per round, interleaved, and return the median of each (seconds).

    Interleaving makes both sides see the same machine noise, so the ratio is fair even when the
    absolute times wander.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        order = list(contenders.items())
        if round_ % 2:
            order.reverse()
        for name, run in order:
            samples[name].append(run(round_))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, ours: float, theirs: float, goal: str, unit: str = "ms") -> str:
    ratio = ours / theirs
    scale = 1000.0 if unit == "ms" else 1.0
    line = (
        f"{title:<58} {ours * scale:9.1f} {unit} vs {theirs * scale:9.1f} {unit}"
        f"  ratio {ratio:5.2f}x  (goal {goal})"
    )
    print(line, flush=True)
    return line
