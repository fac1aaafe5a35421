"""Several gateways in one profile (`[[gateway]]` sites): what a good profile gives, and for each
mistake the code, message and line the schema reports."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from netsetup.errors import ProfileError
from netsetup.profile import schema as s
from netsetup.profile.model import DEFAULT_GATEWAY_NAME, Profile
from netsetup.profile.schema import parse_peer_data, parse_toml
from netsetup.profile.store import load_profile
from netsetup.profile.tomlpos import KeyLocator

MAIN_KEY = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
BRANCH_KEY = "ZGREHISx0CqdnsdUdoql8zMPhnqou6pXvj9onSA3xso="
HEAD = '[company]\nname = "Acme"\n'
NETWORK = '[network]\ntunnel_v4 = "198.18.10.0/24"\ntunnel_v6 = "2001:db8:10::/64"\n'
MAIN = f'[[gateway]]\nname = "main"\nendpoint = "vpn.a.example:51820"\npublic_key = "{MAIN_KEY}"\n'
BRANCH = (
    f'[[gateway]]\nname = "branch"\nendpoint = "branch.a.example:51821"\n'
    f'public_key = "{BRANCH_KEY}"\ntunnel_v4 = "198.18.11.0/24"\n'
)

Issue = tuple[int, str, str]  # line, code, message


def parse(text: str, tmp_path: Path) -> tuple[Profile | None, list[Issue]]:
    data, syntax = parse_toml(text)
    if data is None:
        assert syntax is not None
        return None, [(syntax.line or 1, syntax.code, syntax.message)]
    profile, issues = s.parse_profile_data(data, tmp_path / "acme")
    locator = KeyLocator(text)
    return profile, [(locator.line(i.path) or 1, i.code, i.message) for i in issues]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_two_sites(tmp_path: Path) -> None:
    profile, issues = parse(HEAD + MAIN + BRANCH + NETWORK, tmp_path)
    assert issues == []
    assert profile is not None
    assert [g.name for g in profile.gateways] == ["main", "branch"]
    assert profile.gateway.name == "main" and profile.multi_site
    assert profile.gateway.tunnel_v4 is None  # the first site uses [network]'s
    branch = profile.site("branch")
    assert branch.gateway.endpoint == "branch.a.example:51821"
    assert branch.network.tunnel_v4 == ipaddress.ip_network("198.18.11.0/24")
    assert branch.network.tunnel_v6 is None  # its own subnets replace both of [network]'s
    assert str(branch.network.gateway_address_v4) == "198.18.11.1"
    assert profile.site(None).network.tunnel_v4 == ipaddress.ip_network("198.18.10.0/24")
    assert branch.gateway.witness_port == 51822  # derived per site, as for [gateway]


def test_the_single_form_stays_and_names_its_gateway(tmp_path: Path) -> None:
    single = f'[gateway]\nendpoint = "vpn.a.example:51820"\npublic_key = "{MAIN_KEY}"\n'
    profile, issues = parse(HEAD + single + NETWORK, tmp_path)
    assert issues == [] and profile is not None
    assert profile.sites == () and not profile.multi_site
    assert profile.gateways == (profile.gateway,)
    assert profile.gateway.name == DEFAULT_GATEWAY_NAME


def test_name_and_tunnel_belong_to_sites_only(tmp_path: Path) -> None:
    single = (
        f'[gateway]\nname = "main"\nendpoint = "vpn.a.example:51820"\npublic_key = "{MAIN_KEY}"\n'
    )
    text = HEAD + single + NETWORK
    _, issues = parse(text, tmp_path)
    assert issues == [(line_of(text, 'name = "main"'), s.UNKNOWN_KEY, issues[0][2])]


def test_both_forms_in_one_file_is_one_clear_error(tmp_path: Path) -> None:
    single = f'[gateway]\nendpoint = "vpn.a.example:51820"\npublic_key = "{MAIN_KEY}"\n'
    text = HEAD + single + BRANCH + NETWORK
    profile, issues = parse(text, tmp_path)
    assert profile is None
    (line, code, message), *_ = issues
    assert (line, code) == (line_of(text, "[[gateway]]"), s.SYNTAX)
    assert "[gateway] and [[gateway]] in one file" in message


@pytest.mark.parametrize(
    ("branch", "needle", "code", "message"),
    [
        (
            BRANCH.replace('name = "branch"\n', ""),
            "[[gateway]]\nendpoint",
            s.MISSING_KEY,
            "missing required key 'name' in [gateway.1]",
        ),
        (
            BRANCH.replace('tunnel_v4 = "198.18.11.0/24"\n', ""),
            '[[gateway]]\nname = "branch"',
            s.MISSING_KEY,
            "missing required key 'tunnel_v4' in [gateway.1]",
        ),
        (
            BRANCH.replace('"branch"', '"main"'),
            'name = "main"\nendpoint = "branch',
            s.BAD_VALUE,
            "gateway[1].name 'main' is already the name of gateway[0]",
        ),
        (
            BRANCH.replace('"branch"', '"Branch"'),
            '"Branch"',
            s.BAD_VALUE,
            "gateway name 'Branch' must be 1-32 characters",
        ),
        (
            BRANCH.replace("198.18.11.0/24", "198.18.10.128/25"),
            "198.18.10.128/25",
            s.SITE_OVERLAP,
            "gateway[1].tunnel_v4 198.18.10.128/25 overlaps network.tunnel_v4 198.18.10.0/24",
        ),
        (
            BRANCH.replace("198.18.11.0/24", "198.18.11.0/31"),
            "198.18.11.0/31",
            s.BAD_VALUE,
            "leaves no address for peers",
        ),
        (
            BRANCH + 'tunnel_v6 = "2001:db8:10:0:8000::/65"\n',
            "2001:db8:10:0:8000::/65",
            s.SITE_OVERLAP,
            "overlaps network.tunnel_v6 2001:db8:10::/64",
        ),
        (
            BRANCH + "ssh = 22\n",
            "ssh = 22",
            s.WRONG_TYPE,
            "gateway.1.ssh must be a string",
        ),
    ],
    ids=["no-name", "no-tunnel", "same-name", "bad-name", "overlap", "tiny", "overlap-v6", "type"],
)
def test_a_bad_site(branch: str, needle: str, code: str, message: str, tmp_path: Path) -> None:
    text = HEAD + MAIN + branch + NETWORK
    profile, issues = parse(text, tmp_path)
    (line, got_code, got_message), *_ = issues
    assert (line, got_code) == (line_of(text, needle), code), issues
    assert message in got_message
    if "name" in message or ("tunnel_v4" in message and code == s.MISSING_KEY):
        assert profile is None  # a site missing would put its peers on another one


def test_two_own_subnets_that_overlap(tmp_path: Path) -> None:
    third = BRANCH.replace('"branch"', '"third"').replace("198.18.11.0/24", "198.18.11.0/25")
    text = HEAD + MAIN + BRANCH + third + NETWORK
    _, issues = parse(text, tmp_path)
    assert issues == [
        (
            line_of(text, "198.18.11.0/25"),
            s.SITE_OVERLAP,
            "gateway[2].tunnel_v4 198.18.11.0/25 overlaps gateway[1].tunnel_v4 198.18.11.0/24: "
            "an address there would belong to two gateways",
        )
    ]


def test_an_empty_array_and_a_first_site_with_v6_only(tmp_path: Path) -> None:
    _, issues = parse("gateway = []\n" + HEAD + NETWORK, tmp_path)
    assert [code for _, code, _ in issues] == [s.MISSING_KEY]
    text = HEAD + MAIN + 'tunnel_v6 = "2001:db8:99::/64"\n' + NETWORK
    _, issues = parse(text, tmp_path)
    assert issues[0][:2] == (line_of(text, 'tunnel_v6 = "2001:db8:99'), s.MISSING_KEY)


def test_load_profile_refuses_overlapping_sites(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    text = HEAD + MAIN + BRANCH.replace("198.18.11.0/24", "198.18.10.0/25") + NETWORK
    (folder / "profile.toml").write_text(text)
    with pytest.raises(ProfileError, match=r"overlaps network\.tunnel_v4"):
        load_profile(folder)


PEER = {
    "name": "maria",
    "mode": "dedicated",
    "public_key": "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
    "address_v4": "198.18.11.5",
}


def test_the_peer_file_names_its_site() -> None:
    from datetime import UTC, datetime

    data = {**PEER, "created": datetime(2026, 1, 1, tzinfo=UTC), "gateway": "branch"}
    peer, issues = parse_peer_data(data, "maria")
    assert issues == [] and peer is not None and peer.gateway == "branch"
    _, issues = parse_peer_data({**data, "gateway": "-x"}, "maria")
    assert [i.code for i in issues] == [s.BAD_VALUE]  # load_peer refuses the file
    assert "gateway '-x' must be 1-32 characters" in issues[0].message
    peer, _ = parse_peer_data({k: v for k, v in data.items() if k != "gateway"}, "maria")
    assert peer is not None and peer.gateway is None  # the first site
