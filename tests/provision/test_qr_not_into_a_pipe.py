"""The terminal QR code is the client config, private key included: `provision --qr` and
`rotate --qr` draw it only on a terminal, as `show --qr` does; into a pipe or file (a CI log,
`| tee`, a redirect) it would be a secret written in plain sight. The PNG and SVG are still
written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

QR_BLOCKS = ("█", "▀", "▄")


@pytest.mark.parametrize("command", ["provision", "rotate"])
def test_no_qr_drawn_into_a_pipe(acme: Path, state_dir: Path, command: str) -> None:
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "netsetup", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    if command == "rotate":
        assert run("provision", str(acme), "maria", "--mode", "dedicated").returncode == 0
        result = run("rotate", str(acme), "maria", "--qr")
    else:
        result = run("provision", str(acme), "maria", "--mode", "dedicated", "--qr")
    assert result.returncode == 0, result.stderr
    drawn = [c for c in QR_BLOCKS if c in result.stdout + result.stderr]
    assert drawn == [], "the QR code (the private key) went into a pipe"
    assert "not a terminal" in result.stderr
    folder = state_dir / "acme-dental" / "clients" / "maria"
    assert (folder / "wg-acme.png").is_file() and (folder / "wg-acme.svg").is_file()
