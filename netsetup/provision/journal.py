"""A change in flight, written down before it starts, so that a crash at any moment is finished or
undone by the next command on the same profile.

A change (provision, rotate, revoke, renew) has one commit point: the atomic write of the peer
file. Before it, it writes only what can be taken back (a new preshared key, the client files
under hidden staging names, a revoked record renamed aside); after it, it puts the staged files in
place, removes what the change made stale (old preshared keys, old configs and QR codes, which
hold a dead private key) and appends the audit line. The journal lists all of that, and nothing
secret: paths, a hash and the audit line.

Recovery reads the peer file: when it is exactly the text the change meant to write, the change
happened and is finished; otherwise it is undone. Either way, nothing is left half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from netsetup.errors import InputError
from netsetup.fsutil import (
    SECRET_FILE_MODE,
    atomic_write,
    remove_empty_dir,
    remove_file,
    remove_tree,
    rename,
)
from netsetup.keys import sha256  # hashlib's, without loading libcrypto on every provision
from netsetup.profile.model import Profile
from netsetup.profile.store import RETIRED_RE, peer_path
from netsetup.profile.values import NAME_RE, PeerName, ProfileId
from netsetup.state import StateDir

STAGED_SUFFIX = ".pending"


def text_hash(text: str) -> str:
    return str(sha256(text.encode("utf-8")).hexdigest())


def staged(final: Path) -> Path:
    """The hidden name a file waits under until the change is committed."""
    return final.with_name(f".{final.name}{STAGED_SUFFIX}")


@dataclass(eq=False)  # nothing compares journals; each generated method costs every command
class Journal:
    """One change in flight: absolute paths, a hash and the audit line; never a secret."""

    peer: str
    commit: str  # sha256 of the peer file once the change is made
    audit: str = ""  # the audit line, appended once the change is made
    undo: list[str] = field(default_factory=list)  # written before the commit: removed on undo
    undo_dirs: list[str] = field(default_factory=list)  # created for them: removed when empty
    restore: list[tuple[str, str]] = field(default_factory=list)  # renames reversed on undo
    publish: list[tuple[str, str]] = field(default_factory=list)  # staged -> final, after commit
    remove: list[str] = field(default_factory=list)  # stale secrets, after commit (files, folders)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Journal:
        raw = json.loads(text)
        raw["restore"] = [tuple(pair) for pair in raw["restore"]]
        raw["publish"] = [tuple(pair) for pair in raw["publish"]]
        return cls(**raw)


def missing_dirs(path: Path) -> list[Path]:
    """The folders of `path` (itself included) that do not exist yet, deepest first."""
    out = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        out.append(folder)
    return out


def begin(state: StateDir, profile_id: ProfileId, journal: Journal) -> Path:
    """Write the journal down: the first change of every command that changes a peer."""
    journal.undo_dirs.extend(str(p) for p in missing_dirs(state.journal_dir(profile_id)))
    state.make_journal_dir(profile_id)
    path = state.journal_path(profile_id, PeerName(journal.peer))
    atomic_write(path, journal.to_json(), mode=SECRET_FILE_MODE)
    return path


def _index(profile: Profile) -> Path:
    from netsetup.provision.addresses import INDEX_FILE

    return profile.directory / INDEX_FILE


def committed(profile: Profile, journal: Journal) -> bool:
    try:
        text = peer_path(profile, PeerName(journal.peer)).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    return text_hash(text) == journal.commit


def _paths(journal: Journal) -> list[Path]:
    """Every file the change writes, moves or removes."""
    named = [*journal.undo, *journal.remove]
    for pair in [*journal.restore, *journal.publish]:
        named.extend(pair)
    return [Path(p) for p in named]


def sweep_temps(paths: list[Path]) -> None:
    """Remove the temp files an atomic write of any of `paths` left when it was killed
    (`.<name>.<random>.tmp` beside it): one may hold a secret."""
    for path in paths:
        for temp in path.parent.glob(f".{path.name}.*.tmp"):
            remove_file(temp)


def undo(path: Path, journal: Journal, profile: Profile) -> None:
    """Take back everything written before the commit; the journal goes last."""
    sweep_temps([*_paths(journal), peer_path(profile, PeerName(journal.peer))])
    for done, original in journal.restore:
        if os.path.lexists(done) and not os.path.lexists(original):
            rename(Path(done), Path(original))
    for item in journal.undo:
        remove_file(Path(item))
    remove_file(path)
    for folder in sorted(journal.undo_dirs, key=lambda p: -len(Path(p).parts)):
        remove_empty_dir(Path(folder))


def finish(
    state: StateDir, path: Path, journal: Journal, profile: Profile, *, recovered: bool = False
) -> None:
    """Put the staged files in place, remove what the change made stale, log it; journal last."""
    if recovered:
        sweep_temps([*_paths(journal), peer_path(profile, PeerName(journal.peer)), _index(profile)])
    for source, target in journal.publish:
        if os.path.lexists(source):
            rename(Path(source), Path(target))
    for item in journal.remove:
        if os.path.isdir(item) and not os.path.islink(item):
            remove_tree(Path(item))
        else:
            remove_file(Path(item))
    if journal.audit and not (recovered and state.audit_has(journal.audit)):
        state.append_audit(journal.audit)
    remove_file(path)
    remove_empty_dir(path.parent)


CLIENT_EXTENSIONS = ("conf", "png", "svg")


def _real(path: str | Path) -> Path:
    """`path` with its folders' links resolved (the last component kept as it is)."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _ours(item: str, journal: Journal, profile: Profile, home: Path) -> bool:
    """Whether a change of `journal.peer` could have named `item`: anything below the profile's
    own state folder, the peer's file or retired record in peers/, or a client file (its config
    or QR code, or their staged names) wherever --out put it."""
    if ".." in Path(item).parts:
        return False
    path = _real(item)
    if home in path.parents:
        return True
    if path.parent == _real(profile.peers_dir / "x").parent:
        retired = RETIRED_RE.fullmatch(path.name.removesuffix(".toml"))
        return path.name == f"{journal.peer}.toml" or (
            retired is not None and retired.group(1) == journal.peer
        )
    finals = {f"{profile.network.client_interface}.{ext}" for ext in CLIENT_EXTENSIONS}
    return path.name in finals or path.name in {staged(Path(f)).name for f in finals}


def _well_formed(path: Path, journal: Journal, profile: Profile, home: Path) -> bool:
    if not isinstance(journal.peer, str) or not NAME_RE.fullmatch(journal.peer):
        return False
    if path.name != f"{journal.peer}.json":
        return False
    named = _paths(journal)
    if not all(_ours(str(p), journal, profile, home) for p in named):
        return False
    # only a folder below the state folder is removed whole; elsewhere, files only
    if any(os.path.isdir(p) and home not in _real(p).parents for p in journal.remove):
        return False
    # folders go only when empty, and only those above a file the change names
    above = {folder for p in [*named, path] for folder in _real(p).parents}
    return all(_real(d) in above or home in _real(d).parents for d in journal.undo_dirs)


def check(
    path: Path, journal: Journal, profile: Profile, profile_id: ProfileId, state: StateDir
) -> None:
    """Refuse a record naming a file no change writes: recovery removes and renames what a
    record names, so a crafted one could otherwise remove or move any file the admin can."""
    home = _real(state.root / profile_id / "x").parent
    try:
        ok = _well_formed(path, journal, profile, home)
    except (TypeError, ValueError):  # a path that is not a string, or holds a NUL
        ok = False
    if not ok:
        raise InputError(
            "a record of an interrupted change names a file netsetup never writes; "
            "look at it, then remove it",
            where=str(path),
        )


def recover(profile: Profile, profile_id: ProfileId, state: StateDir) -> None:
    """Finish or undo every change a crash interrupted on this profile. Call under its lock."""
    folder = state.journal_dir(profile_id)
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing in flight; a file in the way is reported where the state folder is made
    for name in names:
        path = folder / name
        if name.startswith(".") and name.endswith(".tmp"):
            remove_file(path)  # a journal whose own write was interrupted: nothing followed it
            continue
        if not name.endswith(".json"):
            continue
        try:
            journal = Journal.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise InputError(
                "a record of an interrupted change is damaged; look at it, then remove it",
                where=str(path),
            ) from None
        check(path, journal, profile, profile_id, state)
        if committed(profile, journal):
            finish(state, path, journal, profile, recovered=True)
        else:
            undo(path, journal, profile)
            sweep_temps([_index(profile)])
    with contextlib.suppress(OSError):
        os.rmdir(folder)
