"""Shared fixtures: profile trees under tmp_path and a private state directory per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PROFILES = REPO / "profiles"

# Nothing in the suite reaches the internet: diagnose's public speed test (speed.internet) skips
# in every test, and in every process a test starts (they inherit the environment).
os.environ["NETSETUP_OFFLINE"] = "1"


def lab_required() -> bool:
    return os.environ.get("NETSETUP_REQUIRE_LAB") == "1"


def need_root(reason: str) -> None:
    """Skip without root, unless NETSETUP_REQUIRE_LAB=1 makes a missing prerequisite a failure."""
    if os.geteuid() != 0:
        if lab_required():
            pytest.fail(f"NETSETUP_REQUIRE_LAB=1 but not root: {reason}")
        pytest.skip(f"needs root: {reason}")


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    target = tmp_path / "profiles"
    shutil.copytree(EXAMPLE_PROFILES, target, ignore=shutil.ignore_patterns("peers"))
    return target


@pytest.fixture
def acme(profiles_dir: Path) -> Path:
    return profiles_dir / "acme-dental"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "state"
    monkeypatch.setenv("NETSETUP_STATE_DIR", str(path))
    monkeypatch.setenv("NETSETUP_ACTOR", "tester@example")
    yield path


@pytest.fixture(autouse=True)
def _umask_and_sighup_kept() -> Iterator[None]:
    """A test must leave the process as it found it: the gateway agent's `main()` (run in-process
    by its tests) sets umask 0o077 and ignores SIGHUP, as the program should. Left behind, every
    later file of the run, lab overlays and the unprivileged venv included, was unreadable for
    any user but root, and only the tests with a non-root user failed, far from the cause."""
    import signal

    umask = os.umask(0o022)
    os.umask(umask)
    hangup = signal.getsignal(signal.SIGHUP)
    yield
    left = os.umask(umask)
    changed_hangup = signal.getsignal(signal.SIGHUP) != hangup
    signal.signal(signal.SIGHUP, hangup)
    assert left == umask, f"the test left the process umask at {left:o} (was {umask:o})"
    assert not changed_hangup, "the test left SIGHUP handled differently"
