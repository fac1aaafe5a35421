"""A file name may hold a line break or an escape sequence (a peer file committed as
"x\\n::error file=README.md::fake.toml"). Every line netsetup prints names it with those characters
escaped, so one finding or error stays one line: a raw break would start a new line that CI reads
as its own (GitHub takes `::error ...` on stdout as a workflow command, whatever the format), and
an escape sequence would drive the terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_PROFILES

NASTY = "nl\n::error file=README.md,line=1::injected\x1b[2J\u2028.toml"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    profiles = tmp_path / "profiles"
    shutil.copytree(EXAMPLE_PROFILES / "acme-dental", profiles / "acme-dental")
    (profiles / "acme-dental" / "peers").mkdir(exist_ok=True)
    (profiles / "acme-dental" / "peers" / NASTY).write_text('name = "x"\n')
    return profiles


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env["NETSETUP_STATE_DIR"] = str(cwd / "state")
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "profiles", "--format", "text"),
        ("validate", "profiles", "--format", "junit"),
        ("list", "profiles"),
        ("list", "profiles/acme-dental", "--json"),
    ],
)
def test_a_file_name_never_breaks_a_line(tree: Path, args: tuple[str, ...]) -> None:
    result = _run(*args, cwd=tree.parent)
    assert result.returncode in (1, 2), result.stderr
    both = result.stdout + result.stderr
    assert "injected" in both  # the file is named
    lines = both.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("::error file=README")]
    assert "\x1b" not in both and "\u2028" not in both
