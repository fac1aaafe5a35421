"""Tunnel address allocation: the lowest free address, never one that any peer file holds.

The peer files are the truth: every `peers/*.toml`, readable or not. A file whose addresses cannot
be read (a git merge left `<<<<<<<` markers in it, it is not TOML, it cannot be opened) stops
`provision` with its name and line: an address it may hold must not be handed out again.

`<profile>/.peers-index.json` is a cache of what each file holds, so that a provision at 10,000
peers does not read 10,000 files. An entry is used only while its file's stamp is unchanged:

    (inode, size, mtime_ns, ctime_ns) from one stat(2) of the file, every time.

Why this stamp is safe:
  * The directory listing is read every time, so a file that arrived or left is always seen,
    whatever the folder's mtime says (tar, `cp -a`, a restored mtime, the same clock tick).
  * ctime cannot be set from user space: writing, renaming over or `utime` all move it to the
    current time. A file replaced by another of the same size, with its mtime restored, has a new
    ctime (and, when renamed over, a new inode).
  * Two changes inside one tick of the file system's clock leave the same ctime. An entry is
    therefore stored only when its ctime is older than the moment `load` started, read from the
    same file system clock (the lock file is touched and its ctime read back); a file changed
    that recently is read again next time. This is git's "racy clean" rule, made strict.
  * A copied or committed index does not match: inodes and ctimes are those of another tree.
Hashing the content would be safe as well but costs reading every file; the stamp costs one stat
per file. What the stamp does not cover is an NFS client's attribute cache: stat(2) may answer
from it for a few seconds (acregmax) after another machine rewrote a file. Share a profile through
git, not through one NFS folder written from several machines, or delete the index there.

Without an index (a fresh clone, another admin), files are read with a lean scan: one open and
read each, and the canonical shape `peer_to_toml` writes matched as text (no TOML parser, no
`Peer`); only a file of another shape goes through the full parser. The values that the
allocator uses are checked as the schema checks them, and a canonical file with a bad name, mode
or key falls back to the full parser too, so cold and warm runs give the same answer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.errors import ConflictError, ProfileError
from netsetup.fsutil import atomic_write
from netsetup.keys import is_valid_key
from netsetup.profile.model import MODES, PEER_STATUSES, Peer, Profile
from netsetup.profile.store import _canonical, parse_peer_file
from netsetup.profile.values import NAME_RE

INDEX_FILE = ".peers-index.json"  # beside profile.toml, outside peers/ (see above)
INDEX_VERSION = 6
# The profile lock (service.LOCK_FILE): present whenever the index is loaded, touched to read
# the file system's clock.
CLOCK_PROBE = ".lock"
# Without the probe, the system clock with a margin wider than any file system's time
# granularity (FAT: 2 s) stands in for the file system's clock.
CLOCK_MARGIN_NS = 3_000_000_000

# What an address-holding peer tells the allocator: its addresses as integers and, for a revoked
# peer, when the address leaves quarantine (Unix seconds). Plain tuples of integers keep loading
# and saving the index of 10,000 peers to a few milliseconds.
Holding = tuple[int, int | None, float | None]
# inode, size, mtime_ns, ctime_ns; None: changed too recently to be trusted next time (see above)
Stamp = tuple[int, int, int, int]


def holding_for(peer: Peer, quarantine: timedelta) -> Holding:
    released = None
    if peer.status == "revoked":
        released = ((peer.revoked or peer.created) + quarantine).timestamp()
    v6 = int(peer.address_v6) if peer.address_v6 else None
    return (int(peer.address_v4), v6, released)


def file_stamp(stat: os.stat_result) -> Stamp:
    """What changes when a file is rewritten, renamed over, edited in place or touched."""
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _fs_now(peers_dir: Path) -> int:
    """Now, on the clock (and at the granularity) the file system stamps ctimes with."""
    probe = peers_dir / CLOCK_PROBE
    try:
        os.utime(probe)
        return os.stat(probe).st_ctime_ns
    except OSError:
        return time.time_ns() - CLOCK_MARGIN_NS


def _ints(values: object, optional: bool = False) -> list[Any]:
    if not isinstance(values, list) or not all(
        type(v) is int or (optional and v is None) for v in values
    ):
        raise ValueError("damaged index")
    return values


def _read_index(path: Path, quarantine_days: int) -> dict[str, tuple[Holding, Stamp]]:
    """{name: (holding, stamp)}; ValueError when of another version, profile setting or damaged.

    Parallel arrays of plain values parse and check in a few milliseconds for 10,000 peers."""
    raw = json.loads(path.read_bytes())
    if not isinstance(raw, dict) or raw.get("version") != INDEX_VERSION:
        raise ValueError("index of another version")
    if raw.get("quarantine_days") != quarantine_days:
        raise ValueError("index made with another quarantine")  # the release times moved
    names = raw.get("names")
    if not isinstance(names, list) or not all(type(n) is str for n in names):
        raise ValueError("damaged index")
    v4 = _ints(raw.get("v4"))
    v6 = _ints(raw.get("v6"), optional=True)
    released = raw.get("released")
    if not isinstance(released, list) or not all(
        r is None or type(r) in (int, float) for r in released
    ):
        raise ValueError("damaged index")
    stamps = [_ints(raw.get(key)) for key in ("ino", "size", "mtime_ns", "ctime_ns")]
    holdings = zip(v4, v6, released, strict=True)
    return dict(zip(names, zip(holdings, zip(*stamps, strict=True), strict=True), strict=True))


def _read_file(folder: int, name: str, size: int) -> bytes:
    """The whole file; one read when it is no bigger than its stat said."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _utc_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()  # 'Z' makes it aware (Python >= 3.11)


def _lean_holding(text: str, quarantine: float) -> Holding | None:
    """The holding of a canonical peer file with valid values, or None (let the full parser judge).

    Checks what `parse_peer_data` rejects a file for (name, mode, key, addresses, times), so that
    a file accepted here is one the full parser turns into a `Peer` too."""
    match = _canonical().fullmatch(text)
    if match is None:
        return None
    name, mode, status, key, _, v4, v6, created, expires, rotated, revoked = match.groups()
    if not (NAME_RE.match(name) and mode in MODES and status in PEER_STATUSES):
        return None
    if not is_valid_key(key):
        return None
    try:
        a4 = int(ipaddress.IPv4Address(v4))
        a6 = int(ipaddress.IPv6Address(v6)) if v6 else None
        created_at = _utc_seconds(created)
        revoked_at = _utc_seconds(revoked) if revoked else None
        for moment in (expires, rotated):
            if moment:
                _utc_seconds(moment)
    except ValueError:
        return None
    if status != "revoked":
        return (a4, a6, None)
    return (a4, a6, (created_at if revoked_at is None else revoked_at) + quarantine)


def _unreadable(path: Path, problem: str, line: int | None = None) -> ProfileError:
    shown = os.path.relpath(path)
    where = str(path) if shown.startswith("..") else shown
    return ProfileError(
        f"cannot tell which addresses this peer file holds ({problem}); fix or remove it, "
        "then provision again: nothing was written",
        where=f"{where}:{line}" if line else where,
    )


def _conflict_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(("<<<<<<<", "=======", ">>>>>>>")):
            return number
    return None


def _full_holding(path: Path, quarantine: timedelta) -> Holding:
    """The holding of a file of another shape, through the TOML parser and the schema."""
    peer, parsed = parse_peer_file(path)
    if peer is not None:
        return holding_for(peer, quarantine)  # other schema issues are `validate`'s to report
    conflict = _conflict_line(parsed.text)
    if conflict is not None:
        raise _unreadable(path, "an unresolved git merge conflict", conflict)
    if not parsed.issues:
        raise _unreadable(path, "not a peer file")
    issue = parsed.issues[0]
    line, _ = parsed.position(issue)
    raise _unreadable(path, issue.message, line)


class AddressIndex:
    """What every peer file holds, from the cache where its stamp allows, else from the file.

    `problems` lists the files whose holding could not be read; `taken` refuses to answer while
    there is one, so nothing is allocated next to an address nobody can see."""

    def __init__(
        self,
        profile: Profile,
        entries: dict[str, tuple[Holding, Stamp | None]],
        problems: list[ProfileError] | None = None,
        fresh_from: int = 0,
    ) -> None:
        self.profile = profile
        self.entries = entries
        self.problems = problems or []
        self.fresh_from = fresh_from  # stamps with a ctime from here on are not stored

    @property
    def path(self) -> Path:
        return self.profile.directory / INDEX_FILE

    @classmethod
    def load(cls, profile: Profile) -> AddressIndex:
        """List peers/, stat every peer file and read those whose stamp is not in the index.

        The pass also sweeps temp files a killed writer left behind. Called under the lock."""
        fresh_from = _fs_now(profile.peers_dir)
        quarantine_days = profile.network.quarantine_days
        try:
            cached = _read_index(profile.directory / INDEX_FILE, quarantine_days)
        except (OSError, ValueError):
            cached = {}  # missing, damaged or stale: rebuilt from the peer files
        try:
            folder = os.open(profile.peers_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return cls(profile, {}, [], fresh_from)
        index = cls(profile, {}, [], fresh_from)
        try:
            changed = index._match(folder, cached)
            index._read_changed(folder, changed, timedelta(days=quarantine_days))
        finally:
            os.close(folder)
        return index

    def _match(
        self, folder: int, cached: dict[str, tuple[Holding, Stamp]]
    ) -> list[tuple[str, Stamp]]:
        """Take the cached entries whose stamp still matches; return the other peer files."""
        changed: list[tuple[str, Stamp]] = []
        for name in os.listdir(folder):
            if name.startswith("."):
                if name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=folder)
                continue
            if not name.endswith(".toml"):
                continue
            try:
                stamp = file_stamp(os.stat(name, dir_fd=folder))
            except FileNotFoundError:
                if os.path.lexists(self.profile.peers_dir / name):  # a dangling symlink
                    self.problems.append(
                        _unreadable(self.profile.peers_dir / name, "it points nowhere")
                    )
                continue
            except OSError as exc:
                self.problems.append(
                    _unreadable(self.profile.peers_dir / name, exc.strerror or "unreadable")
                )
                continue
            known = cached.get(name[:-5])
            if known is not None and known[1] == stamp:
                self.entries[name[:-5]] = known
            else:
                changed.append((name, stamp))
        return changed

    def _read_changed(
        self, folder: int, changed: list[tuple[str, Stamp]], quarantine: timedelta
    ) -> None:
        seconds = quarantine.total_seconds()
        for name, stamp in changed:
            path = self.profile.peers_dir / name
            try:
                data = _read_file(folder, name, stamp[1])
            except FileNotFoundError:
                continue  # removed since the listing: it holds nothing any more
            except OSError as exc:
                self.problems.append(_unreadable(path, exc.strerror or "unreadable"))
                continue
            try:
                holding = _lean_holding(data.decode("utf-8"), seconds)
            except UnicodeDecodeError:
                holding = None
            try:
                if holding is None:
                    holding = _full_holding(path, quarantine)
            except ProfileError as exc:
                self.problems.append(exc)
                continue
            self.entries[name[:-5]] = (holding, stamp)

    def save(self) -> None:
        """Write the index. No fsync: it is a cache that `load` rebuilds from the peer files.

        Entries whose file changed since `load` started are left out (see the module's note)."""
        kept = [
            (name, holding, stamp)
            for name, (holding, stamp) in self.entries.items()
            if stamp is not None and stamp[3] < self.fresh_from
        ]
        data = {
            "version": INDEX_VERSION,
            "note": "cache written by netsetup; safe to delete",
            "quarantine_days": self.profile.network.quarantine_days,
            "names": [name for name, _, _ in kept],
            "v4": [h[0] for _, h, _ in kept],
            "v6": [h[1] for _, h, _ in kept],
            "released": [h[2] for _, h, _ in kept],
            "ino": [s[0] for _, _, s in kept],
            "size": [s[1] for _, _, s in kept],
            "mtime_ns": [s[2] for _, _, s in kept],
            "ctime_ns": [s[3] for _, _, s in kept],
        }
        atomic_write(self.path, json.dumps(data, separators=(",", ":")), durable=False)

    def record(self, name: str, holding: Holding, peer_file: Path) -> None:
        """Note a peer file just written (it changed after `load` began: read again next time)."""
        self.entries[name] = (holding, file_stamp(peer_file.stat()))

    def taken(self, now: datetime) -> tuple[set[int], set[int]]:
        """The IPv4 and IPv6 addresses held at `now`; ProfileError while a file is unreadable."""
        if self.problems:
            first = self.problems[0]
            if len(self.problems) == 1:
                raise first
            more = f"; {len(self.problems) - 1} more peer file(s) like it"
            raise ProfileError(first.message + more, where=first.where)
        moment = now.timestamp()
        held = [h for h, _ in self.entries.values() if h[2] is None or h[2] > moment]
        return {h[0] for h in held}, {h[1] for h in held if h[1] is not None}


def allocate_address(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address,
    taken: set[int],
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The lowest usable address of `network`: never the network or broadcast address (IPv4 up
    to /30), never the IPv6 subnet-router anycast address, never the gateway, never `taken`."""
    first = int(network.network_address)
    last = int(network.broadcast_address)
    if network.version == 4 and network.prefixlen <= 30:
        first, last = first + 1, last - 1
    elif network.version == 6 and network.prefixlen <= 126:
        first += 1
    blocked = taken | {int(gateway)}
    candidate = first
    # Walk up from the bottom; the loop ends after at most len(blocked)+1 steps.
    while candidate <= last:
        if candidate not in blocked:
            return ipaddress.ip_address(candidate)
        candidate += 1
    raise ConflictError(
        f"no free address left in {network} "
        f"({len(taken)} held, revoked ones stay in quarantine for a while)"
    )
