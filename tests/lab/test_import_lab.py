"""Issue 10, what must hold 4: a lab gateway running a wg-quick server config of 50 peers that
netsetup did not make (PiVPN, wg-easy and hand-kept comments) is imported; the profile then renders
exactly the peers the gateway runs (same public keys, preshared keys and AllowedIPs), loading that
changes no key, and an imported assistant's tunnel keeps working with the key it always had."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.gateway.importer import parse_dump, read_wg_conf
from netsetup.keys import KeyPair, SecretKey, generate_keypair, generate_preshared_key
from netsetup.lab import Lab, probe, wireguard
from netsetup.lab.admin import netsetup_as_admin
from netsetup.profile.store import load_peer, load_peers, write_peer
from netsetup.profile.values import PeerName
from netsetup.provision.client_config import render_client_config
from netsetup.validate import validate as run_validate

pytestmark = pytest.mark.lab

PEERS = 50
Live = set[tuple[str, str, tuple[str, ...]]]


def _comment(index: int) -> tuple[list[str], list[str]]:
    """The lines a manager writes above and after peer `index` (four styles in turn)."""
    style = index % 4
    if style == 0:
        return [f"### begin pi{index} ###"], [f"### end pi{index} ###"]
    if style == 1:
        return [f"# Client: Easy {index} (0000{index:04d}-aaaa)"], []
    if style == 2:
        return [f"# hand {index}"], []
    return [], []  # no name at all: generated


@pytest.fixture(scope="module")
def foreign(lab: Lab) -> Iterator[list[tuple[KeyPair, str]]]:
    """The gateway reconfigured by hand as another tool would: 50 peers, its own interface."""
    interface = [
        line
        for line in lab.gateway_config.read_text().split("[Peer]")[0].splitlines()
        if line and not line.startswith("#")
    ]
    assert interface[0] == "[Interface]" and any(x.startswith("PrivateKey") for x in interface)
    peers = [(generate_keypair(), generate_preshared_key().reveal()) for _ in range(PEERS)]
    lines = ["# wg0.conf kept by hand since 2023", *interface, ""]
    for index, (pair, psk) in enumerate(peers):
        above, after = _comment(index)
        lines += [*above, "[Peer]", f"PublicKey = {pair.public}", f"PresharedKey = {psk}"]
        lines += [f"AllowedIPs = 198.18.10.{10 + index}/32, 2001:db8:10::{10 + index:x}/128"]
        lines += [*after, ""]
    lab.gateway_config.write_text("\n".join(lines) + "\n")
    wireguard.syncconf(lab.ns("gateway"), lab.gateway_interface, lab.gateway_config)
    yield peers


def _live(lab: Lab) -> Live:
    """(public key, preshared key, AllowedIPs) of every peer the gateway runs."""
    dump = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "dump"])
    assert dump.ok, dump.stderr
    _, peers = parse_dump(dump.stdout)
    return {
        (
            p.public_key,
            p.preshared_key.reveal() if p.preshared_key else "",
            tuple(sorted(p.allowed_ips)),
        )
        for p in peers
    }


def _wanted(peers: list[tuple[KeyPair, str]]) -> Live:
    return {
        (
            pair.public,
            psk,
            tuple(sorted([f"198.18.10.{10 + i}/32", f"2001:db8:10::{10 + i:x}/128"])),
        )
        for i, (pair, psk) in enumerate(peers)
    }


def test_import_then_the_profile_renders_what_the_gateway_runs(
    lab: Lab, foreign: list[tuple[KeyPair, str]], tmp_path: Path
) -> None:
    before = _live(lab)
    assert before == _wanted(foreign)
    done = netsetup_as_admin(
        lab,
        "import",
        str(lab.profile_dir),
        "--wg-conf",
        str(lab.gateway_config),
        "--mode",
        "dedicated",
        "--json",
    )
    document = json.loads(done.stdout)
    assert document["schema"] == "netsetup.import/1"
    assert len(document["imported"]) == PEERS and document["skipped"] == []
    # the lab's gateway key is the profile's: stored for this admin, profile.toml untouched
    assert document["gateway_key"]["action"] == "stored"
    names = [p["name"] for p in document["imported"]]
    assert names[:4] == ["pi0", "easy-1", "hand-2", "peer-1"]
    assert names.count("peer-1") == 1 and f"peer-{PEERS // 4}" in names
    for _pair, psk in foreign:
        assert psk not in done.stdout + done.stderr
    profile = lab.profile()
    assert len(load_peers(profile)) == PEERS
    report = run_validate([lab.profile_dir])
    assert not report.failed, [str(f) for f in report.findings]

    # the gateway config the profile renders holds exactly the peers the gateway runs
    rendered = tmp_path / "wg0.conf"
    lab.netsetup("render", str(lab.profile_dir), "--out", str(rendered))
    config = read_wg_conf(rendered)
    assert config.interface is not None and config.interface.private_key is not None
    assert config.interface.private_key == SecretKey(lab.gateway_key_file.read_text().strip())
    ours = {
        (
            p.public_key,
            p.preshared_key.reveal() if p.preshared_key else "",
            tuple(sorted(p.allowed_ips)),
        )
        for p in config.peers
    }
    assert ours == before

    # loading it changes no key, and an imported assistant's own key still opens the tunnel
    rendered.replace(lab.gateway_config)
    wireguard.syncconf(lab.ns("gateway"), lab.gateway_interface, lab.gateway_config)
    assert _live(lab) == before
    lab.load_firewall()  # the ruleset knows the imported peers (what `apply` loads with the conf)
    first_key, first_psk = foreign[0]
    client = tmp_path / "pi0" / "wg-acme.conf"
    client.parent.mkdir(mode=0o700)
    client.write_text(
        render_client_config(
            profile,
            load_peer(profile, PeerName("pi0")),
            first_key.private,
            SecretKey(first_psk),
            None,
        )
    )
    lab.tunnel_up(client, "home")
    try:
        assert lab.wait_handshake("home", timeout=15.0) is not None
        ping = probe.ping(lab.ns("home"), str(profile.network.gateway_address_v4), count=2)
        assert ping.received == 2
    finally:
        lab.tunnel_down("home")


AGENT_SOURCE = Path(__file__).resolve().parents[2] / "netsetup" / "gateway" / "agent.py"
AGENT = "/usr/local/sbin/netsetup-gateway"


def _install_agent(lab: Lab) -> None:
    """The gateway agent put in place over SSH, as `gateway bootstrap` does."""
    profile = lab.profile()
    assert profile.gateway.ssh is not None
    argv = ["ip", "netns", "exec", lab.ns("office"), "ssh", "-i", str(lab.ssh_key)]
    argv += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
    argv += ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"root@{profile.gateway.ssh.host}"]
    argv += [f"mkdir -p /usr/local/sbin && cat > {AGENT} && chmod 0755 {AGENT}"]
    done = subprocess.run(argv, input=AGENT_SOURCE.read_bytes(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


def test_import_from_the_gateway_takes_hand_added_and_live_only_peers(
    lab: Lab, foreign: list[tuple[KeyPair, str]], tmp_path: Path
) -> None:
    _install_agent(lab)
    # by hand on the gateway: two peers in its config file, one only live (`wg set`)
    (a, psk_a), (b, psk_b), (c, psk_c) = [
        (generate_keypair(), generate_preshared_key().reveal()) for _ in range(3)
    ]
    extra = ["", "# Client: Late Comer (x1)", "[Peer]", f"PublicKey = {a.public}"]
    extra += [f"PresharedKey = {psk_a}", "AllowedIPs = 198.18.10.200/32", ""]
    extra += ["[Peer]", "# friendly_name = night shift", f"PublicKey = {b.public}"]
    extra += [f"PresharedKey = {psk_b}", "AllowedIPs = 198.18.10.201/32, 2001:db8:10::c9/128"]
    with lab.gateway_config.open("a") as handle:
        handle.write("\n".join(extra) + "\n")
    wireguard.syncconf(lab.ns("gateway"), lab.gateway_interface, lab.gateway_config)
    psk_file = tmp_path / "psk"
    psk_file.touch(mode=0o600)
    psk_file.write_text(psk_c + "\n")
    argv = ["wg", "set", lab.gateway_interface, "peer", c.public, "preshared-key", str(psk_file)]
    argv += ["allowed-ips", "198.18.10.202/32,2001:db8:10::ca/128"]
    added = lab.exec("gateway", argv)
    assert added.ok, added.stderr
    live = _live(lab)
    done = netsetup_as_admin(
        lab, "import", str(lab.profile_dir), "--from-gateway", "--mode", "agency", "--json"
    )
    document = json.loads(done.stdout)
    imported = {p["name"]: p for p in document["imported"]}
    assert {"late-comer", "night-shift"} <= set(imported)
    live_only = [p for p in document["imported"] if p["line"] is None]
    assert [p["name_from"] for p in live_only] == ["generated"]
    assert live_only[0]["addresses"] == ["198.18.10.202", "2001:db8:10::ca"]
    assert all(p["mode"] == "agency" and p["preshared_key"] for p in document["imported"])
    for secret in (psk_a, psk_b, psk_c):
        assert secret not in done.stdout + done.stderr
    # every peer the gateway runs is now in the profile, with the key and psk it runs with
    rendered = tmp_path / "wg0.conf"
    lab.netsetup("render", str(lab.profile_dir), "--out", str(rendered))
    ours = {
        (
            p.public_key,
            p.preshared_key.reveal() if p.preshared_key else "",
            tuple(sorted(p.allowed_ips)),
        )
        for p in read_wg_conf(rendered).peers
    }
    assert ours == live
    assert not run_validate([lab.profile_dir]).failed


def test_after_import_plan_has_no_peer_change_and_apply_rekeys_nobody(
    lab: Lab, foreign: list[tuple[KeyPair, str]]
) -> None:
    _install_agent(lab)
    if len(load_peers(lab.profile())) < PEERS:  # run alone: import first
        netsetup_as_admin(
            lab, "import", str(lab.profile_dir), "--from-gateway", "--mode", "dedicated"
        )
    before = _live(lab)
    planned = netsetup_as_admin(lab, "plan", str(lab.profile_dir), "--json", check=False)
    (site,) = json.loads(planned.stdout)["gateways"]
    # nothing to add, remove or change, no drift, no peer without its preshared key
    assert site["peers_in_sync"] is True, site
    assert (site["add"], site["remove"], site["change"]) == ([], [], [])
    assert (site["drift_peers"], site["unkeyed"]) == ([], [])
    applied = netsetup_as_admin(lab, "apply", str(lab.profile_dir), "--json", check=False)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = netsetup_as_admin(lab, "plan", str(lab.profile_dir), "--json", check=False)
    assert again.returncode == 0, again.stdout
    assert json.loads(again.stdout)["in_sync"] is True
    assert _live(lab) == before  # no key, preshared key or address changed


def test_sweep_apply_takes_a_long_expired_peer_off_the_gateway(
    lab: Lab, foreign: list[tuple[KeyPair, str]]
) -> None:
    _install_agent(lab)
    if len(load_peers(lab.profile())) < PEERS:  # run alone: import first
        netsetup_as_admin(
            lab, "import", str(lab.profile_dir), "--from-gateway", "--mode", "dedicated"
        )
    profile = lab.profile()
    gone = load_peer(profile, PeerName("hand-2"))
    ended = datetime.now(UTC) - timedelta(days=45)
    write_peer(profile, replace(gone, expires=ended))
    before = _live(lab)
    assert any(key == gone.public_key for key, _, _ in before)
    done = netsetup_as_admin(
        lab, "sweep", str(lab.profile_dir), "--grace", "30d", "--apply", "--json", check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert [p["name"] for p in document["swept"]] == ["hand-2"]
    assert document["apply"]["exit_code"] == 0
    assert not (lab.profile_dir / "peers" / "hand-2.toml").exists()
    # off the gateway; every other peer as it was (keys, preshared keys, addresses)
    assert _live(lab) == {entry for entry in before if entry[0] != gone.public_key}
