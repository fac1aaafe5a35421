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
`Peer`); only a file of another shape goes through the full parser. A handful of unindexed files
(the usual case: those written since the index was saved) go through the full parser directly,
which costs less than compiling the lean scan's patterns. A canonical file is accepted by the
lean scan only when the full parser would make a `Peer` of it too (name, mode, status, key,
addresses and times are checked); any other goes to the full parser, so cold and warm runs give
the same answer. Likewise the index is rewritten only once the files it lacks cost more to parse
again than rewriting it.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import sys
import time
from array import array
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from netsetup.errors import ConflictError, NotFoundError, ProfileError
from netsetup.fsutil import atomic_write
from netsetup.profile.model import MODES, PEER_STATUSES, Peer, Profile
from netsetup.profile.schema import parse_peer_data
from netsetup.profile.store import ParsedFile, _canonical, read_toml
from netsetup.profile.values import parse_ipv6_fast

INDEX_FILE = ".peers-index.json"  # beside profile.toml, outside peers/ (see above)
INDEX_VERSION = 6
# The profile lock (service.LOCK_FILE): present whenever the index is loaded, touched to read
# the file system's clock.
CLOCK_PROBE = ".lock"
# Without the probe, the system clock with a margin wider than any file system's time
# granularity (FAT: 2 s) stands in for the file system's clock.
CLOCK_MARGIN_NS = 3_000_000_000
# From this many unindexed files on, the lean scan (see above) reads them
LEAN_SCAN_FROM = 32
# The index is rewritten once the files it lacks or has wrong number SAVE_AFTER + 1 per
# SAVE_EVERY_OF rows: until then, parsing those few files again costs less than writing every row.
SAVE_AFTER = 1
SAVE_EVERY_OF = 256

# What an address-holding peer tells the allocator: its addresses as integers and, for a revoked
# peer, when the address leaves quarantine (Unix seconds). Plain tuples of integers keep loading
# and saving the index of 10,000 peers to a few milliseconds.
Holding = tuple[int, int | None, float | None]
# inode, size, mtime_ns, ctime_ns (see above)
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


class _Cached:
    """The index as saved: one row per peer file, in parallel columns.

    Packed arrays inside the JSON load in a millisecond or two for 10,000 peers and make no
    object per row until a row is used."""

    __slots__ = ("columns", "names", "row", "v6", "v6_text")

    def __init__(self, names: list[str], columns: list[array[Any]], v6_text: list[str]) -> None:
        self.names = names
        self.row = dict(zip(names, range(len(names)), strict=True))
        self.columns = columns  # ino, size, mtime_ns, ctime_ns, v4, released (NaN: not revoked)
        self.v6_text = v6_text  # hexadecimal, "" for none
        self.v6 = [int(x, 16) if x else None for x in v6_text]

    @classmethod
    def empty(cls) -> _Cached:
        return cls([], [array(code) for code in _CODES], [])


# ino, size, mtime_ns, ctime_ns, v4 and released: unsigned, signed (times before 1970) and float
_CODES = ("Q", "Q", "q", "q", "Q", "d")
_COLUMNS = ("ino", "size", "mtime_ns", "ctime_ns", "v4", "released")


def _read_index(path: Path, quarantine_days: int) -> _Cached:
    """The saved rows; ValueError when of another version, machine or quarantine, or damaged."""
    raw = json.loads(path.read_bytes())
    if not isinstance(raw, dict) or raw.get("version") != INDEX_VERSION:
        raise ValueError("index of another version")
    if raw.get("byteorder") != sys.byteorder:
        raise ValueError("index of another machine")
    if raw.get("quarantine_days") != quarantine_days:
        raise ValueError("index made with another quarantine")  # the release times moved
    names = raw["names"].split("/") if raw["names"] else []  # no file name holds a '/'
    columns = []
    for code, key in zip(_CODES, _COLUMNS, strict=True):
        column = array(code)
        column.frombytes(base64.b64decode(raw[key], validate=True))
        columns.append(column)
    v6_text = raw["v6"].split("/") if names else []
    if len(v6_text) != len(names) or any(len(column) != len(names) for column in columns):
        raise ValueError("damaged index")
    return _Cached(names, columns, v6_text)


# The octets of a dotted quad as ipaddress accepts them: 0-255, no leading zeros
_OCTETS = {str(i): i for i in range(256)}
# The last character before '=' of a base64 key of 32 bytes (its low bits are zero)
_KEY_LAST = frozenset("AEIMQUYcgkosw048")


def _v4_int(text: str) -> int:
    """`int(IPv4Address(text))` in a tenth of the time (10,000 files on a cold index)."""
    octets = _OCTETS
    try:
        a, b, c, d = text.split(".")
        return (octets[a] << 24) | (octets[b] << 16) | (octets[c] << 8) | octets[d]
    except (KeyError, ValueError):
        raise ValueError(f"{text!r} is not an IPv4 address") from None


def _is_key(text: str) -> bool:
    """`is_valid_key` for text the canonical pattern has limited to the base64 alphabet and '='."""
    return len(text) == 44 and text[43] == "=" and text[42] in _KEY_LAST and "=" not in text[:43]


def _lean_holding(data: bytes, quarantine: float) -> Holding | None:
    """The holding of a canonical peer file with valid values, or None (let the full parser judge).

    Checks what `parse_peer_data` refuses to make a `Peer` of (name, mode, key, address, times),
    so that the answer is the same whether or not a file went through the index."""
    try:
        match = _canonical().fullmatch(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    name, mode, site, status, key, _, v4, v6, created, expires, rotated, revoked = match.groups()
    if not (mode in MODES and status in PEER_STATUSES and _is_key(key) and name[0] != "-"):
        return None
    if site is not None and site[0] == "-":  # the shape allows it, a name does not
        return None
    try:
        a4 = _v4_int(v4)
        a6 = int(parse_ipv6_fast(v6)) if v6 else None
        for moment in (created, expires, rotated, revoked):
            if moment:
                datetime.fromisoformat(moment)  # a month 13 is a TOML error
    except ValueError:
        return None
    if status != "revoked":
        return (a4, a6, None)
    return (a4, a6, datetime.fromisoformat(revoked or created).timestamp() + quarantine)


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
    """The holding of a file through the TOML parser and the schema, as `load_peer` reads it."""
    text, data, syntax = read_toml(path)
    issues = [syntax] if syntax else []
    if data is not None:
        peer, issues = parse_peer_data(data, path.stem)
        if peer is not None:
            return holding_for(peer, quarantine)  # other schema issues are `validate`'s to report
    conflict = _conflict_line(text)
    if conflict is not None:
        raise _unreadable(path, "an unresolved git merge conflict", conflict)
    if not issues:
        raise _unreadable(path, "not a peer file")
    line, _ = ParsedFile(path, text, issues).position(issues[0])
    raise _unreadable(path, issues[0].message, line)


class AddressIndex:
    """What every peer file holds, from the cache where its stamp allows, else from the file.

    `problems` lists the files whose holding could not be read; `taken` refuses to answer while
    there is one, so nothing is allocated next to an address nobody can see."""

    def __init__(
        self,
        profile: Profile,
        entries: dict[str, tuple[Holding, Stamp]],
        problems: list[ProfileError] | None = None,
        fresh_from: int = 0,
    ) -> None:
        self.profile = profile
        self.entries = entries  # read from the files (or recorded) in this run
        self.problems = problems or []
        self.fresh_from = fresh_from  # stamps with a ctime from here on are not saved
        self._cached = _Cached.empty()
        self._kept: list[int] = []  # rows of the cache whose file is unchanged

    @property
    def path(self) -> Path:
        return self.profile.directory / INDEX_FILE

    @classmethod
    def load(cls, profile: Profile) -> AddressIndex:
        """List peers/, stat every peer file and read those whose stamp is not in the index.

        The pass also sweeps temp files a killed writer left behind. Called under the lock."""
        index = cls(profile, {}, [], _fs_now(profile.peers_dir))
        quarantine_days = profile.network.quarantine_days
        # missing, damaged or stale: rebuilt from the peer files
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            index._cached = _read_index(profile.directory / INDEX_FILE, quarantine_days)
        try:
            folder = os.open(profile.peers_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return index
        try:
            changed = index._match(folder)
            index._read_changed(folder, changed, timedelta(days=quarantine_days))
        finally:
            os.close(folder)
        return index

    def _match(self, folder: int) -> list[tuple[str, Stamp]]:
        """Keep the cached rows whose stamp still matches; return the other peer files.

        The loop runs once per peer file on every provision: names are bound locally and the
        cached stamp is compared column by column, ctime first (what every change moves)."""
        row = self._cached.row.get
        ino, size, mtime, ctime = (column.tolist() for column in self._cached.columns[:4])
        keep, changed, stat = self._kept.append, [], os.stat
        for name in os.listdir(folder):
            if not name.endswith(".toml") or name.startswith("."):
                _sweep(folder, name)
                continue
            try:
                st = stat(name, dir_fd=folder)
            except OSError as exc:
                self._stat_failed(name, exc)
                continue
            i = row(name[:-5])
            if (
                i is not None
                and ctime[i] == st.st_ctime_ns
                and mtime[i] == st.st_mtime_ns
                and size[i] == st.st_size
                and ino[i] == st.st_ino
            ):
                keep(i)
            else:
                changed.append((name, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))
        return changed

    def _stat_failed(self, name: str, exc: OSError) -> None:
        path = self.profile.peers_dir / name
        if not isinstance(exc, FileNotFoundError):
            self.problems.append(_unreadable(path, exc.strerror or "unreadable"))
        elif os.path.lexists(path):  # a symlink that points nowhere
            self.problems.append(_unreadable(path, "it points nowhere"))
        # else: removed since the listing, it holds nothing any more

    def _read_changed(
        self, folder: int, changed: list[tuple[str, Stamp]], quarantine: timedelta
    ) -> None:
        # The lean scan's patterns cost more to compile than a few files cost to parse in full.
        if len(changed) >= LEAN_SCAN_FROM:
            changed = self._lean_scan(folder, changed, quarantine.total_seconds())
        for name, stamp in changed:
            try:
                holding = _full_holding(self.profile.peers_dir / name, quarantine)
            except (FileNotFoundError, NotFoundError):
                continue  # removed since the listing: it holds nothing any more
            except OSError as exc:
                self.problems.append(
                    _unreadable(self.profile.peers_dir / name, exc.strerror or "unreadable")
                )
                continue
            except ProfileError as exc:
                self.problems.append(exc)
                continue
            self.entries[name[:-5]] = (holding, stamp)

    def _lean_scan(
        self, folder: int, changed: list[tuple[str, Stamp]], quarantine: float
    ) -> list[tuple[str, Stamp]]:
        """Read canonical files; return the others (and any that failed) for the full parser.

        One loop with no call per file but the system calls and the match: on a cold index of
        10,000 peers every microsecond here is 10 ms."""
        entries, rest = self.entries, []
        open_, read, close, flags = os.open, os.read, os.close, os.O_RDONLY | os.O_CLOEXEC
        for name, stamp in changed:
            try:
                fd = open_(name, flags, dir_fd=folder)
                try:
                    data = read(fd, stamp[1] + 1)
                finally:
                    close(fd)
            except OSError:
                rest.append((name, stamp))  # the full parser words the problem
                continue
            holding = _lean_holding(data, quarantine) if len(data) <= stamp[1] else None
            if holding is None:
                rest.append((name, stamp))
            else:
                entries[name[:-5]] = (holding, stamp)
        return rest

    def save(self) -> None:
        """Write the index when it is worth it. No fsync: it is a cache that `load` rebuilds.

        Files whose ctime is not older than the start of `load` are left out: they may still
        change within the same tick of the clock unseen (see the module's note)."""
        cached = self._cached
        keep = [i for i in self._kept if cached.names[i] not in self.entries]
        new = [
            (name, holding, stamp)
            for name, (holding, stamp) in self.entries.items()
            if stamp[3] < self.fresh_from and "/" not in name
        ]
        stale = len(cached.names) - len(keep)  # rows of files changed or gone
        if len(new) + stale < SAVE_AFTER + len(keep) // SAVE_EVERY_OF:
            return  # reading these few files next time costs less than rewriting every row
        data: dict[str, object] = {
            "version": INDEX_VERSION,
            "note": "cache written by netsetup; safe to delete",
            "byteorder": sys.byteorder,
            "quarantine_days": self.profile.network.quarantine_days,
            "names": "/".join([*(cached.names[i] for i in keep), *(n for n, _, _ in new)]),
            "v6": "/".join(
                [
                    *(cached.v6_text[i] for i in keep),
                    *("" if h[1] is None else format(h[1], "x") for _, h, _ in new),
                ]
            ),
        }
        nan = float("nan")  # released: not revoked
        rows = [(*stamp, h[0], nan if h[2] is None else h[2]) for _, h, stamp in new]
        added = list(zip(*rows, strict=True)) or [()] * len(_COLUMNS)
        for key, code, old, more in zip(_COLUMNS, _CODES, cached.columns, added, strict=True):
            column = array(code, map(old.__getitem__, keep))
            column.extend(more)
            data[key] = base64.b64encode(column.tobytes()).decode("ascii")
        atomic_write(self.path, json.dumps(data), durable=False)

    def record(self, name: str, holding: Holding, peer_file: Path) -> None:
        """Note a peer file just written (it changed after `load` began: read again next time)."""
        st = peer_file.stat()
        self.entries[name] = (holding, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))

    def taken(self, now: datetime) -> tuple[set[int], set[int]]:
        """The IPv4 and IPv6 addresses held at `now`; ProfileError while a file is unreadable."""
        if self.problems:
            first = self.problems[0]
            if len(self.problems) == 1:
                raise first
            more = f"; {len(self.problems) - 1} more peer file(s) like it"
            raise ProfileError(first.message + more, where=first.where)
        moment = now.timestamp()
        cached, entries = self._cached, self.entries
        v4, released, v6, names = cached.columns[4], cached.columns[5], cached.v6, cached.names
        # NaN (not revoked) compares False both ways; loops over columns, no object per row
        rows = [i for i in self._kept if not released[i] <= moment and names[i] not in entries]
        taken_v4 = {v4[i] for i in rows}
        taken_v6 = {a for a in (v6[i] for i in rows) if a is not None}
        for h, _ in entries.values():
            if h[2] is None or h[2] > moment:
                taken_v4.add(h[0])
                if h[1] is not None:
                    taken_v6.add(h[1])
        return taken_v4, taken_v6


def _sweep(folder: int, name: str) -> None:
    """Remove a temp file a killed writer left behind; leave anything else alone."""
    if name.startswith(".") and name.endswith(".tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)


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
