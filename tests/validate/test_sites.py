"""`validate` on profiles with several gateways: a peer's address is checked against its own
site's subnets, every site's key and subnets count for the rules across profiles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from netsetup.validate import validate
from tests.validate.validate_support import NOW, RULE_FIXTURES, located


def _tree(in_tmp: Path) -> Path:
    """NS116's passing fixture: sites main (198.18.30.0/24) and branch (198.18.32.0/24); alice
    of main, bob of branch."""
    target = in_tmp / "profiles"
    shutil.copytree(RULE_FIXTURES / "NS116" / "pass", target)
    return target / "acme"


def _set(path: Path, key: str, value: str) -> None:
    lines = path.read_text().splitlines()
    out = [f"{key} = {value}" if line.startswith(f"{key} = ") else line for line in lines]
    path.write_text("\n".join(out) + "\n")


def _findings(in_tmp: Path) -> set[tuple[str, int, str]]:
    return located(validate([Path("profiles")], now=NOW))


def test_the_tree_is_clean(in_tmp: Path) -> None:
    _tree(in_tmp)
    assert _findings(in_tmp) == set()


def test_an_address_of_another_site_is_outside_the_peers_own(in_tmp: Path) -> None:
    acme = _tree(in_tmp)
    # bob is branch's: main's subnet is not his, though it is the profile's [network]
    _set(acme / "peers" / "bob.toml", "address_v4", '"198.18.30.20"')
    _set(acme / "peers" / "bob.toml", "address_v6", '"2001:db8:30::20"')
    assert _findings(in_tmp) == {
        ("profiles/acme/peers/bob.toml", 7, "NS104"),
        ("profiles/acme/peers/bob.toml", 8, "NS104"),
    }
    # the same addresses for a peer of main are fine
    _set(acme / "peers" / "bob.toml", "gateway", '"main"')
    assert _findings(in_tmp) == set()


def test_a_peer_without_gateway_is_the_first_sites(in_tmp: Path) -> None:
    acme = _tree(in_tmp)
    bob = acme / "peers" / "bob.toml"
    bob.write_text("".join(x for x in bob.read_text().splitlines(True) if "gateway" not in x))
    found = _findings(in_tmp)
    assert {code for _, _, code in found} == {"NS104"}  # branch's addresses, main's peer


def test_a_sites_key_on_a_peer_is_the_gateways_own(in_tmp: Path) -> None:
    acme = _tree(in_tmp)
    branch_key = "ZGREHISx0CqdnsdUdoql8zMPhnqou6pXvj9onSA3xso="
    _set(acme / "peers" / "alice.toml", "public_key", f'"{branch_key}"')
    assert _findings(in_tmp) == {("profiles/acme/peers/alice.toml", 4, "NS102")}


@pytest.mark.parametrize(
    ("other_tunnel", "expected"),
    [
        # bright inside branch: bright's [network] is reported, naming acme's branch table
        ("198.18.32.0/25", ("profiles/bright/profile.toml", 9, "profiles/acme/profile.toml:14")),
        # branch inside bright: branch's own tunnel_v4 in acme is reported
        ("198.18.32.0/23", ("profiles/acme/profile.toml", 14, "profiles/bright/profile.toml:9")),
        ("198.18.31.0/24", None),
    ],
)
def test_a_sites_subnet_counts_across_profiles(
    in_tmp: Path, other_tunnel: str, expected: tuple[str, int, str] | None
) -> None:
    acme = _tree(in_tmp)
    other = acme.parent / "bright"
    shutil.copytree(RULE_FIXTURES / "NS104" / "pass" / "acme", other)
    shutil.rmtree(other / "peers")
    text = (other / "profile.toml").read_text()
    text = text.replace("198.18.30.0/24", other_tunnel).replace("2001:db8:30::", "2001:db8:40::")
    # its own gateway key: one key in two profiles is NS203, not this test's business
    text = text.replace(
        "QSWSVz9J6EezlL039hiuOOxEeVDuYcwPjYmAUKRXpTE=",
        "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
    )
    (other / "profile.toml").write_text(text)
    report = validate([Path("profiles")], now=NOW)
    if expected is None:
        assert report.findings == []
        return
    (finding,) = report.findings
    path, line, where = expected
    assert (finding.path, finding.line, finding.code) == (path, line, "NS202")
    assert where in finding.message
