"""`netsetup sweep`: peers whose access ended longer ago than a grace period leave the profile.

A peer's access ends when it expires or is revoked. Once `grace` has passed since then, the sweep
removes it from the profile: its peer file, its preshared keys and its client folder in the
admin's state folder. Its addresses are not freed early: while the profile's quarantine
(`network.quarantine_days` from the end of access) lasts, the peer file becomes a retired record
(`peers/<name>.revoked-<key tag>.toml`, as `provision --reuse-name` leaves one), which keeps
holding the addresses and frees the name; after it, the file is removed. Retired records whose
quarantine and grace have both passed are removed too.

Each peer is swept in steps that are each safe to stop after: an expired peer is first revoked
through the provisioning journal (its secrets removed, like `revoke`), then its file is renamed
aside or removed in one atomic step; a sweep stopped in the middle is finished by the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.errors import ConflictError
from netsetup.fsutil import remove_file, remove_tree, rename
from netsetup.keys import fingerprint
from netsetup.profile.model import Peer, Profile
from netsetup.profile.store import (
    RETIRED_RE,
    load_peer,
    parse_peer_file,
    peer_names,
    peer_path,
    peer_to_toml,
    retired_path,
)
from netsetup.profile.values import PeerName, ProfileId, format_duration, format_time
from netsetup.state import StateDir

DEFAULT_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class SweptPeer:
    """One peer the sweep removes (or removed): nothing secret."""

    name: str
    fingerprint: str
    state: str  # "expired", "revoked" or "retired" (an earlier retired record)
    ended: datetime  # when its access ended
    outcome: str  # "removed", or "retired": a record keeps its addresses until `held_until`
    held_until: datetime
    file: Path
    gateway: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "state": self.state,
            "ended": format_time(self.ended),
            "outcome": self.outcome,
            "addresses_held_until": format_time(self.held_until)
            if self.outcome == "retired"
            else None,
            "file": str(self.file),
            "gateway": self.gateway,
        }


@dataclass(frozen=True)
class SweepResult:
    """What `sweep` found and, unless a dry run, did."""

    profile: str
    grace: timedelta
    dry_run: bool
    swept: tuple[SweptPeer, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "grace": format_duration(self.grace),
            "dry_run": self.dry_run,
            "swept": [peer.as_dict() for peer in self.swept],
        }


def _ended(peer: Peer) -> datetime | None:
    """When the peer's access ended (None: it has not)."""
    if peer.status == "revoked":
        return peer.revoked or peer.created
    return peer.expires


def _candidate(
    profile: Profile, peer: Peer, path: Path, now: datetime, grace: timedelta, state: str
) -> SweptPeer | None:
    ended = _ended(peer)
    if ended is None or ended > now or ended + grace > now:
        return None
    held_until = ended + timedelta(days=profile.network.quarantine_days)
    if state == "retired" and held_until > now:
        return None  # still holding its addresses: that is what it is there for
    outcome = "removed" if held_until <= now else "retired"
    return SweptPeer(
        peer.name,
        fingerprint(peer.public_key),
        state,
        ended,
        outcome,
        held_until,
        path,
        peer.gateway,
    )


def find_sweepable(
    profile: Profile, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> list[SweptPeer]:
    """Every peer (and retired record) whose access ended more than `grace` before `now`."""
    found = []
    for stem in peer_names(profile):
        name = PeerName(stem, "peer file name")
        peer = load_peer(profile, name)
        if peer.state(now) == "active":
            continue
        swept = _candidate(
            profile, peer, peer_path(profile, name), now, grace, str(peer.state(now))
        )
        if swept is not None:
            found.append(swept)
    for path in _retired_records(profile):
        retired, _ = parse_peer_file(path)
        if retired is not None:
            swept = _candidate(profile, retired, path, now, grace, "retired")
            if swept is not None:
                found.append(swept)
    return found


def _retired_records(profile: Profile) -> list[Path]:
    try:
        names = sorted(os.listdir(profile.peers_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        profile.peers_dir / name
        for name in names
        if name.endswith(".toml") and RETIRED_RE.fullmatch(name[:-5])
    ]


def sweep(
    profile: Profile,
    *,
    state: StateDir,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> SweepResult:
    """Remove from `profile` every peer whose access ended more than `grace` ago (see the module
    docstring); with `dry_run` only list them. Holds the profile lock while it changes files."""
    from netsetup.provision.journal import recover
    from netsetup.provision.service import _lock, _prepare

    now = clock.now()
    pid = _prepare(profile, state)
    if dry_run:
        return SweepResult(profile.id, grace, True, tuple(find_sweepable(profile, now, grace)))
    with _lock(profile):
        recover(profile, pid, state)
        found = find_sweepable(profile, now, grace)
        for swept in found:
            _sweep_one(profile, pid, state, swept, now, grace)
    return SweepResult(profile.id, grace, False, tuple(found))


def _sweep_one(
    profile: Profile,
    pid: ProfileId,
    state: StateDir,
    swept: SweptPeer,
    now: datetime,
    grace: timedelta,
) -> None:
    name = PeerName(swept.name)
    if swept.state == "expired":
        _revoke_expired(profile, pid, state, name, swept.ended)
    if swept.state != "retired":
        # revoke removed these already; a peer revoked by hand-editing its file may still have them
        for psk in state.psk_files(pid, name):
            remove_file(psk)
        remove_tree(state.client_dir(pid, name))
    if swept.outcome == "removed":
        remove_file(swept.file)
    else:
        peer, _ = parse_peer_file(swept.file)
        assert peer is not None  # found by find_sweepable a moment ago, under the lock
        target = retired_path(profile, name, peer.public_key)
        if os.path.lexists(target):
            raise ConflictError(
                f"peer {name!r} has a retired record with the same key already; remove one of "
                "the two by hand",
                where=str(target),
            )
        rename(swept.file, target)
    state.audit(
        "sweep",
        now,
        profile=pid,
        peer=name,
        fingerprint=swept.fingerprint,
        state=swept.state,
        ended=format_time(swept.ended),
        outcome=swept.outcome,
        grace=format_duration(grace),
    )


def _revoke_expired(
    profile: Profile, pid: ProfileId, state: StateDir, name: PeerName, ended: datetime
) -> None:
    """An expired peer becomes revoked as of its expiry (its quarantine counts from the end of
    its access), its secrets destroyed: the journaled change `revoke` makes."""
    from netsetup.profile.store import write_peer_text
    from netsetup.provision.journal import Journal, begin, finish, text_hash, undo

    peer = replace(load_peer(profile, name), status="revoked", revoked=ended)
    text = peer_to_toml(peer)
    journal = Journal(name, text_hash(text))
    journal.remove.extend(str(p) for p in state.psk_files(pid, name))
    journal.remove.append(str(state.client_dir(pid, name)))
    path = begin(state, pid, journal)
    try:
        write_peer_text(profile, name, text)
    except BaseException:
        undo(path, journal, profile)
        raise
    finish(state, path, journal, profile)
