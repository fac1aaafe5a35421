"""A few end-to-end runs of `netsetup validate` and `netsetup rule` through the real entry point."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from netsetup.errors import ExitCode
from tests.validate.validate_support import BROKEN, materialize, run_cli, runtime_secret

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = "2026-06-01T00:00:00Z"


run = run_cli


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """validate is offline: any name lookup or connection is a bug."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def test_shipped_profiles_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", str(REPO / "profiles")], capsys)
    assert code == ExitCode.OK
    assert out.startswith("no findings (2 profiles")


def test_findings_exit_1_and_json_matches_golden(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    materialize(BROKEN, in_tmp / "profiles")
    code, out, _ = run(["validate", "profiles", "--json", "--now", NOW], capsys)
    assert code == ExitCode.FINDINGS
    assert out == (GOLDEN / "broken.json").read_text()


def test_github_format_is_automatic_in_actions(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    materialize(BROKEN, in_tmp / "profiles")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run(["validate", "profiles", "--now", NOW], capsys)
    assert code == ExitCode.FINDINGS
    assert out == (GOLDEN / "broken.github.txt").read_text()
    code, out, _ = run(["validate", "profiles", "--now", NOW, "--format", "text"], capsys)
    assert out == (GOLDEN / "broken.txt").read_text()


def test_fail_on_decides_the_exit_status(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    materialize(REPO / "tests/validate/fixtures/rules/NS110/fail", in_tmp / "profiles")
    assert run(["validate", "profiles"], capsys)[0] == ExitCode.OK  # a warning only
    assert run(["validate", "profiles", "--fail-on", "warning"], capsys)[0] == ExitCode.FINDINGS
    code, _, err = run(["validate", "profiles", "--fail-on", "notice"], capsys)
    assert code == ExitCode.USAGE and err.endswith("(--fail-on)\n")


def test_no_profile_is_a_usage_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "empty").mkdir()
    code, out, err = run(["validate", "empty"], capsys)
    assert (code, out) == (ExitCode.USAGE, "")
    assert err.startswith("error: no profile found")
    code, _, err = run(["validate", "missing"], capsys)
    assert code == ExitCode.USAGE and err == "error: no such file or directory (missing)\n"


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate", str(REPO / "profiles"), "--format", "xml"], capsys)
    assert code == ExitCode.USAGE and "unknown format 'xml'" in err


def test_secrets_never_printed(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    materialize(REPO / "profiles", in_tmp / "profiles")
    secret = runtime_secret()
    # Every spelling the scan must catch, built at runtime so the repository never contains them.
    names = ["Private" + "Key", "Preshared" + "Key", "private_key", "preshared_key"]
    leak = "\n".join(f"{name} = {secret}" for name in names) + "\n"
    (in_tmp / "profiles" / "acme-dental" / "client.conf").write_text(leak)
    (in_tmp / "profiles" / "acme-dental" / "notes.json").write_text(
        json.dumps({"private_key": secret})
    )
    for fmt in ("text", "json", "sarif", "junit", "github"):
        code, out, err = run(["validate", "profiles", "--format", fmt], capsys)
        assert code == ExitCode.FINDINGS
        assert secret not in out + err
    code, out, _ = run(["validate", "profiles", "--json"], capsys)
    found = [(f["path"], f["line"]) for f in json.loads(out)["findings"] if f["code"] == "NS201"]
    assert found == [
        ("profiles/acme-dental/client.conf", 1),
        ("profiles/acme-dental/client.conf", 2),
        ("profiles/acme-dental/client.conf", 3),
        ("profiles/acme-dental/client.conf", 4),
        ("profiles/acme-dental/notes.json", 1),
    ]


def test_rule_explains_a_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["rule", "NS105"], capsys)
    assert code == ExitCode.OK
    assert out.startswith("NS105 allowedips-identical (default severity: error)")
    assert "Fails:" in out and "Passes:" in out
    assert run(["rule", "allowedips-nested"], capsys)[1].startswith("NS106 ")
    code, out, _ = run(["rule"], capsys)
    assert code == ExitCode.OK and "NS201  secret-in-profiles" in out
    code, _, err = run(["rule", "NS999"], capsys)
    assert code == ExitCode.USAGE and err.startswith("error: no such rule") and "(NS999)" in err
    code, out, _ = run(["rule", "NS201", "--json"], capsys)
    assert json.loads(out)["schema"] == "netsetup.rule/1"


@pytest.mark.parametrize("command", ["validate", "rule"])
def test_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == ExitCode.OK
    assert "Example:" in out and f"netsetup {command}" in out
