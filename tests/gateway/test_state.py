"""The gateway's live state as the agent's `read` reports it, parsed from real output: `wg show
dump`, a wg-quick config netsetup rendered and `nft list table` listings, all captured from
wireguard-go and nft in a network namespace (tests/gateway/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netsetup.errors import RemoteError
from netsetup.gateway.state import (
    StateFormatError,
    normalise_listing,
    parse_conf,
    parse_dump,
    parse_read,
)

DATA = Path(__file__).parent / "data"
DUMP = (DATA / "wg-show-dump.txt").read_text()
CONF = (DATA / "wg0.conf").read_text()
FRESH = (DATA / "nft-list-table-fresh.txt").read_text()
TIMED_AND_COUNTER = (DATA / "nft-list-table-timed-and-counter.txt").read_text()

ANNA = "2XVD2QYb0X5DsWHkbkxsjJ+Hi72tXwFu1A2C9BGoSTk="
TEMP = "RMpX1+u9sKNnBIJreE2mxW+L2gvbgRpgG1Ty7dt+dgQ="
FIRST = DUMP.splitlines()[0] + "\n"  # the interface line
HAND = "EEcGCNNUSg9Qb/Zuazo28Qyxn1CnIV0aS4rvqrSUvGE="


def test_dump_interface_and_peers() -> None:
    dump = parse_dump(DUMP)
    assert dump.interface.listen_port == 51820
    assert dump.interface.fwmark is None
    assert dump.interface.public_key == "2jOUm3LUEyINBg/fOVA4+aJw5uIzcK/eMePfWU/5tGY="
    assert dump.interface.private_key is not None
    assert set(dump.peers) == {ANNA, TEMP, HAND}
    anna, hand = dump.peers[ANNA], dump.peers[HAND]
    assert anna.allowed_ips == ("198.18.10.2/32", "2001:db8:10::2/128")
    assert anna.preshared_key is not None and anna.keepalive is None and anna.endpoint is None
    assert hand.preshared_key is None
    assert hand.keepalive == 25
    assert hand.endpoint == "192.0.2.9:51820"
    assert hand.networks == {"198.18.10.99/32", "2001:db8:10::99/128"}


def test_no_key_of_the_dump_in_any_repr() -> None:
    dump = parse_dump(DUMP)
    shown = repr(dump)
    secrets = [line.split("\t")[1] for line in DUMP.splitlines()[1:]] + [DUMP.split("\t")[0]]
    secrets = [s for s in secrets if s != "(none)"]
    assert len(secrets) == 3  # the interface's private key and two preshared keys
    for secret in secrets:
        assert secret not in shown


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("a\tb\tc\n", "not 4"),
        (
            DUMP.splitlines()[0] + "\n" + "x\t(none)\t(none)\t(none)\t0\t0\t0\toff\n",
            "not a WireGuard",
        ),
        (DUMP.splitlines()[0] + "\n" + "only\tfive\tfields\there\tnow\n", "not 8"),
        ("(none)\t(none)\tport\toff\n", "not a number"),
    ],
)
def test_a_damaged_dump_is_refused_without_its_text(text: str, words: str) -> None:
    with pytest.raises(StateFormatError, match=words) as caught:
        parse_dump(text)
    private = DUMP.split("\t")[0]
    assert private not in str(caught.value)


def test_conf_file_peers_with_their_comments() -> None:
    conf = parse_conf(CONF)
    assert conf.addresses == ("198.18.10.1/24", "2001:db8:10::1/64")
    assert conf.listen_port == 51820
    assert conf.private_key is not None
    assert [p.peer.public_key for p in conf.peers] == [ANNA, TEMP]
    assert conf.peers[0].comments == ("anna (dedicated)",)
    assert conf.peers[1].comments[0].startswith("temp (agency, expires ")
    assert conf.peers[0].line == 10
    assert conf.peer(TEMP) is conf.peers[1]
    assert conf.peer(HAND) is None
    private = next(line for line in CONF.splitlines() if line.startswith("PrivateKey"))
    assert private.split("= ", 1)[1] not in repr(conf)


def test_conf_comment_styles_and_repeated_keys() -> None:
    text = (
        "[Interface]\nPrivateKey = " + "A" * 43 + "=\nListenPort = 51820\n"
        "Address = 10.8.0.1/24\nAddress = fd00::1/64\nPostUp = iptables -A x # masquerade\n"
        "\n### begin anna ###\n[Peer]\nPublicKey = " + ANNA + "\nAllowedIPs = 10.8.0.2/32\n"
        "AllowedIPs = fd00::2/128\n### end anna ###\n"
        "\n# Client: bob (5f1c)\n[Peer]\n# inside the section\nPublicKey = " + TEMP + "\n"
        "PersistentKeepalive = 0\nAllowedIPs = 10.8.0.3/32\n"
        "\n# stale comment, a blank line follows\n\n[Peer]\nPublicKey = " + HAND + "\n"
    )
    conf = parse_conf(text)
    assert conf.addresses == ("10.8.0.1/24", "fd00::1/64")
    assert dict(conf.other) == {"postup": "iptables -A x"}
    anna, bob, hand = conf.peers
    assert anna.comments == ("begin anna ###",)
    assert anna.peer.allowed_ips == ("10.8.0.2/32", "fd00::2/128")
    assert bob.comments == ("Client: bob (5f1c)",)
    assert bob.peer.keepalive is None  # 0 is off
    assert hand.comments == ()  # a blank line ends the block above a [Peer]
    assert hand.peer.allowed_ips == ()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[Peer]\nPublicKey = " + ANNA + "\n", "no \\[Interface\\]"),
        ("[Interface]\n[Interface]\n", "a second"),
        ("[Interface]\n[Wat]\n", "unknown section"),
        ("stray line\n[Interface]\n", "neither"),
        ("[Interface]\n[Peer]\nPublicKey = nope\n", "no valid PublicKey"),
    ],
)
def test_a_damaged_conf_file_is_refused(text: str, words: str) -> None:
    with pytest.raises(StateFormatError, match=words):
        parse_conf(text)


def test_normalised_listings_ignore_timed_elements_and_counters_only() -> None:
    """The second listing was taken after packets and `nft add element` filled the witness's
    timed set (51 addresses over many lines) and a hand-added rule with a counter counted; the
    only difference left is that rule, without its counter values."""
    assert " expires 9m" in TIMED_AND_COUNTER and "counter packets" in TIMED_AND_COUNTER
    fresh, later = normalise_listing(FRESH), normalise_listing(TIMED_AND_COUNTER)
    assert " expires " not in later and "counter packets" not in later
    assert "jump expires_1796407931" in later  # a chain named expires_...: not a timed element
    assert later != fresh
    hand_rule = '\t\tcounter comment "hand"\n'
    assert hand_rule in later
    assert later.replace(hand_rule, "") == fresh
    # the peers' maps (not timed) keep their elements: a changed map is a changed ruleset
    assert "198.18.10.2 : jump mode_dedicated" in later
    assert normalise_listing(FRESH) == normalise_listing(normalise_listing(FRESH))


def test_a_static_set_keeps_its_elements() -> None:
    listing = (
        "table inet t {\n\tset allowed {\n\t\ttype ipv4_addr\n"
        "\t\telements = { 192.0.2.1, 192.0.2.2 }\n\t}\n}\n"
    )
    assert normalise_listing(listing) == listing
    changed = listing.replace("192.0.2.2", "192.0.2.3")
    assert normalise_listing(changed) != normalise_listing(listing)


def _answer(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "ok": True,
        "interface": "wg0",
        "up": True,
        "dump": DUMP,
        "conf": CONF,
        "ruleset_file": None,
        "listing": FRESH,
        "tables": ["inet netsetup_wg0", "inet filter"],
        "applied": None,
        "pending": None,
        "forwarding": {"ipv4": True, "ipv6": True},
    }
    answer.update(overrides)
    return answer


def test_read_answer() -> None:
    live = parse_read(_answer(), where="gateway")
    assert live.up and live.interface == "wg0"
    assert set(live.peers) == {ANNA, TEMP, HAND}
    assert set(live.conf_peers) == {ANNA, TEMP}
    assert live.tables == ("inet netsetup_wg0", "inet filter")
    assert live.normalised_listing == normalise_listing(FRESH)
    assert live.applied is None and live.pending is None


def test_read_answer_of_a_down_interface() -> None:
    live = parse_read(_answer(up=False, dump=None, listing=None, conf=None), where="gateway")
    assert live.peers == {} and live.conf_peers == {} and live.interface_facts is None
    assert live.normalised_listing is None


def test_the_agent_refusing_is_a_remote_error() -> None:
    answer = {"ok": False, "step": "read", "error": "nft: permission denied", "restored": False}
    with pytest.raises(RemoteError, match="permission denied") as caught:
        parse_read(answer, where="root@192.0.2.1:22")
    assert caught.value.where == "root@192.0.2.1:22"


def test_a_malformed_answer_is_a_remote_error_without_the_key() -> None:
    broken = DUMP.replace("\t51820\t", "\tport\t", 1)
    with pytest.raises(RemoteError, match="wg show dump") as caught:
        parse_read(_answer(dump=broken), where="gateway")
    assert DUMP.split("\t")[0] not in str(caught.value)
    with pytest.raises(RemoteError, match="applied"):
        parse_read(_answer(applied={"at": "x"}), where="gateway")
