"""`render --firewall` and the office responder: every mode reaches the responder's UDP and TCP
port on its host and nothing more there; 5060 on the gateway only with `[diagnose] sip_mirror`."""

from __future__ import annotations

import difflib
from pathlib import Path

from netsetup.gateway.firewall import render_firewall
from netsetup.profile.store import load_profile

from .support import NOW

RESPONDER = "ct original ip daddr 192.0.2.50/32"


def _rewrite(acme: Path, old: str, new: str) -> None:
    toml = acme / "profile.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))


def _chains(ruleset: str) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    current = None
    for line in ruleset.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            current = stripped.split()[1]
            chains[current] = []
        elif stripped == "}":
            current = None
        elif current is not None and stripped and not stripped.startswith("#"):
            chains[current].append(stripped)
    return chains


def _added(before: str, after: str) -> list[str]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert [line for line in diff if line.startswith("- ")] == []
    return [line[2:].strip() for line in diff if line.startswith("+ ")]


def test_every_mode_reaches_the_responder_port_udp_and_tcp_and_nothing_else(acme: Path) -> None:
    with_responder = render_firewall(load_profile(acme), [], NOW)
    _rewrite(acme, 'responder = "192.0.2.50:4789"\n', "")
    without = render_firewall(load_profile(acme), [], NOW)
    added = _added(without, with_responder)
    per_mode = [
        f"meta l4proto udp {RESPONDER} ct original proto-dst 4789 accept comment "
        '"office responder"',
        f"meta l4proto icmp {RESPONDER} ct protocol udp ct original proto-dst 4789 accept "
        'comment "office responder (ICMP errors)"',
        f"meta l4proto tcp {RESPONDER} ct original proto-dst 4789 accept comment "
        '"office responder"',
        f"meta l4proto icmp {RESPONDER} ct protocol tcp ct original proto-dst 4789 accept "
        'comment "office responder (ICMP errors)"',
    ]
    assert added == per_mode * 2  # once in each mode's chain, nothing anywhere else
    chains = _chains(with_responder)
    for mode in ("mode_dedicated", "mode_agency"):
        assert all(rule in chains[mode] for rule in per_mode)
    # the agency chain names the responder's host only for that port
    agency = [r for r in chains["mode_agency"] if "192.0.2.50" in r]
    assert agency == per_mode
    assert all("4790" not in rule for rule in chains["mode_agency"])


def test_the_rtp_tests_use_the_voip_path_every_mode_has(acme: Path) -> None:
    chains = _chains(render_firewall(load_profile(acme), [], NOW))
    rtp_out = "ct original ip daddr 192.0.2.40/32 ct original proto-dst 10000-20000 accept"
    rtp_in = "ct original ip saddr 192.0.2.40/32 ct original proto-dst 10000-20000 accept"
    for mode in ("mode_dedicated", "mode_agency"):
        assert any(rtp_out in rule for rule in chains[mode])  # RTP-OPEN: to the media ports
    assert any(rtp_in in rule for rule in chains["calls"])  # RTP-CALL: a call's audio


def test_sip_5060_opens_on_the_gateway_only_with_the_sip_mirror(acme: Path) -> None:
    mirror = (
        'iifname != "wg0" meta l4proto { tcp, udp } th dport 5060 accept '
        'comment "SIP mirror of the witness (diagnose.sip_mirror)"'
    )
    on = render_firewall(load_profile(acme), [], NOW)
    assert load_profile(acme).diagnose.sip_mirror
    _rewrite(acme, "sip_mirror = true\n", "")
    off = render_firewall(load_profile(acme), [], NOW)
    assert _added(off, on) == [mirror]
    assert "5060" not in "\n".join(_chains(off)["input"])
    assert mirror in _chains(on)["input"]
