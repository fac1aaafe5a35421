"""Exit codes from one place (main): 2 bad input, 4 the environment, 70 a bug; and under --json
the error as a `netsetup.error/1` document on stdout besides the `error:` line on stderr."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netsetup.cli
import netsetup.profile.store
from netsetup.errors import EnvironmentProblem, ExitCode

from .support import error_document, run_main, run_process

SECRET_LOOKING = "cGxlYXNlIGRvIG5vdCBwcmludCBtZQ"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETSETUP_DEBUG", raising=False)


def test_exit_codes_are_the_designed_ones() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 70, 130]
    assert ExitCode.ENVIRONMENT == 4 and ExitCode.INTERNAL == 70
    assert EnvironmentProblem("x").exit_code == ExitCode.ENVIRONMENT


def test_one_error_path_no_fail_helper() -> None:
    """Commands raise; only main() prints errors and picks the exit status."""
    assert not hasattr(sys.modules["netsetup.cli.app"], "fail")
    cli_dir = Path(netsetup.cli.__file__).parent
    for module in cli_dir.glob("*.py"):
        text = module.read_text()
        assert not re.search(r"(?<![\w.])fail\(", text), module
        if module.name != "__init__.py":
            assert "except Exception" not in text, f"a second error handler in {module.name}"


def test_state_dir_that_is_a_file_is_the_environment(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir.write_text("a file where the state folder should be\n")
    code, out, err = run_main(["provision", str(acme), "maria", "--mode", "dedicated"], capsys)
    assert code == 4, err  # ExitCode.ENVIRONMENT
    assert err == f"error: not a folder: a file is in the way ({state_dir})\n"
    assert out == ""
    assert not (acme / "peers" / "maria.toml").exists()


def test_state_dir_below_a_file_is_the_environment_not_a_bug(
    acme: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("NETSETUP_STATE_DIR", str(blocker / "state"))
    code, _, err = run_main(["provision", str(acme), "maria", "--mode", "dedicated"], capsys)
    assert code == 4, err  # ExitCode.ENVIRONMENT
    assert err.startswith("error: not a directory: a part of the path is a file"), err
    assert err.endswith(f"({blocker / 'state'})\n")
    assert "internal error" not in err
    assert not (acme / "peers" / "maria.toml").exists()


def test_render_out_onto_a_folder_is_the_environment(
    acme: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["provision", str(acme), "maria", "--mode", "dedicated"], capsys)[0] == 0
    folder = tmp_path / "out" / "wg0.conf"
    folder.mkdir(parents=True, mode=0o700)
    (tmp_path / "out").chmod(0o700)
    code, _, err = run_main(["render", str(acme), "--out", str(folder)], capsys)
    assert code == 4, err  # ExitCode.ENVIRONMENT
    assert err == (f"error: is a directory: a folder is in the way; give a file name ({folder})\n")
    assert list(folder.iterdir()) == [] and [p.name for p in folder.parent.iterdir()] == [
        "wg0.conf"
    ]  # no temporary file left behind


def _read_only_mount_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs root and unshare --mount")
def test_read_only_out_folder_is_the_environment(
    acme: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real read-only file system: a tmpfs mounted ro in a mount namespace of this test only
    (root ignores permission bits, not a read-only mount)."""
    assert run_main(["provision", str(acme), "maria", "--mode", "dedicated"], capsys)[0] == 0
    mount = tmp_path / "ro"
    mount.mkdir()
    script = 'mount -t tmpfs -o ro,mode=700 tmpfs "$1" && shift && "$@"; echo "exit=$?" >&2'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]

    def in_read_only(*args: str) -> subprocess.CompletedProcess[str]:
        netsetup = [sys.executable, "-m", "netsetup", *args]
        return subprocess.run(
            [*unshare, str(mount), *netsetup], capture_output=True, text=True, timeout=120
        )

    rendered = in_read_only("render", str(acme), "--out", str(mount / "wg0.conf"))
    assert rendered.stderr.endswith("exit=4\n"), rendered.stderr
    assert f"error: read-only file system: choose a writable path ({mount / 'wg0.conf'})" in (
        rendered.stderr
    )
    provisioned = in_read_only(
        "provision",
        str(acme),
        "ines",
        "--mode",
        "dedicated",
        "--out",
        str(mount / "ines"),
        "--json",
    )
    assert provisioned.stderr.endswith("exit=4\n"), provisioned.stderr
    assert "error: read-only file system" in provisioned.stderr
    assert error_document(provisioned.stdout)["exit_code"] == 4
    assert not (acme / "peers" / "ines.toml").exists()
    assert list(mount.iterdir()) == []  # the mount is gone with its namespace


def test_a_bug_is_exit_70_and_shows_only_its_type(
    acme: Path,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError(f"while holding {SECRET_LOOKING}")

    monkeypatch.setattr(netsetup.profile.store, "load_profile", broken)
    code, out, err = run_main(["revoke", str(acme), "maria", "--json"], capsys)
    assert code == 70  # ExitCode.INTERNAL
    line = (
        "error: internal error (KeyError); rerun with NETSETUP_DEBUG=1 for a traceback and "
        "report it"
    )
    assert err == line + "\n"
    assert SECRET_LOOKING not in out + err
    assert error_document(out)["exit_code"] == 70
    monkeypatch.setenv("NETSETUP_DEBUG", "1")
    with pytest.raises(KeyError):
        netsetup.cli.main(["revoke", str(acme), "maria"])


def test_json_error_for_bad_input_inside_the_core(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        ["provision", str(acme), "maria", "--mode", "agency", "--expires", "2001-01-01", "--json"],
        capsys,
    )
    assert code == ExitCode.USAGE
    error = error_document(out)
    assert error["exit_code"] == 2
    assert "in the past" in error["what"]
    assert err == f"error: {error['what']}\n"
    assert not (acme / "peers" / "maria.toml").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "no-such-profile", "--json"],
        ["revoke", "no-such-profile", "maria", "--json"],
        ["renew", "no-such-profile", "maria", "--expires", "3d", "--json"],
        ["rotate", "no-such-profile", "maria", "--json"],
        ["provision", "no-such-profile", "maria", "--mode", "dedicated", "--json"],
    ],
)
def test_json_error_for_a_profile_not_found(
    argv: list[str], tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chdir(tmp_path)
    code, out, err = run_main(argv, capsys)
    assert code == ExitCode.USAGE
    error = error_document(out)
    assert error["what"].startswith("no profile 'no-such-profile'")
    assert error["exit_code"] == 2
    assert err.startswith("error: no profile 'no-such-profile'")


def test_json_error_for_the_environment(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir.write_text("")
    code, out, err = run_main(
        ["provision", str(acme), "maria", "--mode", "dedicated", "--json"], capsys
    )
    assert code == 4  # ExitCode.ENVIRONMENT
    assert error_document(out) == {
        "what": "not a folder: a file is in the way",
        "where": str(state_dir),
        "exit_code": 4,
    }
    assert err == f"error: not a folder: a file is in the way ({state_dir})\n"


def test_json_error_for_validate_format_json_and_for_click_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chdir(tmp_path)
    for argv in (
        ["validate", "missing", "--format", "json"],
        ["validate", "missing", "-f", "json"],
    ):
        code, out, err = run_main(argv, capsys)
        assert code == ExitCode.USAGE, err
        assert error_document(out)["where"] == "missing"
    code, out, err = run_main(["provision", "acme", "maria", "--mode", "boss", "--json"], capsys)
    assert code == ExitCode.USAGE
    error = error_document(out)
    assert "'boss' is not one of" in error["what"] and error["where"] == "--mode"
    assert "Usage: netsetup provision" in err  # Click's own usage text stays on stderr


def test_no_json_error_without_json_or_when_formats_disagree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chdir(tmp_path)
    assert run_main(["list", "no-such-profile"], capsys)[1] == ""
    code, out, err = run_main(["validate", "x", "--json", "--format", "text"], capsys)
    assert (code, out) == (ExitCode.USAGE, "") and "disagree" in err


def test_json_detection_stops_at_double_dash() -> None:
    from netsetup.cli import _wants_json

    assert _wants_json(["lab", "status", "--json"])
    assert _wants_json(["validate", "p", "--format=json"])
    assert not _wants_json(["lab", "exec", "home", "--", "tool", "--json"])
    assert not _wants_json(["validate", "p", "--format", "sarif"])


def test_json_errors_through_the_real_entry_point(tmp_path: Path) -> None:
    result = run_process("list", str(tmp_path / "nowhere"), "--json")
    assert result.returncode == 2
    assert error_document(result.stdout)["exit_code"] == 2
    assert result.stderr.startswith("error: no profile")


def test_a_missing_tool_is_the_environment() -> None:
    try:
        subprocess.run(["netsetup-test-no-such-tool", "--version"], check=False)
    except FileNotFoundError as exc:
        problem = EnvironmentProblem.from_os_error(exc)
    assert problem.exit_code == 4
    assert str(problem) == (
        "program not found: install it or put it on PATH (netsetup-test-no-such-tool)"
    )
    try:
        Path("/nonexistent-netsetup-test/file").read_text()
    except FileNotFoundError as exc:
        assert str(EnvironmentProblem.from_os_error(exc)) == (
            "no such file or directory (/nonexistent-netsetup-test/file)"
        )


def test_a_missing_argument_is_named_as_the_usage_line_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`show acme-dental --json` lacks PEER (so its usage line says); the envelope said 'name',
    the Python parameter's name, which appears nowhere the user can see."""
    code, out, _ = run_main(["show", "acme-dental", "--json"], capsys)
    assert code == 2
    assert error_document(out)["where"] == "PEER"
