"""A peer file's fields live in one table (profile.schema.PEER_FIELDS): the writer, the fast
reader's regular expression, the schema and validate's fast path all follow it. And the fast
reader takes the shapes people and editors give a peer file (comments, CRLF) without ever reading
a text differently from tomllib."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsetup.profile import schema, store
from netsetup.profile.model import Peer
from netsetup.profile.schema import PEER_FIELDS, parse_peer_data
from netsetup.profile.store import canonical_peer_data, peer_to_toml
from netsetup.validate.fastpeer import fast_peer

MARIA = Peer(
    name="maria",
    mode="agency",
    public_key="bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
    address_v4=ipaddress.IPv4Address("198.18.10.5"),
    address_v6=ipaddress.IPv6Address("2001:db8:10::5"),
    created=datetime(2026, 1, 10, 9, tzinfo=UTC),
    expires=datetime(2026, 12, 31, tzinfo=UTC),
    status="revoked",
    revoked=datetime(2026, 3, 1, tzinfo=UTC),
    key_origin="client",
    rotated=datetime(2026, 2, 1, 12, 30, tzinfo=UTC),
)
# What peer_to_toml wrote before the table existed: the table changed no byte.
MARIA_TEXT = (
    "# Written by netsetup. No secrets here: the keys that must stay private live with the\n"
    "# assistant, on the gateway and in the admin's state directory.\n"
    'name = "maria"\n'
    'mode = "agency"\n'
    'status = "revoked"\n'
    'public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="\n'
    'key_origin = "client"\n'
    'address_v4 = "198.18.10.5"\n'
    'address_v6 = "2001:db8:10::5"\n'
    "created = 2026-01-10T09:00:00Z\n"
    "expires = 2026-12-31T00:00:00Z\n"
    "rotated = 2026-02-01T12:30:00Z\n"
    "revoked = 2026-03-01T00:00:00Z\n"
)


def keys_written(text: str) -> list[str]:
    return [line.split(" = ")[0] for line in text.splitlines() if " = " in line]


def test_the_table_is_every_field_of_peer_in_the_written_order() -> None:
    assert sorted(f.key for f in PEER_FIELDS) == sorted(Peer.__dataclass_fields__)
    assert peer_to_toml(MARIA) == MARIA_TEXT
    # a peer of a `[[gateway]]` site other than the first: the one field MARIA leaves out
    north = peer_to_toml(replace(MARIA, gateway="north"))
    assert keys_written(north) == [f.key for f in PEER_FIELDS]
    assert north == MARIA_TEXT.replace('mode = "agency"\n', 'mode = "agency"\ngateway = "north"\n')
    assert fast_peer(tomllib.loads(north), "maria") == replace(MARIA, gateway="north")
    assert canonical_peer_data(north) == tomllib.loads(north)
    sparse = replace(MARIA, address_v6=None, expires=None, rotated=None, revoked=None)
    written = keys_written(peer_to_toml(sparse))
    assert written == [f.key for f in PEER_FIELDS if getattr(sparse, f.key) is not None]


def test_required_keys_come_from_the_table() -> None:
    data = tomllib.loads(MARIA_TEXT)
    for field in PEER_FIELDS:
        partial = {k: v for k, v in data.items() if k != field.key}
        peer, issues = parse_peer_data(partial, "maria")
        missing = [i for i in issues if i.code == schema.MISSING_KEY]
        assert bool(missing) == field.required, field.key
        assert (peer is None) == field.required, field.key
        assert (fast_peer(partial, "maria") is None) == field.required, field.key


def test_writer_reader_and_schema_follow_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reorder the table: the writer writes the new order and the fast reader reads only it."""
    reordered = (PEER_FIELDS[1], PEER_FIELDS[0], *PEER_FIELDS[2:])
    monkeypatch.setattr(schema, "PEER_FIELDS", reordered)
    monkeypatch.setattr(store, "PEER_FIELDS", reordered)
    store._canonical.cache_clear()
    try:
        text = peer_to_toml(MARIA)
        assert keys_written(text)[:2] == ["mode", "name"]
        assert canonical_peer_data(text) == tomllib.loads(text)
        assert canonical_peer_data(MARIA_TEXT) is None  # the old order is no longer the shape
    finally:
        store._canonical.cache_clear()


def _commented(text: str) -> str:
    return text.replace(
        'mode = "agency"\n',
        'mode = "agency"   # checked with the office, 2026-01-09 (Müller)\n'
        "\n"
        "\t# laptop replaced in March; same address, new key\n",
    )


SHAPES = {
    "comment": _commented,
    "crlf": lambda text: text.replace("\n", "\r\n"),
    "both": lambda text: _commented(text).replace("\n", "\r\n"),
    "indented": lambda text: text.replace("\nmode = ", "\n  mode\t=  "),
    "trailing comment lines": lambda text: text + "# end\n\n",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_comments_and_crlf_take_the_fast_path(shape: str) -> None:
    text = SHAPES[shape](MARIA_TEXT)
    fast = canonical_peer_data(text)
    assert fast is not None, "this shape went to tomllib"
    assert fast == tomllib.loads(text)
    assert fast_peer(fast, "maria") == MARIA


# Characters that matter to TOML's lexer, and some that only look harmless.
_HOSTILE = st.sampled_from(
    ["\r", "\n", "#", " ", "\t", '"', "'", "\\", "=", "[", ".", "\x00", "\x01", "\x7f",
     "\x0b", "\x0c", "\ufeff", "é", "\u2028", "Z", "+", ":", "1", "a", "-", "T", "٢"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    peer_index=st.integers(0, 1),
    shape=st.sampled_from(sorted(SHAPES)),
    edits=st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 2), st.text(_HOSTILE, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_the_fast_reader_never_accepts_what_tomllib_reads_otherwise(
    peer_index: int, shape: str, edits: list[tuple[int, int, str]]
) -> None:
    """Edited anywhere with TOML's own special characters, a peer file is either read exactly as
    tomllib reads it, or left to tomllib (None): never accepted where tomllib refuses it."""
    peer = (MARIA, replace(MARIA, address_v6=None, rotated=None))[peer_index]
    text = SHAPES[shape](peer_to_toml(peer))
    for position, removed, inserted in edits:
        at = position % (len(text) + 1)
        text = text[:at] + inserted + text[at + removed :]
    fast = canonical_peer_data(text)
    if fast is None:
        return
    assert fast == tomllib.loads(text)  # raises if tomllib refuses the text


ADDRESS_TEXTS = [
    "198.18.10.5", "0.0.0.0", "255.255.255.255", "198.18.10.05", "198.018.10.5", "0x1.2.3.4",
    "1", "1.2.3", "198.18.10.5 ", " 198.18.10.5", "198.18.10.5\x00", "١٩٨.18.10.5", "",
    "2001:db8:10::5", "2001:DB8:10::5", "2001:db8:10:0:0:0:0:5", "2001:0db8:10::5", "::",
    "::1", "::ffff:198.18.10.5", "::ffff:c612:a05", "::198.18.10.5", "::ffff:198.18.10.05",
    "2001:db8::0:1", "2001:db8:0:0:1::1", "1:2:3:4::5:6:7:8", "1::2::3", "fe80::1%eth0",
    "2001:db8:10::5/128", ":::", "1:2:3:4:5:6:7:8:9",
]  # fmt: skip


@pytest.mark.parametrize("text", ADDRESS_TEXTS)
@pytest.mark.parametrize("key", ["address_v4", "address_v6"])
def test_the_fast_path_reads_addresses_exactly_as_the_schema(key: str, text: str) -> None:
    data = {**tomllib.loads(MARIA_TEXT), key: text}
    slow, issues = parse_peer_data(data, "maria")
    fast = fast_peer(data, "maria")
    if fast is not None:
        assert issues == [] and fast == slow
        assert getattr(fast, key) == ipaddress.ip_address(text)
    elif issues == []:
        pytest.fail(f"{text!r} is valid but took the slow path")  # a regression in speed only


@settings(max_examples=300, deadline=None)
@given(address=st.ip_addresses(), spelling=st.sampled_from(["compressed", "exploded", "upper"]))
def test_the_fast_path_reads_any_spelling_of_an_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, spelling: str
) -> None:
    text = address.exploded.upper() if spelling == "upper" else getattr(address, spelling)
    key = "address_v4" if address.version == 4 else "address_v6"
    data = {**tomllib.loads(MARIA_TEXT), key: text}
    slow, issues = parse_peer_data(data, "maria")
    fast = fast_peer(data, "maria")
    assert issues == [] and fast is not None  # every spelling is valid: none may be refused
    assert fast == slow and getattr(fast, key) == address
