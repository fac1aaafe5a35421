"""Reading the gateway: `wg show <iface> dump`, the nftables sets, the peer files; the key the
witness falls back on; the firewall rules it needs (and nothing more)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.gateway.firewall import render_firewall
from netsetup.keys import generate_keypair
from netsetup.profile.store import load_profile, peer_to_toml
from netsetup.responder.witness import (
    FRESH_S,
    SystemGateway,
    gateway_key,
    key_state,
    listen_addresses,
    parse_dump,
    parse_seen_set,
)

from .support import NOW, peer

SEEN = '"WireGuard seen from there (for the witness)"'


def test_the_dump_gives_the_live_key_port_and_handshakes() -> None:
    gw, a, b = generate_keypair(), generate_keypair(), generate_keypair()
    dump = (
        f"{gw.private.reveal()}\t{gw.public}\t51820\toff\n"
        f"{a.public}\t(none)\t198.51.100.2:40000\t198.18.10.2/32\t1768478400\t10\t20\toff\n"
        f"{b.public}\t(none)\t(none)\t198.18.10.3/32\t0\t0\t0\t25\n"
    )
    live = parse_dump(dump)
    assert live.private_key == gw.private and live.public_key == gw.public
    assert live.listen_port == 51820
    assert live.handshakes == {a.public: 1768478400, b.public: 0}
    assert gw.private.reveal() not in repr(live)
    assert parse_dump("").private_key is None and parse_dump("garbage").handshakes == {}


def test_the_seen_sets_give_each_address_its_age() -> None:
    document = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {
                "set": {
                    "name": "wg_seen_v4",
                    "timeout": 600,
                    "elem": [
                        {"elem": {"val": "198.51.100.2", "expires": 597}},
                        {"elem": {"val": "203.0.113.9", "expires": 10, "timeout": 60}},
                        {"elem": {"val": "not an address", "expires": 1}},
                    ],
                }
            },
        ]
    }
    assert parse_seen_set(json.dumps(document)) == {"198.51.100.2": 3.0, "203.0.113.9": 50.0}
    empty = {"nftables": [{"set": {"name": "wg_seen_v6", "timeout": 600}}]}
    assert parse_seen_set(json.dumps(empty)) == {}
    assert parse_seen_set("Error: No such file or directory") is None
    assert parse_seen_set('{"nftables": []}') is None


def test_the_system_source_reads_what_the_tools_print(acme: Path) -> None:
    gw, ana, old = generate_keypair(), generate_keypair(), generate_keypair()
    profile = load_profile(acme)
    profile.peers_dir.mkdir(exist_ok=True)
    (profile.peers_dir / "ana.toml").write_text(peer_to_toml(peer("ana", ana.public)))
    retired = peer("ana", old.public, "revoked")
    (profile.peers_dir / "ana.revoked-0011223344556677.toml").write_text(peer_to_toml(retired))
    calls: list[list[str]] = []

    def runner(argv: object) -> str | None:
        calls.append(list(argv))  # type: ignore[call-overload]
        if list(argv)[:2] == ["wg", "show"]:  # type: ignore[call-overload]
            return f"{gw.private.reveal()}\t{gw.public}\t51999\toff\n"
        return None  # nft: no such set

    source = SystemGateway(profile, runner=runner)
    assert source.live().listen_port == 51999
    assert calls[0] == ["wg", "show", "wg0", "dump"]
    assert source.seen_age("198.51.100.2") == (False, None)
    assert ["nft", "-j", "list", "set", "inet", "netsetup_wg0", "wg_seen_v4"] in calls
    assert key_state(ana.public, source, NOW) == "unknown"  # not on the live interface
    assert key_state(old.public, source, NOW) == "revoked"  # a retired record still counts
    assert gw.private.reveal() not in repr(source)


def test_the_fallback_key_when_wg_cannot_be_read(acme: Path, tmp_path: Path) -> None:
    profile = load_profile(acme)
    key = generate_keypair()
    key_file = tmp_path / "private.key"
    key_file.write_text(key.private.reveal() + "\n")
    source = SystemGateway(profile, gateway_key(profile, key_file, None), runner=lambda a: None)
    assert source.live().public_key == key.public
    with pytest.raises(InputError) as raised:
        gateway_key(profile, tmp_path / "missing.key", None)
    assert "missing.key" in str(raised.value)
    (tmp_path / "bad.key").write_text("not a key\n")
    with pytest.raises(InputError):
        gateway_key(profile, tmp_path / "bad.key", None)
    assert gateway_key(profile, None, tmp_path / "empty-state") is None


def test_listen_adds_the_tunnel_addresses(acme: Path) -> None:
    profile = load_profile(acme)
    assert listen_addresses(profile, []) == ["0.0.0.0", "::"]
    assert listen_addresses(profile, ["203.0.113.1"]) == [
        "203.0.113.1",
        "198.18.10.1",
        "2001:db8:10::1",
    ]


def test_the_firewall_adds_the_witness_and_nothing_else(acme: Path) -> None:
    """The difference between a ruleset with the witness and one without (witness_port = 0):
    the two timed sets and their updates, the witness's port from outside, and the witness's
    port on the gateway's tunnel addresses. No other line changes."""
    import difflib

    with_witness = load_profile(acme)
    text = (acme / "profile.toml").read_text()
    (acme / "profile.toml").write_text(
        text.replace("listen_port = 51820", "listen_port = 51820\nwitness_port = 0")
    )
    without = load_profile(acme)
    assert with_witness.gateway.witness_port == 51821 and without.gateway.witness_port == 0
    a = render_firewall(without, [], NOW).splitlines()
    b = render_firewall(with_witness, [], NOW).splitlines()
    removed = [line for line in difflib.ndiff(a, b) if line.startswith("- ")]
    added = [line[2:].strip() for line in difflib.ndiff(a, b) if line.startswith("+ ")]
    assert removed == []
    rules = [
        line
        for line in added
        if line and not line.startswith(("#", "set ", "type ", "flags ", "timeout ", "}"))
    ]
    assert rules == [
        f"udp dport 51820 update @wg_seen_v4 {{ ip saddr }} comment {SEEN}",
        f"udp dport 51820 update @wg_seen_v6 {{ ip6 saddr }} comment {SEEN}",
        'iifname != "wg0" udp dport 51821 accept comment "the witness"',
        'iifname != "wg0" meta l4proto { tcp, udp } th dport 5060 accept '
        'comment "SIP mirror of the witness (diagnose.sip_mirror)"',
        'ip daddr 198.18.10.1 udp dport 51821 accept comment "the witness"',
        'ip6 daddr 2001:db8:10::1 udp dport 51821 accept comment "the witness"',
    ]
    assert [line for line in added if line.startswith("set ")] == [
        "set wg_seen_v4 {",
        "set wg_seen_v6 {",
    ]


def test_forged_queries_cannot_make_the_witness_run_wg_for_each(acme: Path) -> None:
    from netsetup.responder.witness import Witness

    from .test_witness_answers import asker

    gw = generate_keypair()
    runs: list[str] = []

    def runner(argv: object) -> str | None:
        runs.append(" ".join(argv))  # type: ignore[call-overload]
        return f"{gw.private.reveal()}\t{gw.public}\t51820\toff\n" if "wg" in runs[-1] else None

    witness = Witness(SystemGateway(load_profile(acme), runner=runner), None)
    forged = asker(generate_keypair(), generate_keypair().public)
    started = time.monotonic()
    answers = [witness.handle(forged.query(), "198.51.100.2") for _ in range(200)]
    elapsed = time.monotonic() - started
    assert all(a is not None for a in answers)  # each one told the fingerprint
    reads = sum(r.startswith("wg ") for r in runs)
    assert reads <= 2 + elapsed / FRESH_S, (reads, elapsed)  # a read at most every FRESH_S
    assert reads < 100


def test_a_revoke_counts_at_once_not_after_the_files_cache(acme: Path) -> None:
    # the lab's CI run caught it: a peer expired (its file rewritten, the gateway synced) was
    # told "unknown" for up to two seconds, from peer files read just before the change
    gw, ana = generate_keypair(), generate_keypair()
    profile = load_profile(acme)
    profile.peers_dir.mkdir(exist_ok=True)
    record = profile.peers_dir / "ana.toml"
    record.write_text(peer_to_toml(peer("ana", ana.public)))

    def runner(argv: object) -> str | None:
        if list(argv)[:2] == ["wg", "show"]:  # type: ignore[call-overload]
            return f"{gw.private.reveal()}\t{gw.public}\t51820\toff\n"  # ana no longer there
        return None

    source = SystemGateway(profile, runner=runner)
    assert key_state(ana.public, source, NOW) == "unknown"  # files read, cached now
    fresh = profile.peers_dir / ".ana.toml.tmp"
    fresh.write_text(peer_to_toml(peer("ana", ana.public, "revoked")))
    fresh.replace(record)  # as netsetup writes: by rename, which changes the folder
    assert key_state(ana.public, source, NOW) == "revoked"
