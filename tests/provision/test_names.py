"""Every command that takes a peer name checks it before it reads or writes anything.

`netsetup revoke acme-dental ../peers/maria` used to report success, leave maria's secrets and
index entry, and write the hostile name to the audit log; `rotate` with a long `../../..` name
deleted a folder outside the profile. Here every hostile name is refused with exit 2, the whole
profile and state trees stay byte for byte as they were, and the audit log gets no line.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import InputError, NotFoundError
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir
from tests.provision.support import audit_lines, changed, netsetup, snapshot

AT = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))

HOSTILE = [
    "../x",
    "a/b",
    "-x",
    "..",
    ".",
    "../peers/maria",
    "/".join([".."] * 12) + "/victim",
    "maria/../../../..",
    "a" * 33,
    "a" * 4096,
    "maría",
    "\uff4daria",  # a fullwidth m
    "maria\u200b",
    "Maria",
    "ma ria",
    "maria\n",
    "",
]
NUL = ["maria\x00", "\x00", "../\x00x"]


@pytest.fixture
def provisioned(acme: Path, state_dir: Path, tmp_path: Path) -> Path:
    """acme with maria (active) and a folder beside it that a climbing name could reach."""
    profile = load_profile(acme)
    service.provision(profile, PeerName("maria"), "dedicated", state=StateDir(), clock=AT)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("not netsetup's\n")
    return acme


def _commands(name: str, acme: Path) -> list[list[str]]:
    # `--` so that a name starting with '-' reaches the command as a name
    return [
        ["provision", str(acme), "--mode", "dedicated", "--", name],
        ["revoke", str(acme), "--", name],
        ["rotate", str(acme), "--", name],
        ["renew", str(acme), "--expires", "10d", "--", name],
    ]


# one name of each kind through the CLI (a process per command); the library gets them all
CLI_NAMES = ["../peers/maria", "a/b", "-x", "..", "/".join([".."] * 12) + "/victim", "ma\u00efa"]


@pytest.mark.parametrize("name", CLI_NAMES)
def test_the_cli_refuses_a_hostile_name_and_changes_nothing(
    provisioned: Path, state_dir: Path, tmp_path: Path, name: str
) -> None:
    before = snapshot(tmp_path)
    audit = audit_lines(state_dir)
    for args in _commands(name, provisioned):
        result = netsetup(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: peer name"), result.stderr
        assert "Traceback" not in result.stderr
        assert changed(before, snapshot(tmp_path)) == [], args
        assert audit_lines(state_dir) == audit


@pytest.mark.parametrize("name", HOSTILE + NUL)
def test_the_library_refuses_a_hostile_name_and_changes_nothing(
    provisioned: Path, state_dir: Path, tmp_path: Path, name: str
) -> None:
    profile = load_profile(provisioned)
    state = StateDir()
    before = snapshot(tmp_path)
    audit = audit_lines(state_dir)
    calls = [
        lambda: service.provision(profile, name, "dedicated", state=state, clock=AT),  # type: ignore[arg-type]
        lambda: service.revoke(profile, name, state=state, clock=AT),  # type: ignore[arg-type]
        lambda: service.rotate(profile, name, state=state, clock=AT),  # type: ignore[arg-type]
        lambda: service.renew(profile, name, "10d", state=state, clock=AT),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InputError, match="peer name"):
            call()
        assert changed(before, snapshot(tmp_path)) == []
        assert audit_lines(state_dir) == audit


@pytest.mark.parametrize("name", HOSTILE + NUL)
def test_state_paths_take_only_checked_names(state_dir: Path, name: str) -> None:
    """The state folder's path builders check again: a plain str cannot slip through."""
    state = StateDir()
    key = "x" * 43 + "="
    builders = [
        lambda: state.psk_path("acme-dental", name, key),  # type: ignore[arg-type]
        lambda: state.client_dir("acme-dental", name),  # type: ignore[arg-type]
        lambda: state.delete_psk("acme-dental", name),  # type: ignore[arg-type]
        lambda: state.delete_client_dir("acme-dental", name),  # type: ignore[arg-type]
        lambda: state.journal_path("acme-dental", name),  # type: ignore[arg-type]
        lambda: state.client_dir(name, "maria"),  # type: ignore[arg-type]
    ]
    for build in builders:
        with pytest.raises(ValueError, match="must be 1-32 characters"):
            build()
    assert not state_dir.exists()


def test_a_missing_peer_is_not_found_with_its_path(
    provisioned: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(provisioned)
    state = StateDir()
    before = snapshot(tmp_path)
    audit = audit_lines(state_dir)
    ghost = PeerName("ghost")
    for call in (
        lambda: service.revoke(profile, ghost, state=state, clock=AT),
        lambda: service.rotate(profile, ghost, state=state, clock=AT),
        lambda: service.renew(profile, ghost, "10d", state=state, clock=AT),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.where is not None
        assert caught.value.where.endswith(os.path.join("peers", "ghost.toml"))
    for args in (
        ["revoke", str(provisioned), "ghost"],
        ["rotate", str(provisioned), "ghost"],
        ["renew", str(provisioned), "ghost", "--expires", "3d"],
    ):
        result = netsetup(*args)
        assert result.returncode == 2 and "no peer 'ghost'" in result.stderr
        assert "ghost.toml" in result.stderr
    assert changed(before, snapshot(tmp_path)) == []
    assert audit_lines(state_dir) == audit
