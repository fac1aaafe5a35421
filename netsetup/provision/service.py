"""Provision, revoke, rotate and renew peers. Every change holds the profile lock, is written
down first (netsetup.provision.journal) and has one commit point, the atomic write of the peer
file: a failure before it takes every write back, a crash before it is undone by the next command
on the profile, and anything after it (staged client files put in place, stale secrets removed,
the audit line) is finished by the next command if a crash interrupts it.

Names are checked `PeerName` values before anything is read or written, and the time comes from
the injected clock, read once per command.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.errors import ConflictError, InputError
from netsetup.fsutil import ensure_dir, locked, private_dir, rename, write_secret
from netsetup.keys import (
    SecretKey,
    fingerprint,
    generate_keypair,
    generate_preshared_key,
    key_error,
)
from netsetup.profile.model import MODES, Peer, Profile
from netsetup.profile.store import (
    PROFILE_FILE,
    load_peer,
    load_peers,
    peer_path,
    peer_site,
    peer_to_toml,
    profile_site,
    read_regular_bytes,
    retired_path,
    write_peer_text,
)
from netsetup.profile.values import PeerName, ProfileId, format_time, parse_expiry
from netsetup.provision.addresses import AddressIndex, allocate_address, holding_for
from netsetup.provision.client_config import (
    qr_images,
    render_client_config,
    responder_key,
    terminal_qr,
)
from netsetup.provision.journal import (
    Journal,
    begin,
    finish,
    missing_dirs,
    recover,
    staged,
    text_hash,
    undo,
)
from netsetup.state import StateDir

LOCK_FILE = ".lock"


@dataclass(frozen=True)
class PeerView:
    """What `list` and `provision --json` show of a peer. Nothing secret."""

    name: str
    mode: str
    state: str
    address_v4: str
    address_v6: str | None
    created: str
    expires: str | None
    fingerprint: str
    key_origin: str
    gateway: str | None = None  # its site's name, when the profile has several ([[gateway]])

    @classmethod
    def of(cls, peer: Peer, now: datetime, profile: Profile | None = None) -> PeerView:
        """The view of `peer`; given its `profile`, with the name of the peer's site when the
        profile has several gateways."""
        site = None
        if profile is not None and profile.multi_site:
            site = peer.gateway or profile.gateways[0].name
        return cls(
            name=peer.name,
            mode=peer.mode,
            state=peer.state(now),
            address_v4=str(peer.address_v4),
            address_v6=str(peer.address_v6) if peer.address_v6 else None,
            created=format_time(peer.created),
            expires=format_time(peer.expires) if peer.expires else None,
            fingerprint=fingerprint(peer.public_key),
            key_origin=peer.key_origin,
            gateway=site,
        )

    def as_dict(self) -> dict[str, Any]:
        """Every field; `gateway` only when the profile has several (the one-gateway documents
        stay as they were)."""
        out = asdict(self)
        if out["gateway"] is None:
            del out["gateway"]
        return out


@dataclass(frozen=True)
class ProvisionResult:
    """What `provision` and `rotate` report: the peer, where its files went, whether a private
    key was written (not with --client-pubkey)."""

    profile: str
    peer: PeerView
    peer_file: Path
    config: Path
    qr_files: list[Path] = field(default_factory=list)
    private_key_written: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "peer": self.peer.as_dict(),
            "peer_file": str(self.peer_file),
            "config": str(self.config),
            "qr_files": [str(p) for p in self.qr_files],
            "private_key_written": self.private_key_written,
        }


def terminal_qr_of(result: ProvisionResult) -> str:
    """The QR code of the config just written, as text for a terminal (it holds the private
    key: shown only when asked for with --qr)."""
    return terminal_qr(result.config.read_text(encoding="utf-8"))


# -- checks made before anything is written ------------------------------------------------------


def checked_name(name: str) -> PeerName:
    """A peer name from any caller, checked: a bad one is an InputError and nothing happens."""
    try:
        return PeerName(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _prepare(profile: Profile, state: StateDir) -> ProfileId:
    """The profile's checked id, once the state folder is known to be outside the profiles."""
    try:
        profile_id = ProfileId(profile.id)
    except ValueError as exc:
        raise InputError(str(exc), where=str(profile.directory)) from None
    refuse_inside_profiles(state.root, profile, what="the state folder ($NETSETUP_STATE_DIR)")
    return profile_id


def refuse_inside_profiles(path: Path, profile: Profile, what: str = "this folder") -> None:
    """Secrets never go under profiles/ (it is shared, reviewed and committed)."""
    target = path.resolve()
    folder = profile.directory.resolve()
    roots = [folder]
    if folder.parent.name == "profiles" or os.environ.get("NETSETUP_PROFILES"):
        roots.append(folder.parent)
    for root in roots:
        if target == root or root in target.parents:
            raise InputError(
                f"{what} would hold secrets, and secrets never go under the profiles folder "
                "(it is committed and shared); choose a folder outside it",
                where=str(path),
            )


def _lock(profile: Profile) -> Any:
    # A link is committed like any file: through one, peer files (and the lock) would be
    # written wherever it points.
    for path in (profile.peers_dir, profile.peers_dir / LOCK_FILE):
        if path.is_symlink():
            raise InputError(
                f"{path.name} is a symbolic link; netsetup writes only inside the profile folder: "
                "replace it with a real folder or file",
                where=str(path),
            )
    ensure_dir(profile.peers_dir)
    return locked(profile.peers_dir / LOCK_FILE)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"mode {mode!r} must be one of {', '.join(MODES)}")
    return mode


def _check_client_key(key: str | None, profile: Profile) -> str | None:
    if key is None:
        return None
    key = key.strip()
    problem = key_error(key)
    if problem:
        raise InputError(f"--client-pubkey is not a WireGuard public key ({problem})")
    if any(key == gateway.public_key for gateway in profile.gateways):
        raise InputError(
            "--client-pubkey is a gateway's own public key; give the assistant's public key",
            where=str(profile.profile_file),
        )
    return key


def _refuse_known_key(profile: Profile, key: str) -> None:
    """Two peers with one key would share a tunnel: refuse any key a peer file of the profile
    holds (active, expired, revoked or retired). One key in two profiles beside it (a peer's or
    a gateway's) is one key pair in two companies, which validate refuses (NS203). Only with
    --client-pubkey: generated keys are new."""
    needle = f'"{key}"'
    for path in _peer_files(profile.peers_dir):
        if _holds(path, needle):
            raise ConflictError(
                "--client-pubkey is already the public key of a peer in this profile "
                "(every assistant needs their own key pair)",
                where=path,
            )
    for folder in _sibling_profiles(profile):
        for path in [str(folder / PROFILE_FILE), *_peer_files(folder / "peers")]:
            if _holds(path, needle):
                raise ConflictError(
                    f"--client-pubkey is already a key in profile {folder.name!r}: one key pair "
                    "in two companies would keep the assistant in at one when revoked at the "
                    "other (validate: NS203); the assistant needs a key pair per company",
                    where=path,
                )


def _peer_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.name.endswith(".toml") and e.name[0] != ".")
    except (FileNotFoundError, NotADirectoryError):
        return []


def _sibling_profiles(profile: Profile) -> list[Path]:
    """The other profile folders beside this one (what `validate profiles/` checks together)."""
    here = profile.directory
    try:
        with os.scandir(here.parent) as entries:
            folders = sorted(Path(e.path) for e in entries if e.is_dir() and e.name[0] != ".")
    except OSError:
        return []
    return [f for f in folders if f != here and (f / PROFILE_FILE).is_file()]


def _holds(path: str, needle: str) -> bool:
    try:
        raw = read_regular_bytes(Path(path))  # a FIFO there must not block the command
    except OSError:
        return False
    return isinstance(raw, bytes) and needle.encode() in raw


def _expiry(profile: Profile, mode: str, expires: str | None, now: datetime) -> datetime | None:
    if expires is None:
        return now + profile.agency_expires if mode == "agency" else None
    try:
        moment = parse_expiry(expires, now)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if moment <= now:
        raise InputError(f"expiry {expires!r} is in the past")
    return moment


def _quarantine(profile: Profile) -> timedelta:
    return timedelta(days=profile.network.quarantine_days)


def _released(profile: Profile, peer: Peer) -> datetime:
    """When a revoked peer's name and address leave quarantine."""
    return (peer.revoked or peer.created) + _quarantine(profile)


def _reusable(profile: Profile, name: PeerName, now: datetime, reuse_name: bool) -> Peer | None:
    """The revoked peer of this name that a new peer replaces, or None when the name is free."""
    if not peer_path(profile, name).exists():
        return None
    peer = load_peer(profile, name)
    where = str(peer_path(profile, name))
    if peer.status != "revoked":
        raise ConflictError(
            f"peer {name!r} already exists in {profile.id!r} (`rotate` gives it new keys, "
            "`renew` a new expiry, `revoke` takes its access away)",
            where=where,
        )
    released = _released(profile, peer)
    if released > now and not reuse_name:
        raise ConflictError(
            f"peer {name!r} was revoked and its name rests in quarantine until "
            f"{format_time(released)}: choose another name, or pass --reuse-name to give it to "
            "a new peer now (the old address stays in quarantine)",
            where=where,
        )
    return peer


def _changeable(profile: Profile, name: PeerName, now: datetime, allow_expired: bool) -> Peer:
    peer = load_peer(profile, name)
    if peer.status == "revoked":
        raise ConflictError(
            f"peer {name!r} is revoked; `provision` a new peer (another name, or this one "
            "with --reuse-name)",
            where=str(peer_path(profile, name)),
        )
    if not allow_expired and peer.is_expired(now):
        raise ConflictError(
            f"peer {name!r} has expired; `renew` it first", where=str(peer_path(profile, name))
        )
    return peer


# -- the client files ----------------------------------------------------------------------------


# eq=False on the plans below: nothing compares them, and each method `@dataclass` generates is
# compiled at import, on every command.
@dataclass(eq=False)
class _ClientFiles:
    """Where the assistant's config (and QR codes) go, planned before anything is written."""

    folder: Path
    default: bool  # the state folder's clients/<name>/
    config: Path
    qr: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)  # old QR codes: they hold an old private key
    created: list[Path] = field(default_factory=list)


def _plan_client(
    profile: Profile, pid: ProfileId, state: StateDir, name: PeerName, out: Path | None, qr: bool
) -> _ClientFiles:
    iface = profile.network.client_interface
    if out is None:
        folder = state.client_dir(pid, name)
    else:
        refuse_inside_profiles(out, profile, what="--out")
        folder = out
        if folder.exists():
            private_dir(folder)  # refused when others can read it; never chmodded
    config = folder / f"{iface}.conf"
    ours = _check_config_target(config, profile, name) or out is None
    images = [folder / f"{iface}.{kind}" for kind in ("png", "svg")]
    stale = [] if qr or not ours else [p for p in images if p.exists()]
    return _ClientFiles(
        folder, out is None, config, images if qr else [], stale, missing_dirs(folder)
    )


def _check_config_target(config: Path, profile: Profile, name: PeerName) -> bool:
    """Never overwrite another assistant's config (and with it their only private key).
    True when this peer's own config is there, False when there is none."""
    if not config.exists():
        return False
    with config.open() as handle:
        first = handle.readline()
    if not first.startswith(f"# netsetup: {name} on {profile.id} ("):
        raise ConflictError(
            f"{config.name} there belongs to another assistant or was not written by netsetup; "
            "give each assistant their own --out folder",
            where=str(config),
        )
    return True


def _key_pair(client_key: str | None) -> tuple[str, SecretKey | None]:
    """A new key pair, or the assistant's own public key and no private key at all."""
    if client_key is not None:
        return client_key, None
    pair = generate_keypair()
    return pair.public, pair.private


@dataclass(eq=False)
class _Issue:
    """A new key for `peer`: its preshared key file and client files, all taken back on failure."""

    profile: Profile
    pid: ProfileId
    state: StateDir
    peer: Peer
    private: SecretKey | None
    client: _ClientFiles

    def plan(self, journal: Journal) -> None:
        state = self.state
        name = PeerName(self.peer.name)
        psk = state.psk_path(self.pid, name, self.peer.public_key)
        journal.undo.append(str(psk))
        journal.undo_dirs.extend(str(p) for p in missing_dirs(psk.parent))
        journal.undo_dirs.extend(str(p) for p in self.client.created)
        for final in [self.client.config, *self.client.qr]:
            journal.undo.append(str(staged(final)))
            journal.publish.append((str(staged(final)), str(final)))
        journal.remove.extend(str(p) for p in self.client.stale)
        journal.remove.extend(str(p) for p in state.psk_files(self.pid, name) if p != psk)

    def write(self) -> None:
        profile, state = self.profile, self.state
        name = PeerName(self.peer.name)
        psk = generate_preshared_key()
        state.save_psk(self.pid, name, self.peer.public_key, psk)
        responder = None
        if profile.diagnose.responder is not None:  # the office responder knows this peer by it
            token = state.responder_token(self.pid)
            responder = responder_key(token, self.peer.public_key)
        text = render_client_config(profile, self.peer, self.private, psk, responder)
        if self.client.default:
            state.make_client_dir(self.pid, name)
        else:
            private_dir(self.client.folder)
        write_secret(staged(self.client.config), text)
        if self.client.qr:
            for (_, image), final in zip(qr_images(text), self.client.qr, strict=True):
                write_secret(staged(final), image)


# -- the commit ----------------------------------------------------------------------------------


def _commit(
    profile: Profile,
    pid: ProfileId,
    state: StateDir,
    journal: Journal,
    peer: Peer,
    before: Any = None,
) -> tuple[Path, Path]:
    """Write the journal, then `before()` (what can be taken back), then the peer file.
    Any failure takes back everything written so far. Returns (journal, peer file)."""
    text = peer_to_toml(peer)
    assert journal.commit == text_hash(text)
    path = begin(state, pid, journal)
    try:
        if before is not None:
            before()
        peer_file = write_peer_text(profile, PeerName(peer.name), text)
    except BaseException:
        undo(path, journal, profile)
        raise
    return path, peer_file


def _save_index(index: AddressIndex, entries: Sequence[tuple[str, Peer, Path]]) -> None:
    """Note the peer files just written in the address index (a cache: it heals if this fails)."""
    quarantine = _quarantine(index.profile)
    for name, peer, path in entries:
        index.record(name, holding_for(peer, quarantine), path)
    with contextlib.suppress(OSError):
        index.save()  # else the next load rebuilds it from the peer files


# -- the commands --------------------------------------------------------------------------------


def provision(
    profile: Profile,
    name: PeerName,
    mode: str,
    *,
    state: StateDir,
    expires: str | None = None,
    client_pubkey: str | None = None,
    out_dir: Path | None = None,
    qr: bool = False,
    reuse_name: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    site: str | None = None,
) -> ProvisionResult:
    """A new peer of the gateway `site` (None: the first): keys, the lowest free addresses of
    that site's subnets, its client config for that gateway (and QR codes).

    A revoked name can be given again once its quarantine has ended, or before with
    `reuse_name`: then the old record moves aside (`<name>.revoked-<key tag>.toml`) and keeps
    holding its address until its quarantine ends."""
    now = clock.now()
    name = checked_name(name)
    # from here on the profile as that gateway sees it: its subnets, its endpoint and key (the
    # address index still reads every peer file: the sites' subnets never overlap)
    profile = profile_site(profile, site, where="--gateway")
    pid = _prepare(profile, state)
    _check_mode(mode)
    client_key = _check_client_key(client_pubkey, profile)
    expiry = _expiry(profile, mode, expires, now)
    with _lock(profile):
        recover(profile, pid, state)
        previous = _reusable(profile, name, now, reuse_name)
        if client_key is not None:
            _refuse_known_key(profile, client_key)
        index = AddressIndex.load(profile)
        public, private = _key_pair(client_key)
        peer = _new_peer(profile, index, name, mode, public, now, expiry)
        peer = replace(
            peer,
            key_origin="generated" if client_key is None else "client",
            gateway=profile.gateway.name if profile.multi_site else None,
        )
        client = _plan_client(profile, pid, state, name, out_dir, qr)
        issue = _Issue(profile, pid, state, peer, private, client)
        view = PeerView.of(peer, now, profile)
        audit = state.audit_line("provision", now, profile=pid, peer=name, **_audit_fields(view))
        journal = Journal(name, text_hash(peer_to_toml(peer)), audit=audit)
        issue.plan(journal)
        retire = _plan_retire(profile, journal, name, previous, now)
        path, peer_file = _commit(profile, pid, state, journal, peer, lambda: _write(issue, retire))
        held: list[tuple[str, Peer, Path]] = [(name, peer, peer_file)]
        if retire is not None and previous is not None:
            held.append((retire[1].stem, previous, retire[1]))
        _save_index(index, held)
        finish(state, path, journal, profile)
    config, qr_files = issue.client.config, issue.client.qr
    return ProvisionResult(pid, view, peer_file, config, qr_files, private is not None)


def _audit_fields(view: PeerView) -> dict[str, Any]:
    addresses = [view.address_v4, view.address_v6] if view.address_v6 else [view.address_v4]
    return {
        "mode": view.mode,
        "fingerprint": view.fingerprint,
        "expires": view.expires,
        "addresses": addresses,
        "key_origin": view.key_origin,
    }


def _new_peer(
    profile: Profile,
    index: AddressIndex,
    name: PeerName,
    mode: str,
    public: str,
    now: datetime,
    expiry: datetime | None,
) -> Peer:
    taken_v4, taken_v6 = index.taken(now)
    net = profile.network
    address_v4 = allocate_address(net.tunnel_v4, net.gateway_address_v4, taken_v4)
    address_v6 = None
    if net.tunnel_v6 is not None and net.gateway_address_v6 is not None:
        address_v6 = allocate_address(net.tunnel_v6, net.gateway_address_v6, taken_v6)
    return Peer(
        name=name,
        mode=mode,
        public_key=public,
        address_v4=address_v4,  # type: ignore[arg-type]
        address_v6=address_v6,  # type: ignore[arg-type]
        created=now,
        expires=expiry,
    )


def _plan_retire(
    profile: Profile, journal: Journal, name: PeerName, previous: Peer | None, now: datetime
) -> tuple[Path, Path] | None:
    """A revoked record still in quarantine moves aside to keep holding its address; one whose
    quarantine has ended is simply replaced by the new peer file at the commit."""
    if previous is None or _released(profile, previous) <= now:
        return None
    current = peer_path(profile, name)
    retired = retired_path(profile, name, previous.public_key)
    journal.restore.append((str(retired), str(current)))
    return current, retired


def _write(issue: _Issue, retire: tuple[Path, Path] | None) -> None:
    if retire is not None:
        rename(*retire)
    issue.write()


def _existing(profile: Profile, name: PeerName) -> None:
    """Refuse a peer whose file is missing before the lock (NotFoundError naming the path)."""
    load_peer(profile, name)


def revoke(
    profile: Profile, name: PeerName, *, state: StateDir, clock: Clock = SYSTEM_CLOCK
) -> PeerView:
    """Mark the peer revoked (its file stays, holding the address in quarantine) and destroy
    its preshared keys and its client config in the state folder."""
    now = clock.now()
    name = checked_name(name)
    pid = _prepare(profile, state)
    _existing(profile, name)
    with _lock(profile):
        recover(profile, pid, state)
        peer = load_peer(profile, name)
        if peer.status == "revoked":
            raise ConflictError(
                f"peer {name!r} is already revoked", where=str(peer_path(profile, name))
            )
        index = AddressIndex.load(profile)
        peer = replace(peer, status="revoked", revoked=now)
        view = PeerView.of(peer, now, profile)
        audit = state.audit_line(
            "revoke", now, profile=pid, peer=name, fingerprint=view.fingerprint
        )
        journal = Journal(name, text_hash(peer_to_toml(peer)), audit=audit)
        journal.remove.extend(str(p) for p in state.psk_files(pid, name))
        journal.remove.append(str(state.client_dir(pid, name)))
        path, peer_file = _commit(profile, pid, state, journal, peer)
        _save_index(index, [(name, peer, peer_file)])
        finish(state, path, journal, profile)
    return view


def rotate(
    profile: Profile,
    name: PeerName,
    *,
    state: StateDir,
    client_pubkey: str | None = None,
    out_dir: Path | None = None,
    qr: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> ProvisionResult:
    """New keys and preshared key; same addresses, mode and expiry. The old config, QR codes
    and preshared key are removed once the new ones are in place."""
    now = clock.now()
    name = checked_name(name)
    pid = _prepare(profile, state)
    client_key = _check_client_key(client_pubkey, profile)
    _existing(profile, name)
    with _lock(profile):
        recover(profile, pid, state)
        old = _changeable(profile, name, now, allow_expired=False)
        if client_key is not None:
            _refuse_known_key(profile, client_key)
        public, private = _key_pair(client_key)
        origin = "generated" if client_key is None else "client"
        peer = replace(old, public_key=public, rotated=now, key_origin=origin)
        site = peer_site(profile, peer)  # the new config is for the peer's own gateway
        client = _plan_client(site, pid, state, name, out_dir, qr)
        issue = _Issue(site, pid, state, peer, private, client)
        view = PeerView.of(peer, now, profile)
        audit = state.audit_line(
            "rotate",
            now,
            profile=pid,
            peer=name,
            fingerprint=view.fingerprint,
            previous_fingerprint=fingerprint(old.public_key),
            expires=view.expires,
        )
        journal = Journal(name, text_hash(peer_to_toml(peer)), audit=audit)
        issue.plan(journal)
        if not client.default:
            journal.remove.append(str(state.client_dir(pid, name)))  # the old config's key is dead
        path, peer_file = _commit(profile, pid, state, journal, peer, issue.write)
        finish(state, path, journal, profile)
    return ProvisionResult(pid, view, peer_file, client.config, client.qr, private is not None)


def renew(
    profile: Profile,
    name: PeerName,
    expires: str,
    *,
    state: StateDir,
    clock: Clock = SYSTEM_CLOCK,
) -> PeerView:
    """Move a peer's expiry (also brings back an expired, not revoked, peer)."""
    now = clock.now()
    name = checked_name(name)
    pid = _prepare(profile, state)
    _existing(profile, name)
    with _lock(profile):
        recover(profile, pid, state)
        peer = _changeable(profile, name, now, allow_expired=True)
        peer = replace(peer, expires=_expiry(profile, peer.mode, expires, now))
        view = PeerView.of(peer, now, profile)
        audit = state.audit_line(
            "renew", now, profile=pid, peer=name, fingerprint=view.fingerprint, expires=view.expires
        )
        journal = Journal(name, text_hash(peer_to_toml(peer)), audit=audit)
        path, _ = _commit(profile, pid, state, journal, peer)
        finish(state, path, journal, profile)
    return view


def list_peers(profile: Profile, now: datetime | None = None) -> list[PeerView]:
    now = now or SYSTEM_CLOCK.now()
    return [PeerView.of(peer, now, profile) for peer in load_peers(profile)]
