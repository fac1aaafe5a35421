"""validate's errors read `error: <what> (<where>)`, never an exception's text; NS114 warns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import netsetup.validate
from netsetup.cli import main
from netsetup.errors import ExitCode
from tests.validate.validate_support import RULE_FIXTURES, materialize, run_cli, runtime_secret

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-06-01T00:00:00Z"
ERROR_FORM = re.compile(r"^error: [^\n]+ \(([^()\n]+)\)\n$")


run = run_cli


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("NETSETUP_DEBUG", raising=False)


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["validate", "missing"], "missing"),
        (["validate", "empty"], "empty"),
        (["validate", "empty", "missing"], "missing"),
        (["validate", "profiles", "--fail-on", "notice"], "--fail-on"),
        (["validate", "profiles", "--format", "xml"], "--format"),
        (["validate", "profiles", "--json", "--format", "text"], "--json, --format text"),
        (["validate", "profiles", "--now", "soon"], "--now 'soon'"),
        (["rule", "NS999"], "NS999"),
    ],
)
def test_errors_name_what_then_where(
    argv: list[str], where: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "empty").mkdir()
    materialize(REPO / "profiles", in_tmp / "profiles")
    code, out, err = run(argv, capsys)
    assert (code, out) == (ExitCode.USAGE, "")
    match = ERROR_FORM.match(err)
    assert match, err
    assert match.group(1) == where


def test_internal_error_shows_only_the_type(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = runtime_secret()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"could not read {secret}")

    monkeypatch.setattr(netsetup.validate, "validate", broken)
    code, out, err = run(["validate", "profiles"], capsys)
    assert (code, out) == (ExitCode.INTERNAL, "")  # a bug: neither "findings" nor bad input
    assert secret not in err
    assert err == (
        "error: internal error (RuntimeError); rerun with NETSETUP_DEBUG=1 for a traceback "
        "and report it\n"
    )
    monkeypatch.setenv("NETSETUP_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["validate", "profiles"])


def test_an_expired_peer_is_a_warning_by_default(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    materialize(RULE_FIXTURES / "NS114" / "fail", in_tmp / "profiles")
    code, out, _ = run(["validate", "profiles", "--now", NOW], capsys)
    assert code == ExitCode.OK  # the calendar alone does not turn CI red
    assert "NS114 [warning]" in out
    assert "netsetup render acme" in out and "netsetup revoke acme alice" in out
    assert "netsetup renew acme alice" in out
    code, _, _ = run(["validate", "profiles", "--now", NOW, "--fail-on", "warning"], capsys)
    assert code == ExitCode.FINDINGS
    code, out, _ = run(["rule", "NS114"], capsys)
    assert "(default severity: warning)" in out and "netsetup render" in out
