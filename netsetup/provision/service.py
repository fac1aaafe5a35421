"""Provision, revoke, rotate, renew and list peers. Every change holds the profile lock, writes
atomically and appends one audit line.

The order of writes makes a crash harmless: secrets (state dir, client config) first, then the peer
file (the commit point), then the address index (a cache that heals itself), then the audit line.
A crash before the peer file leaves no peer; one after leaves a whole peer.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.errors import ConflictError, InputError
from netsetup.fsutil import ensure_dir, locked, private_dir, write_secret
from netsetup.keys import (
    SecretKey,
    fingerprint,
    generate_keypair,
    generate_preshared_key,
    key_error,
)
from netsetup.profile.model import MODES, Peer, Profile
from netsetup.profile.store import (
    load_peer,
    load_peers,
    peer_path,
    peer_to_toml,
    write_peer,
    write_peer_text,
)
from netsetup.profile.values import format_time, parse_expiry, parse_name
from netsetup.provision.addresses import AddressIndex, allocate_address, holding_for
from netsetup.provision.client_config import render_client_config
from netsetup.state import StateDir

LOCK_FILE = ".lock"


def utcnow() -> datetime:
    return datetime.now(UTC)


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

    @classmethod
    def of(cls, peer: Peer, now: datetime) -> PeerView:
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
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProvisionResult:
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


def _lock(profile: Profile) -> Any:
    ensure_dir(profile.peers_dir)
    return locked(profile.peers_dir / LOCK_FILE)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"mode {mode!r} must be one of {', '.join(MODES)}")
    return mode


def _check_client_key(key: str | None) -> str | None:
    if key is None:
        return None
    problem = key_error(key.strip())
    if problem:
        raise InputError(f"--client-pubkey is not a WireGuard public key ({problem})")
    return key.strip()


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


def _out_dir(state: StateDir, profile: Profile, name: str, out: Path | None) -> Path:
    if out is None:
        state._secret_dir(profile.id, "clients", name)
        return state.client_dir(profile.id, name)
    refuse_inside_profiles(out, profile)
    return private_dir(out)


def refuse_inside_profiles(path: Path, profile: Profile) -> None:
    """Secrets never go under profiles/ (it is shared, reviewed and committed)."""
    target = path.resolve()
    folder = profile.directory.resolve()
    roots = [folder]
    if folder.parent.name == "profiles" or os.environ.get("NETSETUP_PROFILES"):
        roots.append(folder.parent)
    for root in roots:
        if target == root or root in target.parents:
            raise InputError(
                "secrets never go under the profiles folder (it is committed and shared); "
                "choose a folder outside it",
                where=str(path),
            )


def _check_config_target(config: Path, profile: Profile, name: str) -> None:
    """Never overwrite another assistant's config (and with it their only private key)."""
    if not config.exists():
        return
    with config.open() as handle:
        first = handle.readline()
    if not first.startswith(f"# netsetup: {name} on {profile.id} ("):
        raise ConflictError(
            f"{config.name} there belongs to another assistant or was not written by netsetup; "
            "give each assistant their own --out folder",
            where=str(config),
        )


def _write_client(
    profile: Profile,
    peer: Peer,
    private: SecretKey | None,
    psk: SecretKey,
    out_dir: Path,
    qr: bool,
) -> tuple[Path, list[Path]]:
    text = render_client_config(profile, peer, private, psk)
    config = out_dir / f"{profile.network.client_interface}.conf"
    write_secret(config, text)
    qr_files: list[Path] = []
    if qr:
        qr_files = write_qr(text, out_dir / profile.network.client_interface)
    return config, qr_files


def _key_pair(client_key: str | None) -> tuple[str, SecretKey | None]:
    """A new key pair, or the assistant's own public key and no private key at all."""
    if client_key is not None:
        return client_key, None
    pair = generate_keypair()
    return pair.public, pair.private


def _issue(
    profile: Profile,
    peer: Peer,
    private: SecretKey | None,
    state: StateDir,
    out_dir: Path | None,
    qr: bool,
) -> tuple[Path, list[Path], Path]:
    """Make a preshared key and write the peer's secrets, then its peer file: the commit point.

    Everything that can be checked is checked before the first secret is written; if a write
    fails before the commit, the secrets written so far are removed again. A crash (SIGKILL)
    before the peer file leaves the previous peer (or none) whole on the gateway side.
    """
    peer_text = peer_to_toml(peer)
    target = _out_dir(state, profile, peer.name, out_dir)
    _check_config_target(target / f"{profile.network.client_interface}.conf", profile, peer.name)
    psk = generate_preshared_key()
    written: list[Path] = []
    try:
        written.append(state.psk_path(profile.id, peer.name, peer.public_key))
        state.save_psk(profile.id, peer.name, peer.public_key, psk)
        config, qr_files = _write_client(profile, peer, private, psk, target, qr)
        written.extend([config, *qr_files])
        return config, qr_files, write_peer_text(profile, peer.name, peer_text)
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise


def write_qr(text: str, stem: Path) -> list[Path]:
    """PNG and SVG QR codes of a config for the WireGuard mobile app; 0600 like the config."""
    import io

    import segno

    code = segno.make(text, error="l", micro=False)
    files: list[Path] = []
    for kind in ("png", "svg"):
        buffer = io.BytesIO()
        code.save(buffer, kind=kind, scale=4, border=4)
        path = stem.with_suffix(f".{kind}")
        write_secret(path, buffer.getvalue())
        files.append(path)
    return files


def provision(
    profile: Profile,
    name: str,
    mode: str,
    *,
    state: StateDir,
    expires: str | None = None,
    client_pubkey: str | None = None,
    out_dir: Path | None = None,
    qr: bool = False,
    now: datetime | None = None,
) -> ProvisionResult:
    now = now or utcnow()
    try:
        parse_name(name, "peer name")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    _check_mode(mode)
    client_key = _check_client_key(client_pubkey)
    expiry = _expiry(profile, mode, expires, now)
    with _lock(profile):
        if peer_path(profile, name).exists():
            raise ConflictError(
                f"peer {name!r} already exists in {profile.id!r} "
                "(use `rotate` for new keys or `revoke` first)",
                where=str(peer_path(profile, name)),
            )
        index = AddressIndex.load(profile)
        taken_v4, taken_v6 = index.taken(now)
        net = profile.network
        address_v4 = allocate_address(net.tunnel_v4, net.gateway_address_v4, taken_v4)
        address_v6 = None
        if net.tunnel_v6 is not None and net.gateway_address_v6 is not None:
            address_v6 = allocate_address(net.tunnel_v6, net.gateway_address_v6, taken_v6)
        public, private = _key_pair(client_key)
        peer = Peer(
            name=name,
            mode=mode,
            public_key=public,
            address_v4=address_v4,  # type: ignore[arg-type]
            address_v6=address_v6,  # type: ignore[arg-type]
            created=now,
            expires=expiry,
            key_origin="generated" if client_key is None else "client",
        )
        state.delete_psk(profile.id, name)  # leftovers of a provision that crashed
        config, qr_files, peer_file = _issue(profile, peer, private, state, out_dir, qr)
        index.record(name, holding_for(peer, timedelta(days=net.quarantine_days)), peer_file)
        index.save()
    view = PeerView.of(peer, now)
    state.audit(
        "provision",
        now,
        profile=profile.id,
        peer=name,
        mode=mode,
        fingerprint=view.fingerprint,
        expires=view.expires,
        addresses=[view.address_v4, view.address_v6] if view.address_v6 else [view.address_v4],
        key_origin=peer.key_origin,
    )
    return ProvisionResult(profile.id, view, peer_file, config, qr_files, private is not None)


def revoke(
    profile: Profile, name: str, *, state: StateDir, now: datetime | None = None
) -> PeerView:
    """Mark the peer revoked (its file stays, holding the address in quarantine) and destroy
    its preshared key and client config."""
    now = now or utcnow()
    with _lock(profile):
        peer = load_peer(profile, name)
        if peer.status == "revoked":
            raise ConflictError(
                f"peer {name!r} is already revoked", where=str(peer_path(profile, name))
            )
        index = AddressIndex.load(profile)
        peer = replace(peer, status="revoked", revoked=now)
        peer_file = write_peer(profile, peer)
        state.delete_psk(profile.id, name)
        state.delete_client_dir(profile.id, name)
        quarantine = timedelta(days=profile.network.quarantine_days)
        index.record(name, holding_for(peer, quarantine), peer_file)
        index.save()
    view = PeerView.of(peer, now)
    state.audit("revoke", now, profile=profile.id, peer=name, fingerprint=view.fingerprint)
    return view


def rotate(
    profile: Profile,
    name: str,
    *,
    state: StateDir,
    client_pubkey: str | None = None,
    out_dir: Path | None = None,
    qr: bool = False,
    now: datetime | None = None,
) -> ProvisionResult:
    """New keys and preshared key; same addresses, mode and expiry."""
    now = now or utcnow()
    client_key = _check_client_key(client_pubkey)
    with _lock(profile):
        peer = _changeable(profile, name)
        old_fingerprint = fingerprint(peer.public_key)
        public, private = _key_pair(client_key)
        peer = replace(
            peer,
            public_key=public,
            rotated=now,
            key_origin="generated" if client_key is None else "client",
        )
        config, qr_files, peer_file = _issue(profile, peer, private, state, out_dir, qr)
        state.delete_psk(profile.id, name, keep=public)
        if config.parent != state.client_dir(profile.id, name):
            state.delete_client_dir(profile.id, name)  # the old config holds a dead private key
    view = PeerView.of(peer, now)
    state.audit(
        "rotate",
        now,
        profile=profile.id,
        peer=name,
        fingerprint=view.fingerprint,
        previous_fingerprint=old_fingerprint,
        expires=view.expires,
    )
    return ProvisionResult(profile.id, view, peer_file, config, qr_files, private is not None)


def renew(
    profile: Profile, name: str, expires: str, *, state: StateDir, now: datetime | None = None
) -> PeerView:
    now = now or utcnow()
    with _lock(profile):
        peer = _changeable(profile, name, allow_expired=True)
        peer = replace(peer, expires=_expiry(profile, peer.mode, expires, now))
        write_peer(profile, peer)
    view = PeerView.of(peer, now)
    state.audit(
        "renew",
        now,
        profile=profile.id,
        peer=name,
        fingerprint=view.fingerprint,
        expires=view.expires,
    )
    return view


def _changeable(profile: Profile, name: str, allow_expired: bool = False) -> Peer:
    peer = load_peer(profile, name)
    if peer.status == "revoked":
        raise ConflictError(
            f"peer {name!r} is revoked; provision a new peer instead",
            where=str(peer_path(profile, name)),
        )
    if not allow_expired and peer.is_expired(utcnow()):
        raise ConflictError(f"peer {name!r} has expired; `renew` it first")
    return peer


def list_peers(profile: Profile, now: datetime | None = None) -> list[PeerView]:
    now = now or utcnow()
    return [PeerView.of(peer, now) for peer in load_peers(profile)]
