"""Edges an audit found: stale caches, shared and committed folders, overflowing dates, failed
writes. Each test reproduces what went wrong before the fix."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import InputError
from netsetup.keys import key_error
from netsetup.profile import store
from netsetup.profile.store import load_peer, load_profile
from netsetup.provision import service
from netsetup.state import StateDir

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = FixedClock(NOW)  # never advanced: tests that move time make their own clock


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args], capture_output=True, text=True, cwd=cwd
    )


def test_a_peer_file_changed_by_a_merge_is_read_again(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    for name in ("bob", "carol"):
        service.provision(profile, name, "dedicated", state=state, clock=AT)
    carol = acme / "peers" / "carol.toml"
    assert '"198.18.10.3"' in carol.read_text()
    # a merge or checkout replaces the file (git writes a new file, it never edits in place)
    merged = carol.with_name("carol.merge")
    merged.write_text(carol.read_text().replace('"198.18.10.3"', '"198.18.10.4"'))
    merged.replace(carol)
    dave = service.provision(profile, "dave", "dedicated", state=state, clock=AT)
    assert dave.peer.address_v4 == "198.18.10.3"  # not .4, which carol holds now


def test_a_shared_out_folder_never_loses_another_assistants_key(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "handoff"
    first = run("provision", str(acme), "ann", "--mode", "dedicated", "--out", str(out))
    assert first.returncode == 0, first.stderr
    ann_config = (out / "wg-acme.conf").read_text()
    second = run("provision", str(acme), "ben", "--mode", "dedicated", "--out", str(out))
    assert second.returncode == 2
    assert "belongs to another assistant" in second.stderr
    assert (out / "wg-acme.conf").read_text() == ann_config
    assert not (acme / "peers" / "ben.toml").exists()
    assert not list((state_dir / "acme-dental" / "psk").glob("ben.*"))
    # the same assistant's own config may be replaced (rotate)
    assert run("rotate", str(acme), "ann", "--out", str(out)).returncode == 0


def test_secrets_never_go_under_profiles(acme: Path, state_dir: Path) -> None:
    inside = acme / "handoff"
    result = run("provision", str(acme), "leak", "--mode", "dedicated", "--out", str(inside))
    assert result.returncode == 2 and "never go under the profiles folder" in result.stderr
    assert not inside.exists() and not (acme / "peers" / "leak.toml").exists()
    sibling = acme.parent / "exports"
    assert (
        run("provision", str(acme), "leak", "--mode", "dedicated", "--out", str(sibling)).returncode
        == 2
    )
    assert run("provision", str(acme), "ok", "--mode", "dedicated").returncode == 0
    result = run("render", str(acme), "--out", str(acme / "wg0.conf"))
    assert result.returncode == 2 and not (acme / "wg0.conf").exists()


@pytest.mark.parametrize(
    "expires", ["9999-12-31T23:59:59-05:00", "9999-12-31", "9998-12-31T23:59:59-05:00"]
)
def test_far_future_expiry_is_a_clear_error(acme: Path, state_dir: Path, expires: str) -> None:
    result = run("provision", str(acme), "y", "--mode", "dedicated", "--expires", expires)
    assert result.returncode == 2
    assert result.stderr.startswith("error: expiry") and "internal" not in result.stderr
    assert not state_dir.exists() or not [p for p in state_dir.rglob("*") if p.is_file()]


def test_a_failed_commit_takes_its_secrets_back(
    acme: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load_profile(acme)

    def disk_full(*_: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service, "write_peer_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        service.provision(profile, "y", "dedicated", state=StateDir(), clock=AT)
    leftovers = [p for p in state_dir.rglob("*") if p.is_file() and p.suffix in (".psk", ".conf")]
    assert leftovers == []
    assert not (acme / "peers" / "y.toml").exists()
    monkeypatch.setattr(service, "write_peer_text", store.write_peer_text)
    assert service.provision(profile, "y", "dedicated", state=StateDir(), clock=AT).config.exists()


def test_rotating_into_another_folder_removes_the_old_private_key(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    first = service.provision(profile, "a", "dedicated", state=state, clock=AT)
    service.rotate(profile, "a", state=state, out_dir=tmp_path / "new", clock=AT)
    assert not first.config.exists()
    assert load_peer(profile, "a").rotated == NOW


def test_non_canonical_key_gets_an_honest_message() -> None:
    assert key_error("MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHJ=") == (
        "not canonical base64: its last character before '=' is not what wg writes"
    )
    assert key_error("AAAA") == "decodes to 3 bytes, a WireGuard key is 32"


@pytest.mark.parametrize(
    ("old", "new"), [("198.18.10.0/24", "198.18.10.0/32"), ("198.18.10.0/24", "198.18.10.0/31")]
)
def test_a_tunnel_without_room_for_peers_is_refused(
    acme: Path, state_dir: Path, old: str, new: str
) -> None:
    text = (acme / "profile.toml").read_text()
    (acme / "profile.toml").write_text(text.replace(old, new))
    result = run("provision", str(acme), "x", "--mode", "dedicated")
    assert result.returncode == 2 and "leaves no address for peers" in result.stderr


def test_provision_from_inside_the_profile_folder(acme: Path, state_dir: Path) -> None:
    result = run("provision", ".", "x", "--mode", "dedicated", cwd=acme)
    assert result.returncode == 0, result.stderr
    assert (acme / "peers" / "x.toml").exists()


def test_an_open_state_folder_is_refused_not_chmodded(
    acme: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_state = tmp_path / "open-state"
    open_state.mkdir()
    open_state.chmod(0o755)
    monkeypatch.setenv("NETSETUP_STATE_DIR", str(open_state))
    with pytest.raises(InputError, match="open to other users"):
        service.provision(load_profile(acme), "x", "dedicated", state=StateDir(), clock=AT)
    assert oct(open_state.stat().st_mode & 0o777) == "0o755"
    assert list(open_state.iterdir()) == []


def test_a_name_starting_with_a_dash_is_refused(acme: Path, state_dir: Path) -> None:
    # '-x' would read as an option in `netsetup revoke acme-dental -x`
    with pytest.raises(InputError, match="not starting with '-'"):
        service.provision(load_profile(acme), "-x", "dedicated", state=StateDir(), clock=AT)
    assert not (acme / "peers").exists() or not list((acme / "peers").glob("*.toml"))


def test_a_dotted_unknown_key_is_reported_on_its_own_line(acme: Path, state_dir: Path) -> None:
    text = (acme / "profile.toml").read_text()
    lines = text.splitlines()
    at = lines.index("mtu = 1380") + 1
    lines.insert(at, "dummy.x = 1")
    (acme / "profile.toml").write_text("\n".join(lines) + "\n")
    result = run("provision", str(acme), "x", "--mode", "dedicated")
    assert result.returncode == 2 and "unknown key 'dummy'" in result.stderr
    assert f"profile.toml:{at + 1})" in result.stderr
