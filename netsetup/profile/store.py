"""Reading and writing profiles and peer files on disk."""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from netsetup.errors import NotFoundError, ProfileError
from netsetup.fsutil import atomic_write, ensure_dir
from netsetup.keys import fingerprint
from netsetup.profile.model import Peer, Profile
from netsetup.profile.schema import (
    PEER_FIELDS,
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


def read_regular_bytes(path: Path) -> bytes | str:
    """The bytes of a regular file, or why it is not one (a FIFO, a directory, a device).
    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO or device"
            return f"cannot read this file: not a regular file but {kind}"
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def read_toml(path: Path) -> tuple[str, dict[str, Any] | None, SchemaIssue | None]:
    """Text, parsed data (None on a syntax error) and the syntax issue, if any."""
    try:
        raw = read_regular_bytes(path)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {path}") from None
    if isinstance(raw, str):
        return "", None, SchemaIssue((), SYNTAX, raw, 1, 1)
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
        raw = read_regular_bytes(path)
        text = raw.decode("utf-8") if isinstance(raw, bytes) else None
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


def profile_site(profile: Profile, name: str | None, *, where: str | None = None) -> Profile:
    """The profile as its gateway `name` sees it (None: the first; `Profile.site`), or an error
    that lists the gateways there are. `where`: what named the site (a peer file, an option)."""
    try:
        return profile.site(name)
    except KeyError:
        names = ", ".join(repr(g.name) for g in profile.gateways)
        raise NotFoundError(
            f"profile {profile.id!r} has no gateway {name!r} (its gateways: {names})",
            where=where or _display(profile.profile_file),
        ) from None


def peer_site(profile: Profile, peer: Peer) -> Profile:
    """The profile as the gateway of `peer` sees it: the site its file names, else the first."""
    return profile_site(profile, peer.gateway, where=_display(peer_path(profile, peer.name)))


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
        if os.path.lexists(path):  # in the way, not missing
            raise ProfileError(
                f"the peer file of {name!r} is not a regular file (a folder, a FIFO or a broken "
                "link); `netsetup validate` says more",
                where=_display(path),
            )
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


def readable_peers(profile: Profile) -> list[Peer]:
    """Every peer record that parses, retired ones included, in file order; unreadable files
    are left out (never an error): what a long-running service reads again and again."""
    try:
        paths = sorted(profile.peers_dir.glob("*.toml"))
    except OSError:
        return []
    found = []
    for path in paths:
        if not path.name.startswith("."):
            peer, _ = parse_peer_file(path)
            if peer is not None:
                found.append(peer)
    return found


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


_HEADER = (
    "# Written by netsetup. No secrets here: the keys that must stay private live with the\n"
    "# assistant, on the gateway and in the admin's state directory.\n"
)


def peer_to_toml(peer: Peer) -> str:
    """The peer file: every field of `PEER_FIELDS` that has a value, in the table's order."""
    lines = [_HEADER]
    for field in PEER_FIELDS:
        value = getattr(peer, field.key)
        if value is None:
            continue
        text = format_time(value) if field.toml is datetime else _toml_string(str(value))
        lines.append(f"{field.key} = {text}\n")
    return "".join(lines)


# What the fast reader accepts, built from PEER_FIELDS: the keys in the table's order, each at most
# once, strings limited to characters that need no escaping, date-times as netsetup writes them
# (UTC, "Z"); around them what a person or an editor adds and TOML allows: blank lines, comment
# lines, a comment after a value, spaces and tabs, CRLF line ends. So this text means to tomllib
# exactly what it means here; anything else (another order, escapes, an offset, a comment with a
# control character) goes to tomllib.
_DT = r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"  # ASCII digits only, as TOML
_COMMENT = r"#[^\x00-\x08\x0a-\x1f\x7f]*"  # TOML: no control character but tab in a comment
_END = rf"[ \t]*(?:{_COMMENT})?\r?\n"  # the end of a line: spaces, a comment, LF or CRLF
_SKIP = rf"(?:{_END})*"  # blank and comment lines


@functools.cache
def _canonical() -> re.Pattern[str]:
    # compiled on first use: `provision` never reads a peer file and should not pay for it
    parts = []
    for field in PEER_FIELDS:
        value = f'"({field.shape})"' if field.toml is str else _DT
        line = rf"{_SKIP}[ \t]*{field.key}[ \t]*=[ \t]*{value}{_END}"
        parts.append(line if field.required else f"(?:{line})?")
    return re.compile("".join(parts) + _SKIP)


def canonical_peer_data(text: str) -> dict[str, Any] | None:
    """The data tomllib would return for `text`, when `text` is a peer file in the fast reader's
    shape (see above); else None."""
    match = _canonical().fullmatch(text)
    if match is None:
        return None
    data: dict[str, Any] = {}
    for field, value in zip(PEER_FIELDS, match.groups(), strict=True):
        if value is None:
            continue
        if field.toml is datetime:
            try:
                data[field.key] = datetime.fromisoformat(value)  # "Z": tzinfo is UTC
            except ValueError:
                return None  # e.g. month 13: let tomllib word the error
        else:
            data[field.key] = value
    return data


def write_peer(profile: Profile, peer: Peer) -> Path:
    return write_peer_text(profile, PeerName(peer.name), peer_to_toml(peer))


def write_peer_text(profile: Profile, name: PeerName, text: str) -> Path:
    ensure_dir(profile.peers_dir)
    path = peer_path(profile, name)
    atomic_write(path, text, mode=0o644)
    return path
