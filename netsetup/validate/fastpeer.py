"""A fast path for the common case: a clean peer file as `netsetup provision` writes it.

Two steps. `canonical_peer_data` (in profile.store, beside the writer) reads a file whose text is
exactly what `peer_to_toml` writes (fixed key order, plain strings, UTC date-times) with one
regular expression instead of tomllib,
which is pure Python and most of the cost of validating 10,000 peers; any other text, however
valid TOML, returns None and goes through tomllib. Then `fast_peer`:

`parse_peer_data` collects issues with messages and key paths, which costs about half of what
tomllib itself costs per file. Validate reads thousands of peer files and nearly all are clean, so
this function accepts a peer only when it is certainly valid and returns None otherwise; the caller
then runs `parse_peer_data` to get the exact issues. It must stay at least as strict as the schema:
tests/validate/test_fastpeer.py checks both agree on valid and broken peers.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from netsetup.keys import is_valid_key
from netsetup.profile.model import MODES, PEER_STATUSES, Peer
from netsetup.profile.schema import PEER_KEYS
from netsetup.profile.store import canonical_peer_data

__all__ = ["canonical_peer_data", "fast_peer"]
from netsetup.profile.values import NAME_RE, PeerName

_ALLOWED = frozenset(PEER_KEYS)
_REQUIRED = frozenset(("name", "mode", "public_key", "address_v4", "created"))
_ORIGINS = ("generated", "client")
_TIMES = ("created", "expires", "revoked", "rotated")


def fast_peer(data: dict[str, Any], file_stem: str) -> Peer | None:
    """The peer, when `data` is a certainly valid peer named `file_stem`; else None."""
    keys = data.keys()
    if not (keys >= _REQUIRED and keys <= _ALLOWED):
        return None
    name, mode, key = data["name"], data["mode"], data["public_key"]
    status = data.get("status", "active")
    origin = data.get("key_origin", "generated")
    if not (
        name == file_stem
        and type(name) is str
        and NAME_RE.match(name)
        and type(mode) is str
        and mode in MODES
        and type(status) is str
        and status in PEER_STATUSES
        and type(origin) is str
        and origin in _ORIGINS
        and type(key) is str
        and is_valid_key(key)
    ):
        return None
    times: dict[str, datetime | None] = {}
    for field in _TIMES:
        moment = data.get(field)
        if moment is not None:
            if not isinstance(moment, datetime):
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        times[field] = moment
    a4_text, a6_text = data["address_v4"], data.get("address_v6")
    if type(a4_text) is not str or (a6_text is not None and type(a6_text) is not str):
        return None
    try:
        address_v4 = ipaddress.IPv4Address(a4_text)
        address_v6 = ipaddress.IPv6Address(a6_text) if a6_text is not None else None
    except ValueError:
        return None
    created = times["created"]
    assert created is not None
    return Peer(
        name=PeerName(name),
        mode=mode,
        public_key=key,
        address_v4=address_v4,
        address_v6=address_v6,
        created=created,
        expires=times["expires"],
        status=status,
        revoked=times["revoked"],
        key_origin=origin,
        rotated=times["rotated"],
    )
