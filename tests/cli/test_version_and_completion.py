"""`netsetup --version` (fast: Typer is not even imported) and shell completion through Typer."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

import netsetup
from netsetup.cli import package_version

from .support import run_main, run_process


def test_version_prints_the_installed_version() -> None:
    result = run_process("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"netsetup {importlib.metadata.version('netsetup')}\n"
    assert result.stderr == ""


def test_version_imports_neither_typer_nor_a_command() -> None:
    probe = (
        "import sys\n"
        "from netsetup.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as done:\n"
        "    loaded = [m for m in sys.modules if m == 'typer' or m.startswith('netsetup.cli.')]\n"
        "    print(done.code, loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.endswith("0 []\n"), result.stdout


def test_version_is_in_help_and_works_after_typer_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and "--version" in out
    from typer.testing import CliRunner

    from netsetup.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"netsetup {package_version()}\n"


def test_version_falls_back_to_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert package_version() == netsetup.__version__


def test_completion_options_are_offered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    assert "--install-completion" in out and "--show-completion" in out
    script = run_process("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_NETSETUP_COMPLETE" in script.stdout and "complete " in script.stdout


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_NETSETUP_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        result = run_process(env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("netsetup ren") == ["renew", "render"]
    assert "--firewall" in complete("netsetup render acme --f")


def test_app_is_the_typer_application_whatever_was_imported_first() -> None:
    """`app` is imported lazily; importing the submodule netsetup.cli.app first must not turn
    `from netsetup.cli import app` into that module."""
    probe = (
        "import netsetup.cli.render, typer\n"
        "from netsetup.cli import app\n"
        "import netsetup.cli\n"
        "print(isinstance(app, typer.Typer), netsetup.cli.app is app)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "True True\n"
