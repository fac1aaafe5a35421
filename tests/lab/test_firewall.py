"""render_firewall: the gateway's nftables ruleset, checked as text (no root) and by nft itself."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.gateway.firewall import render_firewall, table_name
from netsetup.profile.model import Peer
from netsetup.profile.store import load_profile

from .conftest import ACME, BRIGHTDESK, require_lab

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _peer(name: str, mode: str, last: int, **extra: object) -> Peer:
    v6 = ipaddress.IPv6Address(f"2001:db8:10::{last:x}")
    return Peer(
        name,
        mode,
        "k" * 43 + "=",
        ipaddress.IPv4Address(f"198.18.10.{last}"),
        v6,
        NOW - timedelta(days=1),
        **extra,  # type: ignore[arg-type]
    )


PEERS = [
    _peer("maria", "dedicated", 2),
    _peer("temp", "agency", 3, expires=NOW + timedelta(days=3)),
    _peer("gone", "dedicated", 4, status="revoked", revoked=NOW - timedelta(hours=1)),
    _peer("old", "agency", 5, expires=NOW - timedelta(minutes=1)),
]


def _chain(text: str, name: str) -> str:
    start = text.index(f"chain {name} {{")
    return text[start : text.index("\n\t}", start)]


def test_default_drop_isolation_and_established() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    tunnel = _chain(text, "from_tunnel")
    lines = [line.strip() for line in tunnel.splitlines()[1:] if line.strip()]
    assert lines[0].startswith('oifname "wg0" drop')  # isolation before anything is accepted
    assert lines[1] == "ct state established,related accept"
    assert lines[-1].startswith("drop")
    assert 'iifname "wg0" jump from_tunnel' in _chain(text, "forward")
    assert f"delete table inet {table_name('wg0')}" in text


def test_only_active_peers_are_in_the_maps() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    assert "198.18.10.2 : jump mode_dedicated," in text
    assert "198.18.10.3 timeout 259200s : jump mode_agency," in text
    assert "2001:db8:10::3 timeout 259200s : jump mode_agency," in text
    assert "198.18.10.4" not in text and "198.18.10.5" not in text
    assert "#   maria (dedicated): 198.18.10.2" in text and "#   temp (agency)" in text
    assert "gone" not in text.split("table inet", 1)[1]
    tunnel = _chain(text, "from_tunnel")
    assert "ip saddr vmap @peers_v4" in tunnel and "ip6 saddr vmap @peers_v6" in tunnel


def test_modes_get_their_destinations_plus_dns_and_voip() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    dedicated, agency = _chain(text, "mode_dedicated"), _chain(text, "mode_agency")
    assert "ip daddr 192.0.2.0/24 accept" in dedicated
    assert "ip6 daddr 2001:db8:20::/64 accept" in dedicated
    assert "ip daddr 192.0.2.20/32 tcp dport 443 accept" in agency
    assert "192.0.2.0/24" not in agency
    for chain in (dedicated, agency):
        assert "ip daddr 192.0.2.53 meta l4proto { tcp, udp } th dport 53 accept" in chain
        assert "ip daddr 192.0.2.40 udp dport 5060 accept" in chain
        assert "ip daddr 192.0.2.40 tcp dport { 5060, 5061 } accept" in chain
        assert "ip daddr 192.0.2.40/32 udp dport 10000-20000 accept" in chain


def test_voip_transports_follow_the_profile() -> None:
    profile = load_profile(BRIGHTDESK)
    text = render_firewall(profile, [_peer("a", "agency", 2)], NOW)
    chain = _chain(text, "mode_agency")
    assert "ip daddr 198.51.100.40 udp dport 5060 accept" in chain
    assert "ip daddr 198.51.100.40 tcp dport 5061 accept" in chain  # tls only, no tcp/5060
    assert "tcp dport 5060" not in chain
    assert "udp dport 16384-32767" in chain


def test_hostile_peer_name_cannot_break_out_of_a_comment() -> None:
    profile = load_profile(ACME)
    evil = _peer('x"; flush ruleset; #', "dedicated", 2)
    text = render_firewall(profile, [evil], NOW)
    assert 'x"' not in text and "flush ruleset;" not in text


def _nft_check(text: str) -> None:
    """`nft -c` (check only) in a private network namespace: nothing is loaded anywhere."""
    require_lab()
    for _ in range(2):  # twice: the delete-then-create preamble must also work on a fresh table
        done = subprocess.run(
            ["unshare", "--net", "nft", "-c", "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("profile_dir", [ACME, BRIGHTDESK], ids=["acme", "brightdesk"])
def test_nft_accepts_the_ruleset(profile_dir: object) -> None:
    _nft_check(render_firewall(load_profile(profile_dir), PEERS, NOW))  # type: ignore[arg-type]


def _edited(tmp_path: Path, drop: tuple[str, ...]) -> Path:
    """A copy of the acme profile without the given tables or keys (by line prefix)."""
    target = tmp_path / "acme-dental"
    target.mkdir()
    kept, skipping = [], False
    for line in (ACME / "profile.toml").read_text().splitlines():
        if line.startswith("["):
            skipping = line.strip("[] ") in drop
        if skipping or any(line.startswith(f"{key} =") for key in drop):
            continue
        kept.append(line)
    (target / "profile.toml").write_text("\n".join(kept) + "\n")
    return target


@pytest.mark.parametrize(
    "drop",
    [("voip",), ("tunnel_v6", "dedicated"), ("dns", "dns.records"), ()],
    ids=["no-voip", "no-ipv6", "no-dns", "no-peers"],
)
def test_nft_accepts_edge_profiles(tmp_path: Path, drop: tuple[str, ...]) -> None:
    profile = load_profile(_edited(tmp_path, drop))
    peers = PEERS if drop else []  # the last case: the profile as shipped, nobody provisioned yet
    if profile.network.tunnel_v6 is None:
        peers = [replace(p, address_v6=None) for p in peers]
    text = render_firewall(profile, peers, NOW)
    if not peers:
        assert "elements" not in text
    if profile.network.tunnel_v6 is None:
        assert "2001:db8:10" not in text.split("table inet", 1)[1]
    if profile.voip is None:
        assert "SIP" not in text and "RTP" not in text
    _nft_check(text)


def test_the_ruleset_grows_by_one_map_element_per_peer() -> None:
    """Rules are per mode: 5,000 peers add 10,000 map elements and no rules (nft checks it)."""
    profile = load_profile(ACME)
    base = int(ipaddress.IPv4Address("198.18.0.2"))
    many = [_peer(f"p{i}", "dedicated" if i % 2 else "agency", 2) for i in range(5000)]
    many = [
        replace(
            p,
            address_v4=ipaddress.IPv4Address(base + i),
            address_v6=ipaddress.IPv6Address(f"2001:db8:10::{i + 2:x}"),
        )
        for i, p in enumerate(many)
    ]
    text = render_firewall(profile, many, NOW)
    few = render_firewall(profile, many[:2], NOW)
    rules = [line for line in text.splitlines() if line.strip().endswith(('"', "accept", "drop"))]
    few_rules = [
        line for line in few.splitlines() if line.strip().endswith(('"', "accept", "drop"))
    ]
    assert len(rules) == len(few_rules)
    assert text.count(": jump mode_") == 10_000
    _nft_check(text)


def test_expiring_peers_carry_a_timeout_in_the_map() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    assert "198.18.10.3 timeout 259200s : jump mode_agency," in text  # expires in 3 days
    assert "198.18.10.2 : jump mode_dedicated," in text  # no expiry: no timeout
    far = _peer("far", "agency", 6, expires=NOW + timedelta(days=3000))
    assert "198.18.10.6 : jump mode_agency," in render_firewall(load_profile(ACME), [far], NOW)


def test_the_kernel_drops_an_expired_peer_without_a_re_render() -> None:
    """Loaded for real (in a private network namespace): the element of a peer that expires in
    one second is gone from the map two seconds later, so its traffic meets the final drop."""
    require_lab()
    soon = _peer("soon", "agency", 7, expires=NOW + timedelta(seconds=1))
    text = render_firewall(load_profile(ACME), [PEERS[0], soon], NOW)
    script = (
        "nft -f - && nft list map inet netsetup_wg0 peers_v4 && sleep 2.5 && "
        "echo AFTER && nft list map inet netsetup_wg0 peers_v4"
    )
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], input=text, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split("AFTER")
    assert "198.18.10.7" in before and "198.18.10.2" in before
    assert "198.18.10.7" not in after and "198.18.10.2" in after
