"""Issue 4, what must hold 5: nothing of a lab survives `down`, a failed `up`, or Ctrl-C.

This module runs last (file order); by then every other module's lab fixture has torn down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netsetup.lab import Lab, LabError, services
from netsetup.lab.lab import run_base

from .conftest import ACME, REPO, lab_leftovers, lab_prefixes, require_lab

pytestmark = pytest.mark.lab


def test_failed_up_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    require_lab()
    real = services.kamailio_service

    def broken(*args: object, **kwargs: object) -> services.Service:
        service = real(*args, **kwargs)  # type: ignore[arg-type]
        service.argv = ["kamailio", "-f", "/nonexistent/kamailio.cfg", "-DD", "-E"]
        return service

    monkeypatch.setattr(services, "kamailio_service", broken)
    lab = Lab.create(ACME)
    with pytest.raises(LabError, match="kamailio"):
        lab.up()
    assert not lab.run_dir.exists()
    assert not [x for x in lab_leftovers() if lab.prefix in x]


def test_ctrl_c_during_up_removes_what_it_built() -> None:
    require_lab()
    before = set(run_base().glob("netsetup-lab-*"))
    labs_before = lab_prefixes()
    process = subprocess.Popen(
        [sys.executable, "-m", "netsetup", "lab", "up", "--profile", str(ACME)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # interrupt once the lab has namespaces and its first services
    deadline = time.monotonic() + 20
    interrupted = False
    while time.monotonic() < deadline and process.poll() is None:
        new = set(run_base().glob("netsetup-lab-*")) - before
        if any((d / "services").is_dir() for d in new):
            os.kill(process.pid, signal.SIGINT)
            interrupted = True
            break
        time.sleep(0.01)
    _, err = process.communicate(timeout=60)
    assert interrupted, "lab up finished before it could be interrupted"
    assert process.returncode == 130, err  # ExitCode.INTERRUPTED
    new = lab_prefixes() - labs_before
    assert new == set(), [x for x in lab_leftovers() if any(p in x for p in new)]


def test_a_recorded_pid_reused_by_another_process_is_left_alone() -> None:
    """lab.json names a pid that now belongs to an unrelated process in the host namespace:
    `status` does not call it running and `down` does not signal it (it still removes the lab)."""
    require_lab()
    lab = Lab.create(ACME).up()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        real = lab.record.services["files"].pid
        lab.record.services["files"].pid = bystander.pid
        lab.save()
        loaded = Lab.load(lab.prefix)
        assert loaded.status().services["files"].running is False
        assert loaded.status().services["sshd"].running is True
        problems = loaded.down()
        assert problems == []
        time.sleep(0.2)
        assert bystander.poll() is None, "down killed a process that is not the lab's"
        assert not [x for x in lab_leftovers() if lab.prefix in x]
        assert not Path(f"/proc/{real}").exists() or f"netsetup-lab-{lab.prefix}" not in (
            Path(f"/proc/{real}/cmdline").read_text(errors="replace")
        )
    finally:
        bystander.kill()
        bystander.wait()
        lab.down()


def test_down_of_a_lab_whose_record_is_gone() -> None:
    require_lab()
    lab = Lab.create(ACME).up()
    (lab.run_dir / "lab.json").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "netsetup", "lab", "down", "--all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert lab.prefix in result.stdout
    assert lab_leftovers() == []


def test_no_lab_is_left_after_the_suite() -> None:
    require_lab()
    assert lab_leftovers() == []
    assert not (run_base() / "netsetup-lab.created-dirs").exists()
