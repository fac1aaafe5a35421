"""The CI integration files: the pre-commit hook run for real through `pre-commit try-repo`, and
the GitHub Action's own scripts run step by step (GitHub's runner aside) on a broken and a clean
profiles folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BROKEN_MTU = "mtu = 13800"


def profiles_folder(target: Path, *, broken: bool) -> Path:
    """The shipped example profiles; broken: one MTU out of range (an NS009 on a known line)."""
    shutil.copytree(REPO / "profiles", target / "profiles", ignore=shutil.ignore_patterns("peers"))
    if broken:
        path = target / "profiles" / "acme-dental" / "profile.toml"
        path.write_text(path.read_text().replace("mtu = 1380", BROKEN_MTU, 1))
    return target / "profiles"


def broken_line() -> int:
    text = (REPO / "profiles" / "acme-dental" / "profile.toml").read_text()
    return text[: text.index("mtu = 1380")].count("\n") + 1


def netsetup_on_path(tmp: Path) -> dict[str, str]:
    """An environment whose `netsetup` is this checkout's code, whatever else is installed."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "netsetup"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m netsetup "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "NETSETUP_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    return env


# --- the GitHub Action -------------------------------------------------------------------------


def action() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "action.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def step(name: str) -> dict[str, Any]:
    found = [s for s in action()["runs"]["steps"] if s.get("name") == name]
    assert len(found) == 1, name
    return found[0]


def expand(value: str, outputs: dict[str, str]) -> str:
    """`${{ inputs.x }}` with the input's default and `${{ steps.validate.outputs.x }}`."""
    inputs = {name: spec.get("default", "") for name, spec in action()["inputs"].items()}

    def one(match: re.Match[str]) -> str:
        ref = match.group(1).strip()
        if ref.startswith("inputs."):
            return str(inputs[ref.removeprefix("inputs.")])
        if ref.startswith("steps.validate.outputs."):
            return outputs.get(ref.removeprefix("steps.validate.outputs."), "")
        raise AssertionError(f"unexpected expression {ref}")

    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def run_step(
    name: str, cwd: Path, env: dict[str, str], output: Path
) -> subprocess.CompletedProcess[str]:
    spec = step(name)
    assert spec["shell"] == "bash"
    assert "${{" not in spec["run"], "inputs reach a script through env only"
    step_env = {**env, "GITHUB_OUTPUT": str(output)}
    step_env.update({k: expand(str(v), {}) for k, v in spec.get("env", {}).items()})
    # GitHub runs `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", spec["run"]],
        cwd=cwd,
        env=step_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def outputs_of(output: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)


def condition(name: str, outputs: dict[str, str]) -> bool:
    """Evaluate the `if:` expressions this action uses: `a == 'b'` joined by &&, || and ()."""
    inputs = {name: spec.get("default", "") for name, spec in action()["inputs"].items()}
    text = step(name)["if"].strip().removeprefix("${{").removesuffix("}}")
    text = re.sub(r"inputs\.([\w-]+)", lambda m: repr(str(inputs[m.group(1)])), text)
    text = re.sub(
        r"steps\.validate\.outputs\.(\w+)", lambda m: repr(outputs.get(m.group(1), "")), text
    )
    text = re.sub(r"'([^']*)'\s*==\s*'([^']*)'", lambda m: str(m.group(1) == m.group(2)), text)
    text = text.replace("&&", " and ").replace("||", " or ")
    assert re.fullmatch(r"[\s()]*(?:(?:True|False|and|or)[\s()]*)*", text), text
    return bool(eval(text, {"__builtins__": {}}))  # only True, False, and, or, parentheses


def test_action_is_composite_and_uploads_with_codeql() -> None:
    spec = action()
    assert spec["runs"]["using"] == "composite"
    upload = step("Upload SARIF to code scanning")
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}"
    assert "--format sarif" in step("Validate (SARIF)")["run"]
    assert "$GITHUB_ACTION_PATH" in step("Install netsetup")["run"]


@pytest.mark.parametrize("broken", [True, False], ids=["broken", "clean"])
def test_action_scripts_report_upload_and_fail_as_they_should(broken: bool, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    profiles_folder(workspace, broken=broken)
    env = netsetup_on_path(tmp_path)
    output = tmp_path / "github_output"
    output.touch()

    validated = run_step("Validate (SARIF)", workspace, env, output)
    outputs = outputs_of(output)
    assert validated.returncode == 0, validated.stderr  # findings fail the job later, not here
    assert outputs["status"] == ("1" if broken else "0")
    sarif = json.loads((workspace / "netsetup-validate.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert condition("Upload SARIF to code scanning", outputs)  # uploaded either way

    if broken:
        assert [
            (r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"])
            for r in results
        ] == [("NS009", broken_line())]
        assert condition("Fail on findings", outputs)
        failed = run_step("Fail on findings", workspace, env, output)
        assert failed.returncode == 1
        assert "::error file=profiles/acme-dental/profile.toml" in failed.stdout
    else:
        assert results == []
        assert not condition("Fail on findings", outputs)


def test_action_stops_without_upload_when_validate_cannot_run(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()  # no profiles/ at all: not findings but an error, nothing to upload
    output = tmp_path / "github_output"
    output.touch()
    validated = run_step("Validate (SARIF)", workspace, netsetup_on_path(tmp_path), output)
    outputs = outputs_of(output)
    assert outputs["status"] not in ("0", "1")
    assert validated.returncode == int(outputs["status"])
    assert "::error" in validated.stdout
    assert not condition("Upload SARIF to code scanning", outputs)
    assert not condition("Fail on findings", outputs)


# --- the pre-commit hook -----------------------------------------------------------------------


def test_hook_manifest() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "netsetup-validate")
    assert hook["language"] == "python"
    assert hook["entry"] == "netsetup validate"
    assert hook["pass_filenames"] is False and re.match(hook["files"], "profiles/acme/profile.toml")


def git(*args: str, cwd: Path) -> None:
    # a fixed author and date: the same content is the same commit
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "netsetup tests",
        "GIT_AUTHOR_EMAIL": "tests@netsetup.example",
        "GIT_COMMITTER_NAME": "netsetup tests",
        "GIT_COMMITTER_EMAIL": "tests@netsetup.example",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as it is now (uncommitted work included), as one commit of its own."""
    if shutil.which("pre-commit") is None or shutil.which("git") is None:
        pytest.fail("pre-commit and git are needed (pip install -e '.[dev]' installs pre-commit)")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    snapshot = tmp_path_factory.mktemp("hook-repo")
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, snapshot / name)
    git("init", "-q", cwd=snapshot)
    git("add", "-A", cwd=snapshot)
    git("commit", "-q", "-m", "snapshot", cwd=snapshot)
    return snapshot


def try_repo(hook_repo: Path, workspace: Path) -> subprocess.CompletedProcess[str]:
    git("init", "-q", cwd=workspace)
    git("add", "-A", cwd=workspace)
    git("commit", "-q", "-m", "profiles", cwd=workspace)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "NETSETUP_"))}
    env.pop("PYTHONPATH", None)  # the hook runs netsetup from its own environment
    # try-repo builds a new environment every time (a temporary store): let it see the packages
    # already installed here, so pip installs only netsetup itself (a minute less, and no
    # download). netsetup goes into the hook's environment, which comes first on its path.
    env["VIRTUALENV_SYSTEM_SITE_PACKAGES"] = "1"
    # and nothing from the network (tests reach no host outside the machine): no package index,
    # and the build uses the setuptools and wheel installed here (the dev extras) instead of
    # fetching them. pip reads PIP_NO_BUILD_ISOLATION inverted: "0" means --no-build-isolation.
    env["PIP_NO_INDEX"] = "1"
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    env["VIRTUALENV_NO_PERIODIC_UPDATE"] = "1"  # virtualenv would look for newer seed wheels
    return subprocess.run(
        ["pre-commit", "try-repo", str(hook_repo), "netsetup-validate", "--all-files"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("broken", [True, False], ids=["broken", "clean"])
def test_pre_commit_hook_in_a_profiles_repository(
    broken: bool, hook_repo: Path, tmp_path: Path
) -> None:
    """pre-commit builds the hook's environment (pip installs this checkout into a new virtualenv),
    then runs the hook on the whole profiles/ folder: about 20 s a run."""
    profiles_folder(tmp_path, broken=broken)
    result = try_repo(hook_repo, tmp_path)
    output = result.stdout + result.stderr
    if broken:
        assert result.returncode == 1, output
        assert f"profiles/acme-dental/profile.toml:{broken_line()}:1: NS009" in output
        assert "Failed" in output
    else:
        assert result.returncode == 0, output
        assert "Passed" in output
