"""`--client-pubkey` refuses a key another profile beside this one already holds (a peer's or its
gateway's): validate fails such a tree (NS203: one key pair in two companies means revoking the
assistant at one leaves them in at the other), so provision must not make it."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.errors import ConflictError
from netsetup.keys import generate_keypair
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir
from tests.provision.support import snapshot


def test_a_key_of_another_profile_is_refused(profiles_dir: Path, state_dir: Path) -> None:
    other = load_profile(profiles_dir / "brightdesk-agency")
    key = generate_keypair().public
    service.provision(other, PeerName("ana"), "agency", state=StateDir(), client_pubkey=key)
    acme = load_profile(profiles_dir / "acme-dental")
    service.provision(acme, PeerName("first"), "dedicated", state=StateDir())
    for taken in (key, other.gateway.public_key):
        before = snapshot(profiles_dir, state_dir)
        with pytest.raises(ConflictError) as caught:
            service.provision(
                acme, PeerName("maria"), "dedicated", state=StateDir(), client_pubkey=taken
            )
        assert "brightdesk-agency" in str(caught.value.where)
        assert snapshot(profiles_dir, state_dir) == before
