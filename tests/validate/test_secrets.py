"""NS201 finds a secret wherever it hides, never shows it, and cannot be silenced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsetup.cli import main
from netsetup.errors import ExitCode
from netsetup.validate import validate
from tests.validate.validate_support import NOW, RULE_FIXTURES, materialize, runtime_secret

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("text", "json", "sarif", "junit", "github")
PRIVATE = "Private" + "Key"  # built at runtime, like the secrets, so no file reads as a leak


def ns201(in_tmp: Path) -> list[tuple[str, int, int]]:
    report = validate([Path("profiles")], now=NOW)
    return [(f.path, f.line, f.column) for f in report.findings if f.code == "NS201"]


@pytest.fixture
def shipped(in_tmp: Path) -> Path:
    return materialize(REPO / "profiles", in_tmp / "profiles")


def test_hidden_folders_are_scanned(shipped: Path, in_tmp: Path) -> None:
    for folder in (shipped / ".backup", shipped / "acme-dental" / ".handoff"):
        folder.mkdir()
        (folder / "wg.conf").write_text(f"[Interface]\n{PRIVATE} = {runtime_secret()}\n")
    assert ns201(in_tmp) == [
        ("profiles/.backup/wg.conf", 2, 1),
        ("profiles/acme-dental/.handoff/wg.conf", 2, 1),
    ]


def test_git_and_netsetup_own_files_are_not_read(shipped: Path, in_tmp: Path) -> None:
    before = validate([Path("profiles")], now=NOW).files
    (shipped / ".git" / "objects").mkdir(parents=True)
    (shipped / ".git" / "objects" / "packed").write_text("binary history\n")
    peers = shipped / "acme-dental" / "peers"
    peers.mkdir(exist_ok=True)
    (peers / ".index.json").write_text('{"version": 4}\n')
    (peers / ".lock").write_text("")
    assert validate([Path("profiles")], now=NOW).files == before
    (peers / ".notes").write_text("a dotfile in peers/ is read\n")
    assert validate([Path("profiles")], now=NOW).files == before + 1


@pytest.mark.parametrize(
    "relative",
    [
        "acme-dental/private.key",
        "acme-dental/gw.key",
        "acme-dental/psk/maria.1a2b3c4d5e6f7a8b.psk",
        "acme-dental/.handoff/presharedkey",
        "acme-dental/gateway/privatekey",
        "acme-dental/wg0.priv",
        "acme-dental/old.private",
        "secrets.txt",
    ],
)
def test_bare_key_files_are_found(relative: str, shipped: Path, in_tmp: Path) -> None:
    path = shipped / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(runtime_secret() + "\n")
    assert ns201(in_tmp) == [(f"profiles/{relative}", 1, 1)]


def test_public_keys_in_key_files_are_not_secrets(shipped: Path, in_tmp: Path) -> None:
    gateway = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    text = (shipped / "acme-dental" / "profile.toml").read_text()
    public = next(line.split('"')[1] for line in text.splitlines() if line.startswith("public_key"))
    (shipped / "acme-dental" / "gw.key").write_text(public + "\n")  # the gateway's own public key
    (shipped / "acme-dental" / "public.key").write_text(runtime_secret() + "\n")
    (shipped / "acme-dental" / "gw.pub").write_text(gateway + "\n")
    (shipped / "acme-dental" / "notes.md").write_text(f"our laptop key {runtime_secret()}\n")
    (shipped / "acme-dental" / "private.key").write_text("<kept by the assistant>\n")
    assert ns201(in_tmp) == []


def test_secret_names() -> None:
    from netsetup.validate.rules.leaks import secret_file_kind

    assert secret_file_kind("maria.1a2b3c4d5e6f7a8b.psk") == "preshared"
    assert secret_file_kind("private.key") == "private"
    assert secret_file_kind("gw.KEY") == "private"
    assert secret_file_kind("PresharedKey") == "preshared"
    assert secret_file_kind("secret.txt") == "private"
    assert secret_file_kind("public.key") is None
    assert secret_file_kind("wg0.conf") is None
    assert secret_file_kind("alice.toml") is None


def test_a_peer_named_like_a_secret_is_not_a_key_file(in_tmp: Path) -> None:
    """Peer files hold a public key and are checked by the schema, whatever their name."""
    tree = materialize(RULE_FIXTURES / "NS201" / "pass", in_tmp / "profiles")
    assert (tree / "acme" / "peers" / "secretary.toml").is_file()
    assert validate([Path("profiles")], now=NOW).findings == []


def test_an_ignore_cannot_hide_a_secret(shipped: Path, in_tmp: Path) -> None:
    leak = shipped / "acme-dental" / "client.conf"
    leak.write_text(
        "[Interface]  # netsetup: ignore[NS201] header\n"
        f"{PRIVATE} = {runtime_secret()}  # netsetup: ignore[NS201] it is only a test key\n"
    )
    report = validate([Path("profiles")], now=NOW)
    found = [(f.line, f.code, f.message) for f in report.findings]
    assert [(line, code) for line, code, _ in found] == [(1, "NS010"), (2, "NS201"), (2, "NS010")]
    assert all(
        "NS201 secret-in-profiles cannot be ignored" in m for _, c, m in found if c != "NS201"
    )
    assert report.failed


def test_an_ignore_of_ns201_is_reported_even_without_a_secret(shipped: Path, in_tmp: Path) -> None:
    profile = shipped / "acme-dental" / "profile.toml"
    text = profile.read_text()
    line = text.splitlines().index("[company]") + 1
    profile.write_text(text.replace("[company]", "[company]  # netsetup: ignore[NS201]"))
    report = validate([Path("profiles")], now=NOW)
    assert [(f.code, f.line) for f in report.findings] == [("NS010", line)]
    assert "cannot be ignored" in report.findings[0].message


def test_no_secret_in_any_output(
    shipped: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    secrets = [runtime_secret() for _ in range(4)]
    (shipped / ".backup").mkdir()
    (shipped / ".backup" / "wg.conf").write_text(f"{PRIVATE} = {secrets[0]}\n")
    (shipped / "acme-dental" / "private.key").write_text(secrets[1] + "\n")
    (shipped / "acme-dental" / "maria.0011223344556677.psk").write_text(secrets[2])
    (shipped / "acme-dental" / "c.conf").write_text(
        f"{PRIVATE} = {secrets[3]}  # netsetup: ignore[NS201] {secrets[3][:8]}\n"
    )
    for fmt in FORMATS:
        with pytest.raises(SystemExit) as exited:
            main(["validate", "profiles", "--format", fmt])
        out, err = capsys.readouterr()
        assert exited.value.code == ExitCode.FINDINGS
        assert not any(secret in out + err for secret in secrets)
        assert not any(secret[:20] in out + err for secret in secrets)
    with pytest.raises(SystemExit):
        main(["validate", "profiles", "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert sum(f["code"] == "NS201" for f in findings) == 4
