"""netsetup's own folders below the state folder (<profile>/, psk/, clients/<peer>/, pending/) are
forced to 0700 and filled with secrets. A link among them would send both elsewhere: the secrets
into whatever folder it names, and the chmod onto that folder (a link to /etc made it 0700)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir


@pytest.mark.parametrize("link", ["acme-dental", "acme-dental/psk", "acme-dental/clients/maria"])
def test_a_link_in_the_state_folder_is_refused(
    acme: Path, state_dir: Path, tmp_path: Path, link: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    outside.chmod(0o755)
    state_dir.mkdir(mode=0o700)
    at = state_dir / link
    for folder in reversed(at.parents):
        if state_dir in folder.parents and not folder.exists():
            folder.mkdir(mode=0o700)
    at.symlink_to(outside)
    with pytest.raises(InputError) as caught:
        service.provision(
            load_profile(acme), PeerName("maria"), "dedicated", state=StateDir(state_dir)
        )
    assert caught.value.where == str(at)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert list(outside.iterdir()) == []
    assert not (acme / "peers" / "maria.toml").exists()
