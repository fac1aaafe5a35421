"""Links inside a profile are committed like any file (git stores symlinks): a `peers` folder or a
`peers/.lock` that is a link must not make a command write outside the profile folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir


def test_a_linked_peers_folder_is_refused(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (acme / "peers").symlink_to(elsewhere)
    with pytest.raises(InputError) as caught:
        service.provision(
            load_profile(acme), PeerName("maria"), "dedicated", state=StateDir(state_dir)
        )
    assert caught.value.where == str(acme / "peers")
    assert list(elsewhere.iterdir()) == []
    assert not state_dir.exists() or not list(state_dir.rglob("*.psk"))


def test_a_linked_lock_file_creates_nothing(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "created-through-the-link"
    (acme / "peers").mkdir()
    (acme / "peers" / ".lock").symlink_to(target)
    with pytest.raises(InputError) as caught:
        service.provision(
            load_profile(acme), PeerName("maria"), "dedicated", state=StateDir(state_dir)
        )
    assert caught.value.where == str(acme / "peers" / ".lock")
    assert not target.exists()
    assert not (acme / "peers" / "maria.toml").exists()
