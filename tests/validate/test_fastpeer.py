"""The peer fast path never accepts what the schema rejects, and agrees with it when it accepts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netsetup.profile.schema import parse_peer_data
from netsetup.validate.fastpeer import fast_peer

VALID: dict[str, Any] = {
    "name": "alice",
    "mode": "dedicated",
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
