"""Which process is the lab's: liveness and start times through psutil, and the `lab` marker on
every test that needs root for namespaces. No root needed."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from netsetup.lab.proc import pid_alive, pid_belongs, process_start_time

from .conftest import REPO
from .prereq import require_lab

WG_TESTS = "tests/provision/test_wg_accepts.py"


def test_start_time_identifies_a_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = process_start_time(child.pid)
        assert started == psutil.Process(child.pid).create_time() > 0
        assert pid_alive(child.pid)
        # not in the namespace named, so only the recorded start time makes it the lab's
        assert pid_belongs(child.pid, "nl000000-office", started)
        assert not pid_belongs(child.pid, "nl000000-office", started - 1.0)  # a reused pid
    finally:
        child.kill()
        child.wait()
    assert process_start_time(child.pid) == 0.0
    assert not pid_alive(child.pid)


def test_an_exited_child_is_gone_not_a_zombie() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        pass  # exited, not yet reaped
    assert not pid_alive(child.pid)  # and reaped on the way
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(child.pid).status()


def test_namespace_tests_outside_tests_lab_are_marked_lab() -> None:
    """`-m "not lab"` leaves out every test that makes network namespaces."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not lab", WG_TESTS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "2 deselected" in collected.stdout, collected.stdout + collected.stderr


def test_wireguard_tests_skip_without_root_unless_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wg_programs = ("wg", "wg-quick", "wireguard-go", "ip")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("NETSETUP_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not root"):
        require_lab(wg_programs)
    monkeypatch.setenv("NETSETUP_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="NETSETUP_REQUIRE_LAB=1 but the lab needs"):
        require_lab(wg_programs)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="missing no-such-program"):
        require_lab((*wg_programs, "no-such-program"))
