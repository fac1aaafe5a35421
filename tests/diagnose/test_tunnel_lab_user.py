"""The parts of `run_diagnose(user=...)` that need no lab: the sources' hash, the user's copy of
the config, which old venvs go."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest

from netsetup.lab import diagnose as labdiag


def test_the_hash_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "netsetup").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    module = tmp_path / "netsetup" / "a.py"
    module.write_text("A = 1\n")
    first = labdiag.sources_hash(tmp_path)
    (tmp_path / "netsetup" / "__pycache__").mkdir()
    (tmp_path / "netsetup" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert labdiag.sources_hash(tmp_path) == first  # bytecode is not a source
    module.write_text("A = 2\n")
    assert labdiag.sources_hash(tmp_path) != first


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_the_users_copy_is_theirs_alone_and_removed_after(tmp_path: Path) -> None:
    source = tmp_path / "wg-acme.conf"
    source.write_text("[Interface]\n")
    nobody = pwd.getpwnam("nobody")
    with labdiag.config_for(nobody, source) as copied:
        assert copied.read_text() == "[Interface]\n"
        for path, mode in ((copied, 0o600), (copied.parent, 0o700)):
            info = path.stat()
            assert (info.st_uid, info.st_mode & 0o777) == (nobody.pw_uid, mode)
    assert not copied.parent.exists()


def test_root_is_refused_as_the_unprivileged_user() -> None:
    from netsetup.errors import InputError

    with pytest.raises(InputError, match="unprivileged"):
        labdiag.ensure_user("root")
    with pytest.raises(InputError, match="no user"):
        labdiag.ensure_user("no-such-user-here")


def test_old_venvs_go_the_recent_ones_stay(tmp_path: Path) -> None:
    now = time.time()
    ages = {"keep": 0, "a": 60, "b": 120, "c": 2 * 3600, "d": 3 * 3600, "e": 30 * 86400}
    for name, age in ages.items():
        marker = tmp_path / f"venv-{name}" / ".complete"
        marker.parent.mkdir()
        marker.write_text("")
        os.utime(marker, (now - age, now - age))
    labdiag._remove_stale(tmp_path, keep=tmp_path / "venv-keep")
    left = sorted(p.name for p in tmp_path.glob("venv-*"))
    # the newest two others stay (with the one in use: three); older ones unused for an hour go
    assert left == ["venv-a", "venv-b", "venv-keep"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_copy_left_by_a_dead_run_is_removed_by_the_next(tmp_path: Path) -> None:
    """A run killed before its cleanup (SIGKILL, a runner's SIGTERM) leaves the user's copy of
    the config, private key included; the next run removes it, not a live run's copy."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"netsetup-diagnose-{gone.pid}-abc"
    live = tmp_path / f"netsetup-diagnose-{os.getppid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "wg-acme.conf").write_text("[Interface]\nPrivateKey = ...\n")
    source = tmp_path / "wg-acme.conf"
    source.write_text("[Interface]\n")
    with labdiag.config_for(pwd.getpwnam("nobody"), source, base=tmp_path) as copied:
        assert copied.parent.name.startswith(f"netsetup-diagnose-{os.getpid()}-")
    assert not dead.exists() and live.exists()
    assert not copied.parent.exists()
