"""A profile with several gateways (`[[gateway]]` sites): provision allocates in the chosen site's
subnet and writes that gateway into the client config and the peer file; rotate, list and show
follow the peer's own site; render and the witness see one site's peers only."""

from __future__ import annotations

import io
import ipaddress
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from wireguard_tools import WireguardConfig

from netsetup.clock import FixedClock
from netsetup.errors import InputError, NotFoundError
from netsetup.gateway.render import render_gateway, render_gateway_config
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.model import Peer
from netsetup.profile.store import load_peer, load_peers, load_profile
from netsetup.provision import service
from netsetup.provision.inventory import peer_details
from netsetup.responder.witness import SystemGateway
from netsetup.state import StateDir
from tests.cli.support import run_main

from .support import changed, snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = FixedClock(NOW)
BRANCH = generate_keypair()
BRANCH_SITE = f"""
[[gateway]]
name = "branch"
endpoint = "branch.acme-dental.example:51830"
public_key = "{BRANCH.public}"
interface = "wg1"
tunnel_v4 = "198.18.11.0/24"
tunnel_v6 = "2001:db8:11::/64"
"""


@pytest.fixture
def sites(acme: Path, state_dir: Path) -> Path:
    """acme-dental with a second site: `[gateway]` becomes `[[gateway]]` "main" plus "branch"."""
    toml = acme / "profile.toml"
    text = toml.read_text()
    text = text.replace("[gateway]\n", '[[gateway]]\nname = "main"\n', 1)
    text = text.replace("listen_port = 51820\n", "listen_port = 51820\n" + BRANCH_SITE, 1)
    toml.write_text(text)
    return acme


def parse(path: Path) -> WireguardConfig:
    return WireguardConfig.from_wgconfig(io.StringIO(path.read_text()))


def test_provision_in_a_site_takes_its_subnet_endpoint_and_key(sites: Path) -> None:
    profile = load_profile(sites)
    main = service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    branch = service.provision(
        profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch"
    )
    assert (main.peer.address_v4, main.peer.gateway) == ("198.18.10.2", "main")
    assert (branch.peer.address_v4, branch.peer.address_v6) == ("198.18.11.2", "2001:db8:11::2")
    assert branch.peer.gateway == "branch"
    assert load_peer(profile, "lena").gateway == "branch"
    assert load_peer(profile, "maria").gateway == "main"  # written out with several sites
    config = parse(branch.config)
    (gateway,) = config.peers.values()
    assert str(gateway.public_key) == BRANCH.public
    assert (str(gateway.endpoint_host), gateway.endpoint_port) == (
        "branch.acme-dental.example",
        51830,
    )
    routed = {str(n) for n in gateway.allowed_ips}
    assert "198.18.11.1/32" in routed and "198.18.10.1/32" not in routed
    text = branch.config.read_text()
    # what diagnose reads: that site's tunnel address, witness and WireGuard port
    line = next(x for x in text.splitlines() if x.startswith("# netsetup-diagnose: gateway="))
    assert "=198.18.11.1" in line and "witness=51831 listen-port=51830" in line
    main_config = parse(main.config)
    (main_gateway,) = main_config.peers.values()
    assert str(main_gateway.public_key) == profile.gateway.public_key


def test_a_second_peer_of_a_site_gets_the_next_address_of_that_site(sites: Path) -> None:
    profile = load_profile(sites)
    for name in ("a", "b"):
        service.provision(profile, name, "agency", state=StateDir(), clock=AT, site="branch")
    service.provision(profile, "c", "agency", state=StateDir(), clock=AT)
    addresses = {p.name: str(p.address_v4) for p in load_peers(profile)}
    assert addresses == {"a": "198.18.11.2", "b": "198.18.11.3", "c": "198.18.10.2"}


def test_an_unknown_site_is_refused_before_anything_is_written(
    sites: Path, state_dir: Path
) -> None:
    profile = load_profile(sites)
    before = snapshot(sites, state_dir)
    with pytest.raises(NotFoundError) as raised:
        service.provision(profile, "x", "dedicated", state=StateDir(), clock=AT, site="brnach")
    assert "no gateway 'brnach'" in str(raised.value)
    assert "'main', 'branch'" in str(raised.value)
    assert changed(before, snapshot(sites, state_dir)) == []


def test_rotate_writes_a_config_for_the_peers_own_site(sites: Path) -> None:
    profile = load_profile(sites)
    service.provision(profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch")
    rotated = service.rotate(profile, "lena", state=StateDir(), clock=AT)
    (gateway,) = parse(rotated.config).peers.values()
    assert str(gateway.public_key) == BRANCH.public
    assert str(load_peer(profile, "lena").address_v4) == "198.18.11.2"
    assert rotated.peer.gateway == "branch"


def test_render_takes_one_site_and_its_peers(sites: Path, tmp_path: Path) -> None:
    profile = load_profile(sites)
    service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    service.provision(profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch")
    out = tmp_path / "out" / "wg1.conf"
    result = render_gateway(profile, StateDir(), NOW, out=out, site="branch")
    assert (result.site, result.sites, result.active) == ("branch", ("main", "branch"), 1)
    text = out.read_text()
    assert "# lena (dedicated)" in text and "maria" not in text
    assert "Address = 198.18.11.1/24, 2001:db8:11::1/64" in text
    assert "ListenPort = 51830" in text
    ruleset = render_gateway(profile, StateDir(), NOW, firewall=True, site="branch").text
    assert ruleset is not None
    assert "table inet netsetup_wg1" in ruleset and "198.18.11.2 : jump mode_dedicated" in ruleset
    assert "198.18.10.2" not in ruleset
    first = render_gateway(profile, StateDir(), NOW, firewall=True).text
    assert first is not None and "198.18.10.2 : jump" in first and "198.18.11.2" not in first
    with pytest.raises(NotFoundError, match="no gateway 'nowhere'"):
        render_gateway(profile, StateDir(), NOW, firewall=True, site="nowhere")


def test_render_of_several_sites_says_which_one(
    sites: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["render", str(sites), "--firewall"], capsys)
    assert code == 0
    assert "rendered gateway 'main', the first of 2 (the others: branch)" in err
    code, _, err = run_main(["render", str(sites), "--firewall", "--gateway", "branch"], capsys)
    assert code == 0 and "rendered gateway" not in err


def test_the_state_folders_gateway_key_is_used_for_its_own_site_only(
    sites: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(sites)
    key_file = StateDir().gateway_key_path(profile.id)
    key_file.parent.mkdir(parents=True, mode=0o700)
    key_file.write_text(BRANCH.private.reveal() + "\n")
    key_file.chmod(0o600)
    branch = render_gateway(profile, StateDir(), NOW, out=tmp_path / "b.conf", site="branch")
    main = render_gateway(profile, StateDir(), NOW, out=tmp_path / "m.conf")
    assert "\nPrivateKey = " in (tmp_path / "b.conf").read_text() and not branch.warnings
    # not another site's identity
    assert "\nPrivateKey = " not in (tmp_path / "m.conf").read_text()
    assert main.warnings


def test_psk_for_supplies_the_preshared_keys(sites: Path) -> None:
    profile = load_profile(sites)
    service.provision(profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch")
    peers = profile.peers_of(profile.gateway_named("branch"), load_peers(profile))
    live = generate_preshared_key()
    text = render_gateway_config(
        profile.site("branch"), peers, StateDir(), NOW, psk_for=lambda peer: live
    )
    assert f"PresharedKey = {live.reveal()}" in text

    def nothing(peer: Peer) -> None:
        return None

    with pytest.raises(InputError, match="no preshared key for peer 'lena'"):
        render_gateway_config(profile.site("branch"), peers, StateDir(), NOW, psk_for=nothing)


def test_list_and_show_name_the_site(sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = load_profile(sites)
    service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    service.provision(profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch")
    code, out, _ = run_main(["list", str(sites)], capsys)
    assert code == 0
    header, *rows = out.splitlines()[:3]
    assert header.split()[:2] == ["NAME", "GATEWAY"]
    assert [row.split()[:2] for row in rows] == [["lena", "branch"], ["maria", "main"]]
    code, out, _ = run_main(["list", str(sites), "--json"], capsys)
    assert {p["name"]: p["gateway"] for p in json.loads(out)["peers"]} == {
        "lena": "branch",
        "maria": "main",
    }
    details = peer_details(profile, "lena", StateDir(), NOW)
    assert details.gateway_endpoint == "branch.acme-dental.example:51830"
    code, out, _ = run_main(["show", str(sites), "lena"], capsys)
    assert "gateway          branch (branch.acme-dental.example:51830)" in out


def test_one_site_profiles_keep_their_documents(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No `gateway` key appears in a peer file or a JSON document of a one-gateway profile."""
    code, out, _ = run_main(["provision", str(acme), "maria", "--mode", "agency", "--json"], capsys)
    assert code == 0 and "gateway" not in json.loads(out)["peer"]
    assert "\ngateway = " not in (acme / "peers" / "maria.toml").read_text()
    code, out, _ = run_main(["list", str(acme)], capsys)
    assert "GATEWAY" not in out


def test_provision_cli_takes_gateway(sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["provision", str(sites), "lena", "--mode", "dedicated", "--gateway", "branch"]
    code, out, _ = run_main(argv, capsys)
    assert code == 0
    assert "gateway          branch" in out
    assert f"netsetup render {sites} --gateway branch --out FILE" in out
    code, _, err = run_main([*argv[:2], "x", *argv[3:-1], "elsewhere"], capsys)
    assert code == 2 and "no gateway 'elsewhere'" in err and "(--gateway)" in err


def test_the_witness_of_a_site_knows_its_own_peers_only(sites: Path) -> None:
    profile = load_profile(sites)
    service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    service.provision(profile, "lena", "dedicated", state=StateDir(), clock=AT, site="branch")
    keys = {p.name: p.public_key for p in load_peers(profile)}

    def no_tools(argv: Sequence[str]) -> str | None:
        return None

    branch = SystemGateway(profile.site("branch"), runner=no_tools)
    main = SystemGateway(profile.site(None), runner=no_tools)
    assert set(branch.peers()) == {keys["lena"]}
    assert set(main.peers()) == {keys["maria"]}
    assert branch.interface == "wg1"
    assert ipaddress.ip_address("198.18.11.1") == profile.site("branch").network.gateway_address_v4
