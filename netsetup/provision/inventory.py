"""The admin's inventory: the peers of one profile or of a whole folder of profiles, filtered, and
everything about one peer, including where its client config is.

A service firm keeps one profile per client company and changes assistants weekly, so `list` reads
a folder of profiles in one go. One unreadable file must not hide the other companies' peers: each
problem is collected as a `ReadProblem` (with file:line) beside what could be read, and the caller
decides how loud to be. Nothing here prints, and nothing here ever returns a secret's value: a
client config comes back redacted, and its full text is read again only for a QR code
(`ClientConfig.text_for_qr`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.errors import ConflictError, InputError, NotFoundError
from netsetup.keys import SecretKey, public_from_private
from netsetup.profile.model import MODES, Peer, PeerState, Profile
from netsetup.profile.store import (
    PROFILE_FILE,
    ParsedFile,
    load_peer,
    load_profile,
    parse_peer_file,
    parse_profile_file,
    peer_names,
    peer_path,
    peer_site,
)
from netsetup.profile.values import PeerName, format_time, parse_duration
from netsetup.provision.service import PeerView
from netsetup.state import StateDir

# What Peer.state(now) yields; a test holds the two together.
PEER_STATES = tuple(PeerState)

# A key line in a wg-quick config; wg-quick reads key names case-insensitively, so does this.
_SECRET_LINE = re.compile(r"^(\s*)(privatekey|presharedkey)(\s*=\s*)(.*)$", re.IGNORECASE)
_PRIVATE_LINE = re.compile(r"^\s*privatekey\s*=\s*(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
_PUBLIC_LINE = re.compile(r"^\s*publickey\s*=", re.IGNORECASE)
# Anything shaped like a WireGuard key (base64 of 32 bytes) outside a PublicKey line: a key pasted
# into a comment or a PostUp line by hand must not reach the screen either.
_KEY_TOKEN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


# -- filters ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerFilter:
    """Which peers to list. Every filter that is set must match (they combine with AND)."""

    mode: str | None = None
    state: str | None = None
    # Active peers whose expiry falls within this span from now; revoked, already expired and
    # never-expiring peers do not match.
    expiring_within: timedelta | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise InputError(
                f"mode {self.mode!r} must be one of {', '.join(MODES)}", where="--mode"
            )
        if self.state is not None and self.state not in PEER_STATES:
            raise InputError(
                f"state {self.state!r} must be one of {', '.join(PEER_STATES)}", where="--state"
            )

    @classmethod
    def parse(
        cls, mode: str | None = None, state: str | None = None, expiring_within: str | None = None
    ) -> PeerFilter:
        """A filter from command-line text; the span is a duration such as 12h, 7d or 2w."""
        span = None
        if expiring_within is not None:
            try:
                span = parse_duration(expiring_within.strip())
            except ValueError as exc:
                raise InputError(str(exc), where="--expiring-within") from None
        return cls(mode=mode, state=state, expiring_within=span)

    def matches(self, peer: Peer, now: datetime) -> bool:
        if self.mode is not None and peer.mode != self.mode:
            return False
        if self.state is not None and peer.state(now) != self.state:
            return False
        if self.expiring_within is not None:
            return (
                peer.is_active(now)
                and peer.expires is not None
                and peer.expires <= now + self.expiring_within
            )
        return True

    @property
    def is_set(self) -> bool:
        return (self.mode, self.state, self.expiring_within) != (None, None, None)

    def as_dict(self) -> dict[str, str | None]:
        span = self.expiring_within
        return {
            "mode": self.mode,
            "state": self.state,
            "expiring_within": format_span(span) if span is not None else None,
        }


def format_span(span: timedelta) -> str:
    """A timedelta in the duration syntax of --expiring-within (7d, 12h); weeks show as days."""
    hours = int(span.total_seconds()) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


# -- list ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadProblem:
    """A profile or peer file that could not be read; what was around it is still listed."""

    path: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class ProfileSummary:
    id: str
    company: str
    directory: str
    peers: int  # peers read from this profile, before filtering

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "company": self.company, "path": self.directory, "peers": self.peers}


@dataclass(frozen=True)
class ListedPeer:
    profile: str
    peer: PeerView

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, **self.peer.as_dict()}


@dataclass(frozen=True)
class Inventory:
    """The answer to `list`: peers sorted by profile then name, and what could not be read."""

    as_of: datetime
    profiles: list[ProfileSummary]
    peers: list[ListedPeer]
    problems: list[ReadProblem]
    peer_filter: PeerFilter = field(default_factory=PeerFilter)
    several: bool = False  # a folder or several profiles were asked for (not exactly one)

    @property
    def total(self) -> int:
        """Peers read in all profiles, before filtering."""
        return sum(p.peers for p in self.profiles)

    def counts(self) -> dict[str, int]:
        """Listed peers per state, every state present (zero included)."""
        tally = Counter(listed.peer.state for listed in self.peers)
        return {state: tally[state] for state in PEER_STATES}

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if not self.several and len(self.profiles) == 1:
            document["profile"] = self.profiles[0].id  # the single-profile shape of list/1
        document.update(
            {
                "as_of": format_time(self.as_of),
                "filters": self.peer_filter.as_dict(),
                "profiles": [p.as_dict() for p in self.profiles],
                "peers": [p.as_dict() for p in self.peers],
                "summary": {"listed": len(self.peers), "total": self.total, **self.counts()},
                "errors": [p.as_dict() for p in self.problems],
            }
        )
        return document


def profile_dirs(ref: str | Path) -> tuple[list[Path], bool]:
    """The profile folders a reference names, and whether it named a folder of profiles.

    A folder with a profile.toml is one profile; a folder whose subfolders hold profile.toml files
    is a folder of profiles (hidden subfolders are skipped); anything else is a profile id under
    ./profiles or $NETSETUP_PROFILES.
    """
    from netsetup.profile.store import resolve_profile_dir

    path = Path(ref)
    if (path / PROFILE_FILE).is_file():
        return [path], False
    if path.is_dir():
        found = sorted(
            child
            for child in path.iterdir()
            if not child.name.startswith(".") and (child / PROFILE_FILE).is_file()
        )
        if not found:
            raise NotFoundError(
                f"no {PROFILE_FILE} in this folder or its subfolders", where=path.as_posix()
            )
        return found, True
    return [resolve_profile_dir(ref)], False


def take_inventory(
    refs: Sequence[str | Path], now: datetime, peer_filter: PeerFilter | None = None
) -> Inventory:
    """Read every profile the references name and list their peers that match the filter.

    A reference that names nothing raises NotFoundError. When exactly one profile was named, a
    broken profile.toml raises ProfileError as for every other command; inside a folder of
    profiles it becomes a ReadProblem and the other profiles are still read. A broken peer file
    is always a ReadProblem.
    """
    peer_filter = peer_filter or PeerFilter()
    dirs: list[Path] = []
    seen: set[Path] = set()
    several = len(refs) != 1
    for ref in refs:
        found, folder = profile_dirs(ref)
        several = several or folder
        for directory in found:
            if directory.resolve() not in seen:  # `list profiles profiles/acme` lists acme once
                seen.add(directory.resolve())
                dirs.append(directory)
    summaries: list[ProfileSummary] = []
    listed: list[ListedPeer] = []
    problems: list[ReadProblem] = []
    for directory in dirs:
        profile = load_profile(directory) if not several else _read_profile(directory, problems)
        if profile is None:
            continue
        peers = _read_peers(profile, problems)
        summaries.append(
            ProfileSummary(profile.id, profile.company, directory.as_posix(), len(peers))
        )
        listed.extend(
            ListedPeer(profile.id, PeerView.of(peer, now, profile))
            for peer in peers
            if peer_filter.matches(peer, now)
        )
    summaries.sort(key=lambda s: s.id)
    listed.sort(key=lambda p: (p.profile, p.peer.name))
    problems.sort(key=lambda p: (p.path, p.line or 0))
    return Inventory(now, summaries, listed, problems, peer_filter, several)


def _problem(parsed: ParsedFile) -> ReadProblem:
    issue = parsed.issues[0]
    line, _ = parsed.position(issue)
    more = len(parsed.issues) - 1
    message = issue.message + (f" (and {more} more: run netsetup validate)" if more else "")
    return ReadProblem(parsed.path.as_posix(), line, message)


def _read_profile(directory: Path, problems: list[ReadProblem]) -> Profile | None:
    try:
        profile, parsed = parse_profile_file(directory)
    except OSError as exc:  # unreadable (permissions): the other profiles still count
        problems.append(ReadProblem((directory / PROFILE_FILE).as_posix(), None, _os_text(exc)))
        return None
    if parsed.issues or profile is None:
        problems.append(_problem(parsed))
        return None
    return profile


def _read_peers(profile: Profile, problems: list[ReadProblem]) -> list[Peer]:
    peers: list[Peer] = []
    for name in peer_names(profile):
        path = profile.peers_dir / f"{name}.toml"
        try:
            peer, parsed = parse_peer_file(path)
        except OSError as exc:
            problems.append(ReadProblem(path.as_posix(), None, _os_text(exc)))
            continue
        if parsed.issues or peer is None:
            problems.append(_problem(parsed))
            continue
        peers.append(peer)
    return peers


def _os_text(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or type(exc).__name__}"


# -- show ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerDetails:
    """Everything `show` tells about one peer. Nothing secret: only where the secrets are."""

    profile: str
    company: str
    peer: PeerView
    public_key: str
    rotated: str | None
    revoked: str | None
    peer_file: Path
    gateway_endpoint: str
    client_config: Path  # where the state folder keeps it (it may not be there)
    client_config_present: bool
    qr_files: list[Path]
    preshared_key_stored: bool  # render needs it to put the peer on the gateway

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "company": self.company,
            **self.peer.as_dict(),
            "public_key": self.public_key,
            "rotated": self.rotated,
            "revoked": self.revoked,
            "peer_file": str(self.peer_file),
            "gateway_endpoint": self.gateway_endpoint,
            "client_config": str(self.client_config) if self.client_config_present else None,
            "qr_files": [str(p) for p in self.qr_files],
            "preshared_key_stored": self.preshared_key_stored,
        }


def client_files(profile: Profile, state: StateDir, name: PeerName) -> tuple[Path, list[Path]]:
    """Where provision and rotate put a peer's client config and QR codes by default (as
    service.write_qr names them: the interface name with .png and .svg)."""
    stem = state.client_dir(profile.id, name) / profile.network.client_interface
    config = stem.parent / f"{stem.name}.conf"
    return config, [stem.with_suffix(".png"), stem.with_suffix(".svg")]


def peer_details(profile: Profile, name: PeerName, state: StateDir, now: datetime) -> PeerDetails:
    peer = load_peer(profile, name)
    config, qr_files = client_files(profile, state, name)
    return PeerDetails(
        profile=profile.id,
        company=profile.company,
        peer=PeerView.of(peer, now, profile),
        public_key=peer.public_key,
        rotated=format_time(peer.rotated) if peer.rotated else None,
        revoked=format_time(peer.revoked) if peer.revoked else None,
        peer_file=peer_path(profile, peer.name),
        gateway_endpoint=_endpoint(profile, peer),
        client_config=config,
        client_config_present=config.is_file(),
        qr_files=[p for p in qr_files if p.is_file()],
        preshared_key_stored=state.psk_path(profile.id, peer.name, peer.public_key).is_file(),
    )


def _endpoint(profile: Profile, peer: Peer) -> str:
    """The Endpoint of the peer's gateway; a site the profile does not have is shown, not
    raised: `show` is how the admin finds out (validate reports it as NS116)."""
    try:
        return peer_site(profile, peer).gateway.endpoint
    except NotFoundError:
        return f"(the profile has no gateway {peer.gateway!r}: run netsetup validate)"


@dataclass(frozen=True)
class ClientConfig:
    """A client config in the state folder, shown redacted. `text_for_qr()` reads the real text
    again (for a QR code on a terminal), so the secret is never held by this object or its repr."""

    path: Path
    redacted: str
    has_private_key: bool
    qr_files: list[Path]

    def text_for_qr(self, profile_id: str, name: str) -> str:
        """The real config text, for a QR code the WireGuard app can import."""
        if not self.has_private_key:
            raise ConflictError(
                f"the client config of {name!r} has no private key (made with --client-pubkey: "
                f"the assistant keeps it), so a QR code of it cannot set up a phone; send the "
                f"file, or `netsetup rotate {profile_id} {name}` for a config with new keys",
                where=str(self.path),
            )
        return self.path.read_text(encoding="utf-8")


def redact_config(text: str) -> str:
    """The config with every PrivateKey and PresharedKey value, and anything else shaped like a
    key outside a PublicKey line, replaced by `(redacted...)`."""
    lines = []
    for line in text.splitlines():
        match = _SECRET_LINE.match(line)
        if match:
            indent, key, equals, _value = match.groups()
            line = f"{indent}{key}{equals}(redacted: see the file)"
        elif not _PUBLIC_LINE.match(line):
            line = _KEY_TOKEN.sub("(redacted)", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def stored_client_config(
    profile: Profile, details: PeerDetails, state: StateDir, name: PeerName
) -> ClientConfig:
    """The peer's client config as the state folder holds it, checked to belong to the peer's
    current key. Raises with what to do when it is not there or no longer valid; never rotates."""
    rotate = f"`netsetup rotate {profile.id} {name}` makes a new one (new keys)"
    if details.peer.state == "revoked":
        raise ConflictError(
            f"peer {name!r} is revoked: its client config was destroyed with its keys; "
            f"provision a new peer instead",
            where=str(details.peer_file),
        )
    path = details.client_config
    if not path.is_file():
        raise NotFoundError(
            f"the client config of {name!r} is not in the state folder (it was written with "
            f"--out elsewhere, or removed); {rotate}",
            where=str(path),
        )
    text = path.read_text(encoding="utf-8")
    _check_belongs(text, path, profile, details, name, rotate)
    return ClientConfig(
        path=path,
        redacted=redact_config(text),
        has_private_key=_PRIVATE_LINE.search(text) is not None,
        qr_files=details.qr_files,
    )


def _check_belongs(
    text: str, path: Path, profile: Profile, details: PeerDetails, name: str, rotate: str
) -> None:
    """A config left by an interrupted rotate, or edited by hand, must not be handed out."""
    header = f"# netsetup: {name} on {profile.id} ("
    stale = ConflictError(
        f"the client config of {name!r} in the state folder does not belong to its current key "
        f"(a rotate was interrupted, or the file was edited); {rotate}",
        where=str(path),
    )
    if not text.startswith(header):
        raise stale
    match = _PRIVATE_LINE.search(text)
    if match is None:
        return  # made with --client-pubkey: the assistant holds the private key
    try:
        public = public_from_private(SecretKey(match.group(1)))
    except ValueError:
        raise stale from None
    if public != details.public_key:
        raise stale
