"""Running `netsetup` the way people do: in-process through main(), or as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from netsetup.cli import main
from netsetup.cli.app import Streams


def run_main(
    argv: list[str], capsys: pytest.CaptureFixture[str], *, terminal: bool | None = None
) -> tuple[int, str, str]:
    """main() in-process; with `terminal` set, stdout/stderr are injected (a faked terminal or
    pipe) instead of the process's own."""
    streams = None if terminal is None else Streams(io.StringIO(), io.StringIO(), terminal)
    with pytest.raises(SystemExit) as exited:
        main(argv, streams=streams)
    out, err = capsys.readouterr()
    if streams is not None:
        out += streams.stdout.getvalue()  # type: ignore[attr-defined]
        err += streams.stderr.getvalue()  # type: ignore[attr-defined]
    return int(exited.value.code or 0), out, err


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m netsetup ARGS` with stdout and stderr on pipes (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def error_document(stdout: str) -> dict[str, Any]:
    document = json.loads(stdout)
    assert document["schema"] == "netsetup.error/1", document
    assert set(document["error"]) == {"what", "where", "exit_code"}, document
    error: dict[str, Any] = document["error"]
    return error
