"""Find the profiles under the paths given to validate and parse every file once.

Schema problems (NS0xx) come out of parsing; the loader turns them into findings. Everything else
that is read (notes, client configs left behind, dotfiles in peers/, hidden folders such as
`.backup/` or `.handoff/`) is kept as text for the secret scan, because a private key must not sit
anywhere under profiles/. Only `.git` folders and netsetup's own cache and lock files in peers/
are left out.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from netsetup.errors import NotFoundError
from netsetup.profile.schema import SchemaIssue, parse_peer_data, parse_profile_data
from netsetup.profile.store import (
    PEERS_DIR,
    PROFILE_FILE,
    ParsedFile,
    expected_peer_name,
    parse_peer_file,
    read_toml,
)
from netsetup.validate.context import Context, OtherFile, PeerEntry, ProfileEntry, Tree, display
from netsetup.validate.fastpeer import canonical_peer_data, fast_peer

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
                _add_other(root, seen, others)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            if PROFILE_FILE in filenames:
                _add_profile(here, seen, profiles, others, ctx)
                if PEERS_DIR in dirnames:
                    dirnames.remove(PEERS_DIR)  # read by _add_profile
                filenames = [f for f in filenames if f not in SKIPPED_PROFILE_FILES]
            for name in sorted(filenames):
                _add_other(here / name, seen, others)
    return Tree(profiles, others)


def _first_visit(path: Path, seen: set[Path]) -> bool:
    key = path.resolve()
    if key in seen:
        return False
    seen.add(key)
    return True


def _add_other(path: Path, seen: set[Path], others: list[OtherFile]) -> None:
    if not path.is_file() or not _first_visit(path, seen):
        return
    if path.stat().st_size > MAX_SCANNED_BYTES:
        return
    others.append(OtherFile(path, path.read_bytes().decode("utf-8", errors="replace")))


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
    text, data, syntax = read_toml(path)
    if data is None:
        profile, parsed = None, ParsedFile(path, text, [syntax] if syntax else [])
    else:
        profile, issues = parse_profile_data(data, directory)
        parsed = ParsedFile(path, text, issues)
    _report_schema(parsed, ctx)
    entry = ProfileEntry(directory.name, directory, profile, data, parsed)
    peers_dir = directory / PEERS_DIR
    if peers_dir.is_dir():
        for dirpath, dirnames, filenames in os.walk(peers_dir):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            at_top = here == peers_dir
            for name in sorted(filenames):
                if at_top and name.endswith(".toml") and not name.startswith("."):
                    # peer files are unique once their profile is: no resolve() per peer
                    entry.peers.append(_load_peer(here / name, ctx))
                elif at_top and name in SKIPPED_PEER_FILES:
                    continue
                else:
                    _add_other(here / name, seen, others)
    profiles.append(entry)


def _load_peer(path: Path, ctx: Context) -> PeerEntry:
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
        data = canonical_peer_data(text) or tomllib.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        peer, parsed = parse_peer_file(path)  # the slow path words the syntax error
        _report_schema(parsed, ctx)
        return PeerEntry(peer, parsed)
    name = expected_peer_name(path)  # a retired record (maria.revoked-<tag>) is maria's
    peer = fast_peer(data, name)
    issues: list[SchemaIssue] = []
    if peer is None:
        peer, issues = parse_peer_data(data, name)
    parsed = ParsedFile(path, text, issues)
    _report_schema(parsed, ctx)
    return PeerEntry(peer, parsed)


def _report_schema(parsed: ParsedFile, ctx: Context) -> None:
    for issue in parsed.issues:
        line, column = parsed.position(issue)
        ctx.report_at(display(parsed.path), line, column, issue.code, issue.message)
