"""Tunnel address allocation: the lowest free address, in time independent of the inventory.

Which addresses are taken is kept in `peers/.index.json`, a cache derived from the peer files and
checked against the folder listing on every use: a peer file that arrived another way (a merge, a
copy) is read and added, a removed one is dropped. Listing a folder of 10,000 names costs a few
milliseconds; reading 10,000 TOML files would cost seconds. The index is only read and written under
the profile lock.
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

INDEX_FILE = ".index.json"
INDEX_VERSION = 3


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


def _read_index(path: Path) -> dict[str, Holding]:
    """The index as {name: holding}; ValueError when it is from another version or damaged.

    Parallel arrays of plain numbers parse and check in a few milliseconds for 10,000 peers."""
    raw = json.loads(path.read_bytes())
    if raw.get("version") != INDEX_VERSION:
        raise ValueError("index of another version")
    names, v4, v6, released = raw["names"], raw["v4"], raw["v6"], raw["released"]
    if not (len(names) == len(v4) == len(v6) == len(released)):
        raise ValueError("damaged index")
    if not (
        all(type(n) is str for n in names)
        and all(type(a) is int for a in v4)
        and all(a is None or type(a) is int for a in v6)
        and all(r is None or type(r) in (int, float) for r in released)
    ):
        raise ValueError("damaged index")
    return dict(zip(names, zip(v4, v6, released, strict=True), strict=True))


class AddressIndex:
    def __init__(self, profile: Profile, holdings: dict[str, Holding]) -> None:
        self.profile = profile
        self.holdings = holdings

    @property
    def path(self) -> Path:
        return self.profile.peers_dir / INDEX_FILE

    @classmethod
    def load(cls, profile: Profile) -> AddressIndex:
        """Read the index and bring it in line with the peer files on disk.

        The one listing of the folder also sweeps temp files a killed writer left behind."""
        holdings: dict[str, Holding] = {}
        try:
            holdings = _read_index(profile.peers_dir / INDEX_FILE)
        except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError):
            holdings = {}  # missing or damaged: rebuilt from the peer files below
        listing = os.listdir(profile.peers_dir)
        for stale in [e for e in listing if e.endswith(".tmp") and e.startswith(".")]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(profile.peers_dir / stale)
        on_disk = {e[:-5] for e in listing if e.endswith(".toml") and not e.startswith(".")}
        for gone in holdings.keys() - on_disk:
            del holdings[gone]
        quarantine = timedelta(days=profile.network.quarantine_days)
        for name in on_disk - holdings.keys():
            peer, _ = parse_peer_file(profile.peers_dir / f"{name}.toml")
            if peer is not None:
                holdings[name] = holding_for(peer, quarantine)
        return cls(profile, holdings)

    def save(self) -> None:
        """Write the index. No fsync: it is a cache that `load` rebuilds from the peer files."""
        names = list(self.holdings)
        values = list(self.holdings.values())
        data = {
            "version": INDEX_VERSION,
            "note": "cache written by netsetup; safe to delete",
            "names": names,
            "v4": [h[0] for h in values],
            "v6": [h[1] for h in values],
            "released": [h[2] for h in values],
        }
        atomic_write(self.path, json.dumps(data, separators=(",", ":")), durable=False)

    def record(self, name: str, holding: Holding) -> None:
        self.holdings[name] = holding

    def taken(self, now: datetime) -> tuple[set[int], set[int]]:
        moment = now.timestamp()
        held = [h for h in self.holdings.values() if h[2] is None or h[2] > moment]
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
