"""Issue 10, must-hold 3: a peer added by hand on the gateway is drift; `apply` refuses until
`--adopt` or `--prune`, and each does what it says.

In the lab, against the gateway namespace's real sshd, wg and nft. The hand peers are added the
way a colleague with a shell on the gateway would: `wg set` on the live interface and a [Peer]
section appended to /etc/wireguard/<iface>.conf, each with a preshared key that exists only on
the gateway. The tests run in order on one lab (each builds on the one before).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netsetup.keys import fingerprint
from netsetup.lab import Lab
from netsetup.profile.store import load_peers

from . import apply_lab
from .apply_lab import add_hand_peer, apply, explain, plan, snapshot, wg_state

pytestmark = pytest.mark.lab

FIRST_HAND_ADDRESS = "198.18.10.200"
SECOND_HAND_ADDRESS = "198.18.10.201"


@pytest.fixture(scope="module")
def applied(lab: Lab) -> Iterator[Lab]:
    """The lab gateway with the agent and two provisioned peers put there by `apply`."""
    apply_lab.install_agent(lab)
    apply_lab.add_peers(lab, 2, stem="staff")
    result = apply(lab)
    assert result.returncode == 0, explain(result)
    yield lab


@pytest.fixture(scope="module")
def hand_peers() -> dict[str, str]:
    """The hand peers' public keys, by test step (the tests run in order)."""
    return {}


def _line_of(lab: Lab, public_key: str) -> str:
    """The hand peer's line of the gateway's state (psk by digest, allowed IPs, keepalive)."""
    state = wg_state(lab.ns("gateway"), lab.gateway_interface)
    lines = [line for line in state if line.startswith(public_key)]
    return lines[0] if lines else ""


def test_a_hand_peer_is_drift_in_plan_and_apply_refuses(
    applied: Lab, hand_peers: dict[str, str]
) -> None:
    lab = applied
    hand = hand_peers["adopt"] = add_hand_peer(lab, FIRST_HAND_ADDRESS)

    shown = plan(lab)
    assert shown.returncode == 1, explain(shown)
    assert fingerprint(hand) in shown.stdout  # named by fingerprint, never by key
    assert hand not in shown.stdout + shown.stderr
    assert "drift" in shown.stdout.lower()

    before, audit = snapshot(lab), apply_lab.gateway_audit_lines(lab)
    refused = apply(lab)
    assert refused.returncode == 1, explain(refused)
    assert fingerprint(hand) in refused.stdout + refused.stderr
    assert before.differences(snapshot(lab)) == []
    assert apply_lab.gateway_audit_lines(lab) == audit  # nothing was committed


def test_adopt_takes_the_hand_peer_into_the_profile(
    applied: Lab, hand_peers: dict[str, str]
) -> None:
    lab = applied
    if "adopt" not in hand_peers:
        pytest.fail("the hand peer is added by the test before this one")
    hand = hand_peers["adopt"]
    on_gateway = _line_of(lab, hand)

    adopted = apply(lab, "--adopt", "--mode", "dedicated")
    assert adopted.returncode == 0, explain(adopted)

    peers = [p for p in load_peers(lab.profile()) if p.public_key == hand]
    assert len(peers) == 1, "no peer file holds the adopted key"
    assert peers[0].mode == "dedicated"
    assert str(peers[0].address_v4) == FIRST_HAND_ADDRESS
    assert _line_of(lab, hand) == on_gateway  # same key, same preshared key, same address
    in_sync = plan(lab)
    assert in_sync.returncode == 0, explain(in_sync)


def test_prune_removes_a_hand_peer_and_lists_it(applied: Lab) -> None:
    lab = applied
    kept = {p.public_key for p in load_peers(lab.profile())}
    hand = add_hand_peer(lab, SECOND_HAND_ADDRESS)

    pruned = apply(lab, "--prune")
    assert pruned.returncode == 0, explain(pruned)
    assert fingerprint(hand) in pruned.stdout + pruned.stderr  # what goes is listed

    live = apply_lab.peer_keys(lab.ns("gateway"), lab.gateway_interface)
    assert hand not in live
    assert kept <= live  # the profile's peers (the adopted one too) stay
    assert hand not in lab.gateway_config.read_text()
    assert not [p for p in load_peers(lab.profile()) if p.public_key == hand]
    in_sync = plan(lab)
    assert in_sync.returncode == 0, explain(in_sync)
