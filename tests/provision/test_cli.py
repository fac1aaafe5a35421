"""CLI behaviour: help with examples, errors with file:line and exit 2, nothing written on error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.cli import _register, app


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args], capture_output=True, text=True, env=env
    )


def all_commands() -> list[str]:
    """Every leaf command, as the words one types after `netsetup`."""
    import typer.main

    _register()

    def leaves(prefix: str, command: object) -> list[str]:
        children = getattr(command, "commands", None)  # a group, in any Click/Typer version
        if children:
            out: list[str] = []
            for name, child in children.items():
                out.extend(leaves(f"{prefix} {name}".strip(), child))
            return out
        return [prefix]

    return leaves("", typer.main.get_command(app))


def test_every_command_is_documented_with_an_example() -> None:
    names = all_commands()
    assert {"provision", "revoke", "rotate", "renew", "list", "render"} <= set(names)
    for name in names:
        result = run(*name.split(), "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "Example" in result.stdout, f"`netsetup {name} --help` shows no example"


def test_provision_json_envelope(acme: Path, state_dir: Path) -> None:
    result = run("provision", str(acme), "maria", "--mode", "dedicated", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "netsetup.provision/1"
    assert document["peer"]["address_v4"] == "198.18.10.2"
    listed = json.loads(run("list", str(acme), "--json").stdout)
    assert listed["schema"] == "netsetup.list/1"
    assert [p["name"] for p in listed["peers"]] == ["maria"]


BROKEN = [
    (
        'endpoint = "vpn.acme-dental.example:51820"',
        'endpoint = "vpn.acme-dental.example:0"',
        10,
        "outside 1-65535",
    ),
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "198.18.10.1/24"', 16, "host bits"),
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "198.18.10.0/33"', 16, "not a valid CIDR"),
    ("keepalive = 25", "keep_alive = 25", 19, "did you mean 'keepalive'"),
    ('public_key = "', 'public_key = "AAAA', 11, "not a WireGuard key"),
    (
        'endpoint = "vpn.acme-dental.example:51820"',
        'endpoint = "2001:db8::1:51820"',
        10,
        "brackets",
    ),
    ('name = "Acme Dental Practice"', 'name = "Acme\\nPostUp = evil"', 6, "control"),
    ("[company]", "[company", 5, "TOML syntax"),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), BROKEN)
def test_bad_profile_is_rejected_with_file_and_line(
    acme: Path, state_dir: Path, old: str, new: str, line: int, message: str
) -> None:
    text = (acme / "profile.toml").read_text()
    assert old in text
    (acme / "profile.toml").write_text(text.replace(old, new, 1))
    result = run("provision", str(acme), "maria", "--mode", "dedicated")
    assert result.returncode == 2
    assert result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr
    assert f"profile.toml:{line})" in result.stderr, result.stderr
    assert not (acme / "peers").exists() or not any((acme / "peers").glob("*.toml"))
    assert not state_dir.exists() or not any(state_dir.rglob("*.conf"))


@pytest.mark.parametrize("name", ["Maria", "a" * 33, "", "a_b", "x/../y", "-", "a b"])
def test_hostile_names_are_refused(acme: Path, state_dir: Path, name: str) -> None:
    result = (
        run("provision", str(acme), "--mode", "dedicated", "--", name)
        if name.startswith("-")
        else run("provision", str(acme), name, "--mode", "dedicated")
    )
    assert result.returncode == 2
    assert "error: peer name" in result.stderr
    assert not (acme / "peers").exists() or not any((acme / "peers").glob("*.toml"))


def test_unknown_profile_and_mode(tmp_path: Path, acme: Path, state_dir: Path) -> None:
    result = run("provision", str(tmp_path / "nope"), "maria", "--mode", "dedicated")
    assert result.returncode == 2 and "error: no profile" in result.stderr
    result = run("provision", str(acme), "maria", "--mode", "boss")
    assert result.returncode == 2 and "'boss' is not one of 'dedicated', 'agency'" in result.stderr
    result = run("revoke", str(acme), "ghost")
    assert result.returncode == 2 and "no peer 'ghost'" in result.stderr


def test_render_redacts_on_stdout_and_writes_0600_file(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    assert run("provision", str(acme), "maria", "--mode", "dedicated").returncode == 0
    shown = run("render", str(acme))  # stdout is a pipe: a redacted file would be unusable
    assert shown.returncode == 2 and "--out FILE" in shown.stderr and shown.stdout == ""
    out = tmp_path / "gw" / "wg0.conf"
    written = run("render", str(acme), "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert "(redacted" not in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_secrets_never_go_into_a_folder_others_can_read(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    open_folder = tmp_path / "shared"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    result = run("provision", str(acme), "maria", "--mode", "dedicated", "--out", str(open_folder))
    assert result.returncode == 2
    assert "open to other users (mode 755)" in result.stderr and str(open_folder) in result.stderr
    assert list(open_folder.iterdir()) == []
    assert not (acme / "peers" / "maria.toml").exists()
    assert oct(open_folder.stat().st_mode & 0o777) == "0o755"  # never chmodded behind our back
    assert run("provision", str(acme), "maria", "--mode", "dedicated").returncode == 0
    result = run("render", str(acme), "--out", str(open_folder / "wg0.conf"))
    assert result.returncode == 2 and "open to other users" in result.stderr
    assert list(open_folder.iterdir()) == []
    new_folder = tmp_path / "new" / "handoff"
    assert run("render", str(acme), "--out", str(new_folder / "wg0.conf")).returncode == 0
    assert oct(new_folder.stat().st_mode & 0o777) == "0o700"
