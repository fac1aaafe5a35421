"""Reading and writing profiles and peer files on disk."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netsetup.errors import NotFoundError, ProfileError
from netsetup.fsutil import atomic_write, ensure_dir
from netsetup.keys import fingerprint
from netsetup.profile.model import Peer, Profile
from netsetup.profile.schema import (
    SYNTAX,
    SchemaIssue,
    parse_peer_data,
    parse_profile_data,
    parse_toml,
)
from netsetup.profile.tomlpos import KeyLocator
from netsetup.profile.values import PeerName, format_time

PROFILE_FILE = "profile.toml"
PEERS_DIR = "peers"


@dataclass
class ParsedFile:
    """One TOML file with what the schema said of it; positions are computed only on demand."""

    path: Path
    text: str
    issues: list[SchemaIssue]
    _locator: KeyLocator | None = None

    def position(self, issue: SchemaIssue) -> tuple[int, int]:
        if issue.line is not None:
            return issue.line, issue.column or 1
        return self.locate(issue.path)

    def locate(self, path: tuple[str | int, ...]) -> tuple[int, int]:
        if self._locator is None:
            self._locator = KeyLocator(self.text)
        return self._locator.find(path) or (1, 1)


def read_toml(path: Path) -> tuple[str, dict[str, Any] | None, SchemaIssue | None]:
    """Text, parsed data (None on a syntax error) and the syntax issue, if any."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {path}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", None, SchemaIssue((), SYNTAX, f"not UTF-8 text (byte {exc.start})", 1, 1)
    data, syntax = parse_toml(text)
    return text, data, syntax


def parse_profile_file(profile_dir: Path) -> tuple[Profile | None, ParsedFile]:
    path = profile_dir / PROFILE_FILE
    text, data, syntax = read_toml(path)
    if data is None:
        return None, ParsedFile(path, text, [syntax] if syntax else [])
    profile, issues = parse_profile_data(data, profile_dir)
    return profile, ParsedFile(path, text, issues)


def parse_peer_file(path: Path) -> tuple[Peer | None, ParsedFile]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        text = None
    name = expected_peer_name(path)
    fast = canonical_peer_data(text) if text is not None else None
    if fast is not None:
        peer, issues = parse_peer_data(fast, name)
        return peer, ParsedFile(path, text or "", issues)
    text, data, syntax = read_toml(path)
    if data is None:
        return None, ParsedFile(path, text, [syntax] if syntax else [])
    peer, issues = parse_peer_data(data, name)
    return peer, ParsedFile(path, text, issues)


def _raise_first(parsed: ParsedFile) -> None:
    if parsed.issues:
        issue = parsed.issues[0]
        line, _ = parsed.position(issue)
        raise ProfileError.at(issue.message, _display(parsed.path), line)


def _display(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def resolve_profile_dir(ref: str | Path) -> Path:
    """A profile given as a folder path, or as an id under ./profiles or $NETSETUP_PROFILES.

    The folder comes back resolved: a profile reached through a symlink (profiles/alias ->
    acme-dental) is the real folder, so its id (the folder's name) is the same everywhere: the
    state folder's paths, the audit log and the client config."""
    candidate = Path(ref)
    if candidate.name in ("", ".", ".."):  # `provision .` from inside a profile folder
        candidate = candidate.resolve()
    if (candidate / PROFILE_FILE).is_file():
        return candidate.resolve()
    base = Path(os.environ.get("NETSETUP_PROFILES", "profiles"))
    if (base / str(ref) / PROFILE_FILE).is_file():
        return (base / str(ref)).resolve()
    if candidate.is_dir():
        raise NotFoundError(f"{candidate} has no {PROFILE_FILE}", where=str(candidate))
    raise NotFoundError(f"no profile {str(ref)!r} (looked for {candidate} and {base / str(ref)})")


def load_profile(ref: str | Path) -> Profile:
    """Load and check a profile; the first schema problem raises ProfileError with file:line."""
    profile_dir = resolve_profile_dir(ref)
    profile, parsed = parse_profile_file(profile_dir)
    _raise_first(parsed)
    assert profile is not None
    return profile


def peer_path(profile: Profile, name: PeerName) -> Path:
    return profile.peers_dir / f"{PeerName(name)}.toml"


# A revoked peer whose name was given to a new peer before its quarantine ended keeps holding its
# address under this name: still peers/*.toml (the allocator and `validate` read it), but never a
# peer name (names hold no '.'), so `list` and `render` do not take it for a peer.
RETIRED_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,31})\.revoked-([0-9a-f]{16})$")


def retired_path(profile: Profile, name: PeerName, public_key: str) -> Path:
    """Where the revoked record of `name` with `public_key` goes when the name is reused."""
    tag = fingerprint(public_key).removeprefix("SHA256:")
    return profile.peers_dir / f"{PeerName(name)}.revoked-{tag}.toml"


def expected_peer_name(path: Path) -> str:
    """The name a peer file must carry: its stem, or the peer's name for a retired record."""
    retired = RETIRED_RE.fullmatch(path.stem)
    return retired.group(1) if retired else path.stem


def peer_names(profile: Profile, *, sort: bool = True) -> list[str]:
    """The stems of the peer files (retired records left out); not yet checked as names."""
    try:
        names = [
            name[:-5]
            for name in os.listdir(profile.peers_dir)
            if name.endswith(".toml")
            and not name.startswith(".")
            and not RETIRED_RE.fullmatch(name[:-5])
        ]
    except FileNotFoundError:
        return []
    return sorted(names) if sort else names


def load_peer(profile: Profile, name: PeerName) -> Peer:
    path = peer_path(profile, name)
    if not path.is_file():
        raise NotFoundError(f"no peer {name!r} in profile {profile.id!r}", where=_display(path))
    peer, parsed = parse_peer_file(path)
    _raise_first(parsed)
    assert peer is not None
    return peer


def load_peers(profile: Profile) -> list[Peer]:
    peers = []
    for stem in peer_names(profile):
        try:
            name = PeerName(stem, "peer file name")
        except ValueError as exc:
            raise ProfileError.at(str(exc), _display(profile.peers_dir / f"{stem}.toml")) from None
        peers.append(load_peer(profile, name))
    return peers


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def peer_to_toml(peer: Peer) -> str:
    lines = [
        "# Written by netsetup. No secrets here: the keys that must stay private live with the",
        "# assistant, on the gateway and in the admin's state directory.",
        f"name = {_toml_string(peer.name)}",
        f"mode = {_toml_string(peer.mode)}",
        f"status = {_toml_string(peer.status)}",
        f"public_key = {_toml_string(peer.public_key)}",
        f"key_origin = {_toml_string(peer.key_origin)}",
        f"address_v4 = {_toml_string(str(peer.address_v4))}",
    ]
    if peer.address_v6 is not None:
        lines.append(f"address_v6 = {_toml_string(str(peer.address_v6))}")
    lines.append(f"created = {format_time(peer.created)}")
    for key in ("expires", "rotated", "revoked"):
        moment = getattr(peer, key)
        if moment is not None:
            lines.append(f"{key} = {format_time(moment)}")
    return "\n".join(lines) + "\n"


_DT = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)"


# The exact shape peer_to_toml writes. Strings are limited to characters that need no escaping
# in TOML, comments to printable ASCII, so this text means to tomllib what it means here.
@functools.cache
def _canonical() -> re.Pattern[str]:
    # compiled on first use: `provision` never reads a peer file and should not pay for it
    return re.compile(
        r"(?:#[ -~]*\n)*"
        r'name = "([a-z0-9-]{1,32})"\n'
        r'mode = "([a-z]{1,16})"\n'
        r'status = "([a-z]{1,16})"\n'
        r'public_key = "([A-Za-z0-9+/=]{1,64})"\n'
        r'key_origin = "([a-z]{1,16})"\n'
        r'address_v4 = "([0-9.]{1,15})"\n'
        r'(?:address_v6 = "([0-9a-f:.]{1,45})"\n)?'
        rf"created = {_DT}\n"
        rf"(?:expires = {_DT}\n)?"
        rf"(?:rotated = {_DT}\n)?"
        rf"(?:revoked = {_DT}\n)?"
    )


_FIELDS = (
    "name",
    "mode",
    "status",
    "public_key",
    "key_origin",
    "address_v4",
    "address_v6",
    "created",
    "expires",
    "rotated",
    "revoked",
)


def canonical_peer_data(text: str) -> dict[str, Any] | None:
    """The data tomllib would return for `text`, when `text` is a canonical peer file; else None."""
    match = _canonical().fullmatch(text)
    if match is None:
        return None
    data: dict[str, Any] = {}
    for field, value in zip(_FIELDS, match.groups(), strict=True):
        if value is None:
            continue
        if field in ("created", "expires", "rotated", "revoked"):
            try:
                data[field] = datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
            except ValueError:
                return None  # e.g. month 13: let tomllib word the error
        else:
            data[field] = value
    return data


def write_peer(profile: Profile, peer: Peer) -> Path:
    return write_peer_text(profile, PeerName(peer.name), peer_to_toml(peer))


def write_peer_text(profile: Profile, name: PeerName, text: str) -> Path:
    ensure_dir(profile.peers_dir)
    path = peer_path(profile, name)
    atomic_write(path, text, mode=0o644)
    return path
