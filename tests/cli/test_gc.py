"""A command runs without the cyclic garbage collector, and main() gives it back as it found it."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.support import run_main


def _inside_command() -> bool:
    """Whether the code that started this collection runs inside main()'s `_run` (the command)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_run" and code.co_filename.endswith("netsetup/cli/__init__.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def test_no_cycle_collection_runs_during_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    during: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and _inside_command():
            during.append(info["generation"])

    threshold = gc.get_threshold()
    gc.collect()  # nothing pending from earlier tests
    gc.set_threshold(1)  # with the collector on, about every new object would start a round
    gc.callbacks.append(note)
    try:
        code, out, _ = run_main(["--help"], capsys)  # builds every command: many new objects
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*threshold)
    assert code == 0 and "provision" in out
    assert during == []


@pytest.mark.parametrize("enabled", [True, False])
def test_main_restores_the_collector(enabled: bool, capsys: pytest.CaptureFixture[str]) -> None:
    (gc.enable if enabled else gc.disable)()
    try:
        code, _, err = run_main(["validate", "no-such-profile-anywhere"], capsys)
        assert code != 0 and err.startswith("error: ")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_no_cycle_collection_at_exit(tmp_path: Path) -> None:
    """The interpreter's last walk over every object, at exit, is skipped too."""
    script = tmp_path / "run.py"
    script.write_text(
        "import gc, sys\n"
        "from netsetup.cli import main\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and print('collection'))\n"
        "main(['--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "provision" in result.stdout
    assert "collection" not in result.stdout
