"""Shared helpers of the validate tests: fixture trees under tmp_path, markers, a fixed clock.

A plain module rather than conftest.py, so that test modules can import it by name.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.validate import Report, validate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
RULE_FIXTURES = FIXTURES / "rules"
BROKEN = FIXTURES / "broken"
SECRET_PLACEHOLDER = "@SECRET_KEY@"
_MARK = re.compile(r"# <- ((?:NS\d{3}[ \t]*)+)")

Marker = tuple[str, int, str]  # path, line, code


def runtime_secret() -> str:
    """A key-shaped secret made now, so that no real-looking secret is ever stored in the repo."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def materialize(source: Path, target: Path) -> Path:
    """Copy a fixture tree to `target`, filling in secrets generated at runtime."""
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text()
            if SECRET_PLACEHOLDER in text:
                path.write_text(text.replace(SECRET_PLACEHOLDER, runtime_secret()))
    return target


def markers(root: Path, prefix: str) -> set[Marker]:
    """Every `# <- NSxxx` marker in a tree: where a finding is expected."""
    found: set[Marker] = set()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = f"{prefix}/{path.relative_to(root).as_posix()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = _MARK.search(line)
            if match:
                found.update((relative, number, code) for code in match.group(1).split())
    return found


def located(report: Report) -> set[Marker]:
    return {(f.path, f.line, f.code) for f in report.findings}


def run_fixture(source: Path, where: Path) -> tuple[Report, set[Marker]]:
    materialize(source, where / "profiles")
    report = validate([Path("profiles")], now=NOW)
    return report, markers(where / "profiles", "profiles")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `netsetup` in-process; return (exit code, stdout, stderr)."""
    from netsetup.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err
