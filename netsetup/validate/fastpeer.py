"""A fast path for the common case: a clean peer file as `netsetup provision` writes it.

Two steps. `canonical_peer_data` (in profile.store, beside the writer) reads a file whose keys are
in the order `peer_to_toml` writes them, with plain strings and UTC date-times, with one regular
expression instead of tomllib, which is pure Python and most of the cost of validating 10,000
peers. Comment lines, a comment after a value, blank lines and CRLF line ends are read there too:
people and editors add them, and they change nothing tomllib returns. Any other text, however
valid TOML, returns None and goes through tomllib. Then `fast_peer`:

`parse_peer_data` collects issues with messages and key paths, which costs about half of what
tomllib itself costs per file. Validate reads thousands of peer files and nearly all are clean, so
this function accepts a peer only when it is certainly valid and returns None otherwise; the caller
then runs `parse_peer_data` to get the exact issues. It must stay at least as strict as the schema:
tests/validate/test_fastpeer.py checks both agree on valid and broken peers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from netsetup.keys import is_valid_key
from netsetup.profile.model import MODES, PEER_STATUSES, Peer
from netsetup.profile.schema import KEY_ORIGINS, PEER_FIELDS
from netsetup.profile.store import canonical_peer_data
from netsetup.profile.values import NAME_RE, parse_ipv4_fast, parse_ipv6_fast

__all__ = ["canonical_peer_data", "fast_peer"]

# all read from the one field table of profile.schema
_ALLOWED = frozenset(f.key for f in PEER_FIELDS)
_REQUIRED = frozenset(f.key for f in PEER_FIELDS if f.required)
_STRINGS = tuple(f.key for f in PEER_FIELDS if f.toml is str)
_TIMES = tuple(f.key for f in PEER_FIELDS if f.toml is datetime)
_DEFAULTS = {f.key: f.default for f in PEER_FIELDS if f.default is not None}


def fast_peer(data: dict[str, Any], file_stem: str) -> Peer | None:
    """The peer, when `data` is a certainly valid peer named `file_stem`; else None."""
    keys = data.keys()
    if not (keys >= _REQUIRED and keys <= _ALLOWED):
        return None
    values = _DEFAULTS | data
    for key in _STRINGS:
        if key in values and type(values[key]) is not str:
            return None
    key = values["public_key"]
    if not (
        values["name"] == file_stem
        and NAME_RE.match(values["name"])
        and values["mode"] in MODES
        and values["status"] in PEER_STATUSES
        and values["key_origin"] in KEY_ORIGINS
        and is_valid_key(key)
        and ("gateway" not in values or NAME_RE.match(values["gateway"]))
    ):
        return None
    for field in _TIMES:
        moment = values.get(field)
        if moment is not None:
            if not isinstance(moment, datetime):
                return None
            if moment.tzinfo is None:
                values[field] = moment.replace(tzinfo=UTC)
            elif moment.utcoffset():
                return None  # the schema converts it to UTC (or says it cannot)
    a6_text = values.get("address_v6")
    try:
        values["address_v4"] = parse_ipv4_fast(values["address_v4"])
        values["address_v6"] = parse_ipv6_fast(a6_text) if a6_text is not None else None
    except ValueError:
        return None
    return Peer(**values)
