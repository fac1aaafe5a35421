"""Find the profiles under the paths given to validate and parse every file once.

Schema problems (NS0xx) come out of parsing; the loader turns them into findings. Everything else
that is read (notes, client configs left behind, dotfiles in peers/, hidden folders such as
`.backup/` or `.handoff/`) is kept as text for the secret scan, because a private key must not sit
anywhere under profiles/. Only `.git` folders and netsetup's own cache and lock files in peers/
are left out.

No file stops the run: a profile or peer file that cannot be read as TOML (see reading.py) is an
NS001 finding on it, and a parser that raises anyway is an NS000 finding on its file only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from netsetup.errors import NotFoundError
from netsetup.profile.model import Peer, Profile
from netsetup.profile.schema import (
    BAD_VALUE,
    SYNTAX,
    SchemaIssue,
    parse_peer_data,
    parse_profile_data,
)
from netsetup.profile.store import (
    PEERS_DIR,
    PROFILE_FILE,
    RETIRED_RE,
    ParsedFile,
    expected_peer_name,
)
from netsetup.validate.context import Context, OtherFile, PeerEntry, ProfileEntry, Tree, display
from netsetup.validate.fastpeer import canonical_peer_data, fast_peer
from netsetup.validate.reading import MAX_TOML_BYTES, Unreadable, decode, parse_toml, read_regular
from netsetup.validate.rules.internal import report_check_failed

T = TypeVar("T")

MAX_SCANNED_BYTES = 8 * 1024 * 1024  # larger files are not profiles; skip them in the secret scan
SKIPPED_DIRS = frozenset((".git",))  # the repository's own database, not its content
# netsetup's own files in peers/ (the address index cache and the provisioning lock): no secrets
SKIPPED_PEER_FILES = frozenset((".index.json", ".lock"))
# netsetup's address index cache beside profile.toml (names and numbers, no secrets)
SKIPPED_PROFILE_FILES = frozenset((PROFILE_FILE, ".peers-index.json"))


def load_tree(paths: list[Path], ctx: Context) -> Tree:
    seen: set[Path] = set()
    profiles: list[ProfileEntry] = []
    others: list[OtherFile] = []
    for root in paths:
        if not root.exists():
            raise NotFoundError("no such file or directory", where=display(root))
        if root.is_file():
            if root.name == PROFILE_FILE:
                _add_profile(root.parent, seen, profiles, others, ctx)
            else:
                _add_other(root, seen, others, ctx)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            if PROFILE_FILE in dirnames:  # meant as a profile, surely: say why it is not one
                _report_unreadable(here / PROFILE_FILE, "not a regular file but a directory", ctx)
            if PROFILE_FILE in filenames:
                _add_profile(here, seen, profiles, others, ctx)
                if PEERS_DIR in dirnames:
                    dirnames.remove(PEERS_DIR)  # read by _add_profile
                filenames = [f for f in filenames if f not in SKIPPED_PROFILE_FILES]
            for name in sorted(filenames):
                _add_other(here / name, seen, others, ctx)
    return Tree(profiles, others)


def _first_visit(path: Path, seen: set[Path]) -> bool:
    try:
        key = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: reading it reports the problem
        key = path.absolute()
    if key in seen:
        return False
    seen.add(key)
    return True


def _add_other(path: Path, seen: set[Path], others: list[OtherFile], ctx: Context) -> None:
    if not path.is_file() or not _first_visit(path, seen):
        return
    try:
        raw = read_regular(path, MAX_SCANNED_BYTES)
    except Unreadable as exc:
        if exc.kind == "error":  # permission denied, an I/O error: the secret scan missed it
            _report_unreadable(path, f"{exc.reason}; not scanned for secrets", ctx)
        return  # too large to be a profile's, or gone since the walk: as before, not scanned
    others.append(OtherFile(path, raw.decode("utf-8", errors="replace")))


def _add_profile(
    directory: Path,
    seen: set[Path],
    profiles: list[ProfileEntry],
    others: list[OtherFile],
    ctx: Context,
) -> None:
    path = directory / PROFILE_FILE
    if not _first_visit(path, seen):
        return
    text, data, issues = _read_toml(path)
    profile: Profile | None = None
    if data is not None:
        parsed_data = _guarded(path, ctx, lambda: parse_profile_data(data, directory))
        profile, issues = parsed_data or (None, [])
    parsed = ParsedFile(path, text, issues)
    _report_schema(parsed, ctx)
    entry = ProfileEntry(directory.name, directory, profile, data, parsed)
    peers_dir = directory / PEERS_DIR
    if peers_dir.is_symlink():  # provision refuses to write through it; not read either
        message = (
            "peers is a symbolic link: netsetup reads and writes peer files only inside the "
            "profile folder (provision refuses it); make it a real folder"
        )
        ctx.report_at(display(peers_dir), 1, 1, SYNTAX, message)
    elif peers_dir.is_dir():
        for dirpath, dirnames, filenames in os.walk(peers_dir):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            at_top = here == peers_dir
            if at_top:
                for name in dirnames:
                    if _is_peer_file(name):
                        _report_unreadable(here / name, "not a regular file but a directory", ctx)
            for name in sorted(filenames):
                if at_top and _is_peer_file(name):
                    # peer files are unique once their profile is: no resolve() per peer
                    path = here / name
                    # a retired record (maria.revoked-<tag>.toml) carries maria's name
                    entry.peers.append(_load_peer(path, expected_peer_name(path), ctx))
                elif at_top and name in SKIPPED_PEER_FILES:
                    continue
                else:
                    _add_other(here / name, seen, others, ctx)
    profiles.append(entry)


def _is_peer_file(name: str) -> bool:
    return name.endswith(".toml") and not name.startswith(".")


def _load_peer(path: Path, stem: str, ctx: Context) -> PeerEntry:
    # the canonical text of `provision` is read without tomllib (see fastpeer.py)
    text, data, issues = _read_toml(path, canonical_peer_data)
    peer: Peer | None = None
    if data is not None:
        parsed_data = _guarded(path, ctx, lambda: _peer_from(data, stem))
        peer, issues = parsed_data or (None, [])
    if peer is not None and peer.status != "revoked" and RETIRED_RE.fullmatch(path.stem):
        # it holds its address until its quarantine ends, seen by neither list nor render
        message = (
            f"a retired record ({path.name}) keeps a revoked peer's address in quarantine: "
            f'its status must be "revoked", not {peer.status!r}'
        )
        issues = [*issues, SchemaIssue(("status",), BAD_VALUE, message)]
    parsed = ParsedFile(path, text, issues)
    _report_schema(parsed, ctx)
    return PeerEntry(peer, parsed)


def _peer_from(data: dict[str, Any], stem: str) -> tuple[Peer | None, list[SchemaIssue]]:
    peer = fast_peer(data, stem)
    return (peer, []) if peer is not None else parse_peer_data(data, stem)


def _read_toml(
    path: Path, fast: Callable[[str], dict[str, Any] | None] | None = None
) -> tuple[str, dict[str, Any] | None, list[SchemaIssue]]:
    """Text, data (None when unreadable) and the issue that says why, never an exception."""
    try:
        raw = read_regular(path, MAX_TOML_BYTES)
    except Unreadable as exc:
        return "", None, [SchemaIssue((), SYNTAX, f"cannot read this file: {exc.reason}", 1, 1)]
    text, problem = decode(raw)
    if problem is not None:
        return text, None, [problem]
    data = fast(text) if fast is not None else None
    if data is None:
        data, problem = parse_toml(text)
    return text, data, [problem] if problem is not None else []


def _guarded(path: Path, ctx: Context, parse: Callable[[], T]) -> T | None:
    """`parse()`, or None and an NS000 finding on `path` when it raised: a bug in netsetup must
    cost the checks of one file, not the whole run."""
    try:
        return parse()
    except Exception as exc:
        report_check_failed(ctx, display(path), "reading this file", exc)
        return None


def _report_unreadable(path: Path, reason: str, ctx: Context) -> None:
    ctx.report_at(display(path), 1, 1, SYNTAX, f"cannot read this file: {reason}")


def _report_schema(parsed: ParsedFile, ctx: Context) -> None:
    for issue in parsed.issues:
        line, column = parsed.position(issue)
        ctx.report_at(display(parsed.path), line, column, issue.code, issue.message)
