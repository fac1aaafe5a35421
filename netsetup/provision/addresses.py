"""Tunnel address allocation: the lowest free address, in time independent of the inventory.

Which addresses are taken is kept in `<profile>/.peers-index.json`, a cache derived from the peer
files. It records the modification time of the peers/ folder: while that is unchanged (no file
was added, removed or renamed over since), the index is trusted as it is, one stat for any
inventory. When it changed (a merge, a checkout, another tool), every entry is checked against
the stamp (mtime, size, inode) of its file, and only new or changed files are read again; reading
10,000 TOML files would cost seconds. The index is read and written only under the profile lock.

A peer file edited in place by hand (peer files are netsetup's to write) leaves the folder's
mtime alone and is seen at the next change of the folder; `validate` reports any clash (NS105).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from netsetup.errors import ConflictError
from netsetup.fsutil import atomic_write
from netsetup.profile.model import Peer, Profile
from netsetup.profile.store import parse_peer_file

INDEX_FILE = ".peers-index.json"  # beside profile.toml, outside peers/ (see above)
INDEX_VERSION = 5


# What an address-holding peer tells the allocator: its addresses as integers and, for a revoked
# peer, when the address leaves quarantine (Unix seconds). Plain tuples of integers keep loading
# and saving the index of 10,000 peers to a few milliseconds.
Holding = tuple[int, int | None, float | None]


def holding_for(peer: Peer, quarantine: timedelta) -> Holding:
    released = None
    if peer.status == "revoked":
        released = ((peer.revoked or peer.created) + quarantine).timestamp()
    v6 = int(peer.address_v6) if peer.address_v6 else None
    return (int(peer.address_v4), v6, released)


def file_stamp(stat: os.stat_result) -> str:
    """What changes when a file is rewritten, renamed over or edited in place."""
    return f"{stat.st_mtime_ns}:{stat.st_size}:{stat.st_ino}"


def _read_index(path: Path) -> tuple[int, dict[str, tuple[Holding, str]]]:
    """The peers/ folder's mtime when the index was saved, and {name: (holding, stamp)}.
    ValueError when of another version or damaged.

    Parallel arrays of plain values parse and check in a few milliseconds for 10,000 peers."""
    raw = json.loads(path.read_bytes())
    if raw.get("version") != INDEX_VERSION or type(raw.get("folder_mtime")) is not int:
        raise ValueError("index of another version")
    names, v4, v6, released, stamps = (
        raw["names"],
        raw["v4"],
        raw["v6"],
        raw["released"],
        raw["stamps"],
    )
    if not (len(names) == len(v4) == len(v6) == len(released) == len(stamps)):
        raise ValueError("damaged index")
    if not (
        all(type(n) is str for n in names)
        and all(type(a) is int for a in v4)
        and all(a is None or type(a) is int for a in v6)
        and all(r is None or type(r) in (int, float) for r in released)
        and all(type(s) is str for s in stamps)
    ):
        raise ValueError("damaged index")
    holdings = zip(v4, v6, released, strict=True)
    return raw["folder_mtime"], dict(zip(names, zip(holdings, stamps, strict=True), strict=True))


class AddressIndex:
    def __init__(self, profile: Profile, entries: dict[str, tuple[Holding, str]]) -> None:
        self.profile = profile
        self.entries = entries

    @property
    def path(self) -> Path:
        return self.profile.directory / INDEX_FILE

    @classmethod
    def load(cls, profile: Profile) -> AddressIndex:
        """Read the index and bring it in line with the peer files on disk.

        A pass over the folder also sweeps temp files a killed writer left behind (creating
        them changed the folder's mtime, so they never hide behind the fast path)."""
        try:
            folder_mtime, cached = _read_index(profile.directory / INDEX_FILE)
        except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError):
            folder_mtime, cached = -1, {}  # missing or damaged: rebuilt from the peer files
        if os.stat(profile.peers_dir).st_mtime_ns == folder_mtime:
            return cls(profile, cached)
        entries: dict[str, tuple[Holding, str]] = {}
        changed: list[tuple[str, str]] = []
        with os.scandir(profile.peers_dir) as folder:
            for item in folder:
                name = item.name
                if name.startswith("."):
                    if name.endswith(".tmp"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(item.path)
                    continue
                if not name.endswith(".toml"):
                    continue
                stamp = file_stamp(item.stat())
                known = cached.get(name[:-5])
                if known is not None and known[1] == stamp:
                    entries[name[:-5]] = known
                else:
                    changed.append((name[:-5], stamp))
        quarantine = timedelta(days=profile.network.quarantine_days)
        for name, stamp in changed:
            peer, _ = parse_peer_file(profile.peers_dir / f"{name}.toml")
            if peer is not None:  # a broken file holds nothing; `validate` reports it
                entries[name] = (holding_for(peer, quarantine), stamp)
        return cls(profile, entries)

    def save(self) -> None:
        """Write the index. No fsync: it is a cache that `load` rebuilds from the peer files."""
        names = list(self.entries)
        values = list(self.entries.values())
        data = {
            "version": INDEX_VERSION,
            "note": "cache written by netsetup; safe to delete",
            "folder_mtime": os.stat(self.profile.peers_dir).st_mtime_ns,
            "names": names,
            "v4": [h[0] for h, _ in values],
            "v6": [h[1] for h, _ in values],
            "released": [h[2] for h, _ in values],
            "stamps": [stamp for _, stamp in values],
        }
        atomic_write(self.path, json.dumps(data, separators=(",", ":")), durable=False)

    def record(self, name: str, holding: Holding, peer_file: Path) -> None:
        """Note a peer file just written (its stamp, so the next load trusts it)."""
        self.entries[name] = (holding, file_stamp(peer_file.stat()))

    def taken(self, now: datetime) -> tuple[set[int], set[int]]:
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
