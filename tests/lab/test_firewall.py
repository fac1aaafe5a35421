"""render_firewall: the gateway's nftables ruleset, checked as text (no root) and by nft itself."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from netsetup.gateway.firewall import render_firewall, table_name
from netsetup.profile.model import Peer
from netsetup.profile.store import load_profile

from .conftest import ACME, BRIGHTDESK

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


def test_only_active_peers_get_a_chain() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    assert "198.18.10.2 : jump peer_0" in text and "198.18.10.3 : jump peer_1" in text
    assert "198.18.10.4" not in text and "198.18.10.5" not in text
    assert "# maria (dedicated)" in text and "# temp (agency)" in text
    assert "gone" not in text.split("table inet", 1)[1]


def test_modes_get_their_destinations_plus_dns_and_voip() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    dedicated, agency = _chain(text, "peer_0"), _chain(text, "peer_1")
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
    chain = _chain(text, "peer_0")
    assert "ip daddr 198.51.100.40 udp dport 5060 accept" in chain
    assert "ip daddr 198.51.100.40 tcp dport 5061 accept" in chain  # tls only, no tcp/5060
    assert "tcp dport 5060" not in chain
    assert "udp dport 16384-32767" in chain


def test_hostile_peer_name_cannot_break_out_of_a_comment() -> None:
    profile = load_profile(ACME)
    evil = _peer('x"; flush ruleset; #', "dedicated", 2)
    text = render_firewall(profile, [evil], NOW)
    assert 'x"' not in text and "flush ruleset;" not in text


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft")
@pytest.mark.parametrize("profile_dir", [ACME, BRIGHTDESK], ids=["acme", "brightdesk"])
def test_nft_accepts_the_ruleset(profile_dir: object) -> None:
    text = render_firewall(load_profile(profile_dir), PEERS, NOW)  # type: ignore[arg-type]
    # check only (-c), and in a private network namespace: nothing is loaded anywhere
    for _ in range(2):  # twice: the delete-then-create preamble must also work on a fresh table
        done = subprocess.run(
            ["unshare", "--net", "nft", "-c", "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
