"""A FIFO named like a peer file (`peers/x.toml`) blocks a plain open() for reading until some
writer comes, which is never: every command that reads peer files must report it and go on (list)
or stop with an error naming it (provision, show), never wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}
    try:
        return subprocess.run(
            [sys.executable, "-m", "netsetup", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`netsetup {' '.join(args)}` waited on the FIFO")


@pytest.fixture
def fifo(acme: Path) -> Path:
    (acme / "peers").mkdir()
    path = acme / "peers" / "pipe.toml"
    os.mkfifo(path)
    return path


def test_list_reports_a_fifo_and_lists_the_rest(fifo: Path, acme: Path, state_dir: Path) -> None:
    result = _run("list", str(acme.parent), state_dir=state_dir)
    assert result.returncode == 2, result.stderr  # an incomplete list
    assert str(fifo) in result.stderr or "peers/pipe.toml" in result.stderr
    assert "could not be read" in result.stdout


def test_provision_does_not_wait_on_a_fifo(fifo: Path, acme: Path, state_dir: Path) -> None:
    """Like a broken peer file, a FIFO may hide an address: provision stops at once (it does not
    wait for a writer), names the file and writes nothing."""
    result = _run("provision", str(acme), "maria", "--mode", "dedicated", state_dir=state_dir)
    assert result.returncode == 2, result.stderr
    assert "peers/pipe.toml:1" in result.stderr and "nothing was written" in result.stderr
    assert not (acme / "peers" / "maria.toml").exists()


def test_show_of_the_fifo_is_an_error(fifo: Path, acme: Path, state_dir: Path) -> None:
    result = _run("show", str(acme), "pipe", state_dir=state_dir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "pipe.toml" in result.stderr


def test_a_peer_file_that_is_no_file_is_not_called_missing(acme: Path, state_dir: Path) -> None:
    """`provision maria` over a folder peers/maria.toml said "no peer 'maria'" (about the peer
    it was asked to create); `show` of a FIFO said the same. Both name what is in the way."""
    (acme / "peers").mkdir()
    (acme / "peers" / "maria.toml").mkdir()
    os.mkfifo(acme / "peers" / "pipe.toml")
    made = _run("provision", str(acme), "maria", "--mode", "dedicated", state_dir=state_dir)
    shown = _run("show", str(acme), "pipe", state_dir=state_dir)
    for result in (made, shown):
        assert result.returncode == 2, result.stderr
        assert "no peer" not in result.stderr and "not a regular file" in result.stderr
