"""The peer fast path never accepts what the schema rejects, and agrees with it when it accepts."""

from __future__ import annotations

import ipaddress
import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netsetup.profile.model import Peer
from netsetup.profile.schema import parse_peer_data
from netsetup.profile.store import peer_to_toml
from netsetup.validate.fastpeer import canonical_peer_data, fast_peer

VALID: dict[str, Any] = {
    "name": "alice",
    "mode": "dedicated",
    "gateway": "branch",
    "status": "active",
    "public_key": "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
    "key_origin": "generated",
    "address_v4": "198.18.10.5",
    "address_v6": "2001:db8:10::5",
    "created": datetime(2026, 1, 10, 9, tzinfo=UTC),
    "expires": datetime(2026, 12, 31),
}
ODD_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "-branch",
            "Alice",
            "alice",
            "agency",
            "revoked",
            "client",
            "198.18.10.5/32",
            "2001:db8:10::5",
            "198.18.10.5",
            "::ffff:198.18.10.5",
            "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ",
            "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ==",
            True,
            0,
            date(2026, 1, 1),
            datetime(2026, 1, 1),
            None,
        ]
    ),
    st.text(max_size=50),
)


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from([*VALID, "unknown", "adress_v4"]), ODD_VALUES, max_size=3
    )
)
def test_fast_path_agrees_with_the_schema(changes: dict[str, Any]) -> None:
    data = {**VALID, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    slow, issues = parse_peer_data(data, "alice")
    fast = fast_peer(data, "alice")
    if fast is not None:
        assert issues == []
        assert fast == slow


def test_fast_path_accepts_a_clean_peer() -> None:
    assert fast_peer(VALID, "alice") == parse_peer_data(VALID, "alice")[0]
    assert fast_peer(VALID, "bob") is None


# -- the canonical text reader --------------------------------------------------------------

_peers = st.builds(
    lambda name, mode, status, origin, host, v6, created, extras: Peer(
        name=name,
        mode=mode,
        public_key="bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
        address_v4=ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.0")) + host),
        address_v6=ipaddress.IPv6Address(f"2001:db8::{host:x}") if v6 else None,
        created=created,
        expires=created + timedelta(days=extras[0]) if extras[0] else None,
        status=status,
        revoked=created + timedelta(days=1) if extras[1] else None,
        key_origin=origin,
        rotated=created + timedelta(hours=1) if extras[2] else None,
    ),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
    st.sampled_from(["dedicated", "agency"]),
    st.sampled_from(["active", "revoked"]),
    st.sampled_from(["generated", "client"]),
    st.integers(2, 65000),
    st.booleans(),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0)),
    st.tuples(st.integers(0, 400), st.booleans(), st.booleans()),
)


@settings(max_examples=500, deadline=None)
@given(peer=_peers)
def test_canonical_reader_reads_what_peer_to_toml_writes_as_tomllib_does(peer: Peer) -> None:
    text = peer_to_toml(peer)
    fast = canonical_peer_data(text)
    assert fast is not None, text
    assert fast == tomllib.loads(text)


_EDITS = [
    ("\n", "\r\n"),
    ('name = "', 'name = "\\u0041'),
    ('mode = "', 'mode  = "'),
    ('status = "active"', 'status = "active" # hi'),
    ("created = ", "created= "),
    ("Z\n", "+02:00\n"),
    ("# Written", "#\x7f Written"),
    ('"\n', '"\n[extra]\n'),
    ("address_v4", "address_v4.x"),
    ("-11-", "-13-"),
]


@settings(max_examples=400, deadline=None)
@given(peer=_peers, edit=st.sampled_from(_EDITS), extra=st.text(max_size=8))
def test_canonical_reader_never_disagrees_with_tomllib(
    peer: Peer, edit: tuple[str, str], extra: str
) -> None:
    """Any change to the canonical text either leaves it canonical with the same meaning,
    or sends the file to tomllib (None)."""
    text = peer_to_toml(peer).replace(*edit, 1) + extra
    fast = canonical_peer_data(text)
    if fast is None:
        return
    assert fast == tomllib.loads(text)
