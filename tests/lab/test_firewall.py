"""render_firewall: the gateway's nftables ruleset, checked as text (no root) and by nft itself."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.gateway.firewall import MAX_NFT_TIME, render_firewall, table_name
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


def _rules(text: str, name: str) -> list[str]:
    return [line.strip() for line in _chain(text, name).splitlines()[1:] if line.strip()]


def test_forward_drops_by_default_and_peers_are_checked_before_conntrack() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    forward = _rules(text, "forward")
    # the deny is the last rule, live with the ruleset: a reloaded chain's drop policy comes late
    # (test_firewall_audit.py shows forbidden packets passing during reloads with it)
    assert forward[0] == "type filter hook forward priority filter; policy accept;"
    rules = [r for r in forward[1:] if not r.startswith("#")]
    assert rules == [
        'iifname "wg0" oifname "wg0" drop comment "peers never reach each other"',
        'iifname "wg0" jump from_peer',
        'oifname "wg0" jump to_peer',
        'drop comment "nothing else is forwarded: not from the WAN, not between the others"',
    ]
    # the peer's state is checked first, in both directions; no blanket established/related
    assert _rules(text, "from_peer")[0] == "jump sender_active"
    assert _rules(text, "to_peer")[1] == "jump receiver_active"
    assert "established" not in text and "related" not in text.split("table inet", 1)[1]
    assert _rules(text, "sender_active")[:2] == [
        "ip saddr != @peers_v4 drop",
        "ip6 saddr != @peers_v6 drop",
    ]
    assert _rules(text, "to_peer")[0].startswith("fib saddr . iif oif missing drop")
    assert f"delete table inet {table_name('wg0')}" in text


def test_the_gateway_answers_the_tunnel_with_ping_and_its_own_dns_only() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    tunnel_only = 'drop comment "the tunnel addresses answer the tunnel only"'
    assert _rules(text, "input") == [
        "type filter hook input priority filter; policy accept;",
        *(
            f"udp dport 51820 update @wg_seen_{v} {{ {f} saddr }} "
            'comment "WireGuard seen from there (for the witness)"'
            for v, f in (("v4", "ip"), ("v6", "ip6"))
        ),
        'iifname "wg0" jump peer_to_gateway',
        f'iifname != "lo" ip daddr 198.18.10.0/24 {tunnel_only}',
        f'iifname != "lo" ip6 daddr 2001:db8:10::/64 {tunnel_only}',
        'iifname != "wg0" udp dport 51821 accept comment "the witness"',
        'iifname != "wg0" meta l4proto { tcp, udp } th dport 5060 '
        'accept comment "SIP mirror of the witness (diagnose.sip_mirror)"',
    ]
    assert _rules(text, "peer_to_gateway") == [
        "jump sender_active",
        'ip daddr 198.18.10.1 icmp type echo-request accept comment "ping"',
        'ip6 daddr 2001:db8:10::1 icmpv6 type echo-request accept comment "ping"',
        "ip daddr 192.0.2.53 meta l4proto { tcp, udp } th dport 53 accept"
        ' comment "DNS on the gateway"',
        'ip daddr 198.18.10.1 udp dport 51821 accept comment "the witness"',
        'ip6 daddr 2001:db8:10::1 udp dport 51821 accept comment "the witness"',
        "ct direction original jump voip",
        "ct direction reply jump calls",
        "drop",
    ]
    # and it sends into the tunnel only its answers and calls, to active peers
    assert _rules(text, "output") == [
        "type filter hook output priority filter; policy accept;",
        'oifname "wg0" jump gateway_to_peer',
    ]
    assert _rules(text, "gateway_to_peer") == [
        "jump receiver_active",
        'ct direction reply accept comment "answers to what the tunnel may ask of it"',
        "ct direction original jump calls",
        "drop",
    ]
    assert _rules(text, "voip") == [
        r for r in _rules(text, "mode_agency") if "SIP" in r or "RTP" in r
    ]


def test_only_active_peers_are_in_the_maps() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    assert "198.18.10.2 : jump mode_dedicated," in text
    assert "198.18.10.3 : jump mode_agency," in text
    assert "2001:db8:10::3 : jump mode_agency," in text
    assert "198.18.10.4" not in text and "198.18.10.5" not in text
    assert "#   maria (dedicated): 198.18.10.2" in text and "#   temp (agency)" in text
    assert "gone" not in text.split("table inet", 1)[1]
    assert "ct direction original ip saddr vmap @peers_v4" in _chain(text, "from_peer")
    assert "ct direction reply ip6 daddr vmap @peers_v6" in _chain(text, "to_peer")


def test_modes_get_their_flows_plus_dns_and_voip_by_the_original_tuple() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    dedicated, agency = _chain(text, "mode_dedicated"), _chain(text, "mode_agency")
    assert "ct original ip daddr 192.0.2.0/24 accept" in dedicated
    assert "ct original ip6 daddr 2001:db8:20::/64 accept" in dedicated
    portal = "ct original ip daddr 192.0.2.20/32"
    assert f"meta l4proto tcp {portal} ct original proto-dst 443 accept" in agency
    assert f"meta l4proto icmp {portal} ct protocol tcp ct original proto-dst 443 accept" in agency
    assert "192.0.2.0/24" not in agency
    for chain in (dedicated, agency):
        dns = "ct original ip daddr 192.0.2.53/32"
        assert f"meta l4proto udp {dns} ct original proto-dst 53 accept" in chain
        assert f"meta l4proto tcp {dns} ct original proto-dst 53 accept" in chain
        sip = "ct original ip daddr 192.0.2.40/32"
        assert f"meta l4proto udp {sip} ct original proto-dst 5060 accept" in chain
        assert f"meta l4proto tcp {sip} ct original proto-dst 5060 accept" in chain
        assert f"meta l4proto tcp {sip} ct original proto-dst 5061 accept" in chain
        assert f"meta l4proto udp {sip} ct original proto-dst 10000-20000 accept" in chain


def test_calls_come_from_the_pbx_and_the_media_hosts_only() -> None:
    calls = _rules(render_firewall(load_profile(ACME), PEERS, NOW), "calls")
    flows = [r.split(" accept")[0] for r in calls if "ICMP" not in r]
    pbx = "ct original ip saddr 192.0.2.40/32"
    assert flows == [
        f"meta l4proto udp {pbx} ct original proto-dst 5060",
        f"meta l4proto tcp {pbx} ct original proto-dst 5060",
        f"meta l4proto tcp {pbx} ct original proto-dst 5061",
        f"meta l4proto udp {pbx} ct original proto-dst 10000-20000",
    ]
    assert len(calls) == 2 * len(flows)  # each with its ICMP errors


def test_voip_transports_follow_the_profile() -> None:
    profile = load_profile(BRIGHTDESK)
    text = render_firewall(profile, [_peer("a", "agency", 2)], NOW)
    for name in ("mode_agency", "calls"):
        chain = _chain(text, name)
        assert (
            "meta l4proto udp" in chain and "198.51.100.40/32 ct original proto-dst 5060" in chain
        )
        assert (
            "meta l4proto tcp" in chain and "198.51.100.40/32 ct original proto-dst 5061" in chain
        )
        assert "tcp ct original ip daddr 198.51.100.40/32 ct original proto-dst 5060" not in chain
        assert "tcp ct original ip saddr 198.51.100.40/32 ct original proto-dst 5060" not in chain
        assert "ct original proto-dst 16384-32767" in chain


def test_hostile_peer_name_cannot_break_out_of_a_comment() -> None:
    profile = load_profile(ACME)
    evil = _peer('x"; flush ruleset; #', "dedicated", 2)
    text = render_firewall(profile, [evil], NOW)
    assert 'x"' not in text and "flush ruleset;" not in text


def test_every_interface_name_gets_a_table_of_its_own() -> None:
    """Interface names may hold `-`, `_`, `.`, `+` and `=`: two tunnels whose names differ only
    there must not share (and so replace each other's) table."""
    names = ["wg0", "wg-0", "wg_0", "wg.0", "wg+0", "wg=0", "wg_2d0"]
    tables = {table_name(name) for name in names}
    assert len(tables) == len(names), tables
    assert table_name("wg0") == "netsetup_wg0"
    profile = load_profile(ACME)
    for name in names[1:]:
        renamed = replace(profile, gateway=replace(profile.gateway, interface=name))
        text = render_firewall(renamed, PEERS, NOW)
        assert f"delete table inet {table_name(name)}\n" in text
        assert f'iifname "{name}" jump peer_to_gateway' in text
        _nft_check(text)


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


def _rule_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip().endswith(('"', "accept", "drop"))]


def test_the_ruleset_grows_by_map_elements_and_one_rule_per_expiry_instant() -> None:
    """Rules are per mode: 5,000 peers (half of them expiring, each at its own second) add
    15,000 map elements and one rule per expiry instant (nft checks it). Load times are in
    the report of benchmarks, not here."""
    profile = load_profile(ACME)
    base = int(ipaddress.IPv4Address("198.18.0.2"))
    many = [
        replace(
            _peer(f"p{i}", "dedicated" if i % 2 else "agency", 2),
            address_v4=ipaddress.IPv4Address(base + i),
            address_v6=ipaddress.IPv6Address(f"2001:db8:10::{i + 2:x}"),
            expires=NOW + timedelta(days=1, seconds=i) if i % 2 == 0 else None,
        )
        for i in range(5000)
    ]
    text = render_firewall(profile, many, NOW)
    few = render_firewall(profile, many[:2], NOW)  # one of them expiring
    assert len(_rule_lines(text)) == len(_rule_lines(few)) - 1 + 2500
    assert text.count(": jump mode_") == 10_000
    assert text.count(": jump expires_") == 5_000
    _nft_check(text)


def test_expiry_is_an_absolute_time_in_its_own_chain() -> None:
    text = render_firewall(load_profile(ACME), PEERS, NOW)
    seconds = int((NOW + timedelta(days=3)).timestamp())  # temp expires in 3 days
    assert _rules(text, f"expires_{seconds}") == [
        f'meta time >= {seconds} drop comment "expired at 2026-01-18T12:00:00Z"'
    ]
    assert f"198.18.10.3 : jump expires_{seconds}," in text
    assert f"2001:db8:10::3 : jump expires_{seconds}," in text
    assert "198.18.10.2 : jump expires" not in text  # no expiry, no expiry chain
    # nothing counts from the moment of loading (but the witness's record of who sent when)
    assert "timeout" not in re.sub(r"\tset wg_seen_v[46] \{.*?\n\t\}", "", text, flags=re.S)
    # the same instant whenever it is rendered: a later render names the same second
    later = render_firewall(load_profile(ACME), PEERS, NOW + timedelta(days=1))
    assert f"meta time >= {seconds} drop" in later
    far = _peer("far", "agency", 6, expires=datetime(2400, 1, 1, tzinfo=UTC))
    text = render_firewall(load_profile(ACME), [far], NOW)
    assert f"meta time >= {MAX_NFT_TIME} drop" in text  # beyond what nft holds: its last second


def test_an_expiry_at_the_render_instant_or_within_its_second_grants_nothing() -> None:
    """A peer expiring exactly now is not in the maps; one expiring half a second from now is,
    but its chain drops from the current second on (a fraction is cut, not granted)."""
    now_peer = _peer("now", "agency", 8, expires=NOW)
    soon_peer = _peer("soon", "agency", 9, expires=NOW + timedelta(milliseconds=500))
    text = render_firewall(load_profile(ACME), [now_peer, soon_peer], NOW)
    assert "198.18.10.8" not in text
    seconds = int(NOW.timestamp())
    assert f"198.18.10.9 : jump expires_{seconds}," in text
    assert _rules(text, f"expires_{seconds}")[0].startswith(f"meta time >= {seconds} drop")


def test_nft_reads_the_expiry_as_utc_unix_seconds_whatever_the_local_timezone() -> None:
    """Loaded for real (in a private network namespace) under a far-off local timezone: nft
    lists the expiry instant in UTC as the rendered second, so no timezone shifts it."""
    require_lab()
    soon = _peer("soon", "agency", 7, expires=datetime(2026, 11, 27, 8, 30, tzinfo=UTC))
    text = render_firewall(load_profile(ACME), [PEERS[0], soon], NOW)
    seconds = int(datetime(2026, 11, 27, 8, 30, tzinfo=UTC).timestamp())
    listing = f"nft list chain inet netsetup_wg0 expires_{seconds}"
    script = f"TZ=Pacific/Kiritimati nft -f - && TZ=UTC {listing}"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], input=text, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert 'meta time >= "2026-11-27 08:30:00" drop' in done.stdout, done.stdout
