"""Issue 10, must-hold 2: every fault leaves the gateway byte-identical to before, and exit 3.

In the lab, against the gateway namespace's real sshd, wg (wireguard-go) and nft. "Identical"
is what its sshd sees (`lab.gateway_root`): /etc/wireguard, /etc/netsetup and applied.json by
SHA-256, the live `wg show dump` apart from counters, handshakes and endpoints, and `nft list
ruleset` apart from the elements of timed sets and counter values. Each fault is real:

- an unknown host key: the profile pins another real key (the office sshd's): refused before
  authentication, so the gateway's sshd accepts no login and its agent writes no audit line;
- `wg syncconf` and `nft -f` failing: wrappers in the gateway's /usr/local/bin (which the agent's
  fixed PATH searches first) run the real program once, so there is something to undo, then fail;
- the SSH connection cut in the middle of the upload: nftables in the gateway namespace resets
  the admin's SSH connection once its client sent more than the read phase plus 60 kB (the upload
  of ~240 peers' files is several times that), both ends;
- a ruleset that cuts the admin's own SSH path (`admin_from` without the office LAN): the
  confirmation over a fresh connection cannot be made, and the gateway reverts itself.

Each test adds one peer first, so that `apply` has something to change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from netsetup.lab import Lab

from . import apply_lab
from .apply_lab import (
    NFT_LOAD,
    WG_SYNCCONF,
    apply,
    explain,
    failing_program,
    fault_fired,
    plan,
    settled_snapshot,
    snapshot,
)

pytestmark = pytest.mark.lab

# enough peers that the upload (config, ruleset, profile files) is far larger than the cut's
# margin; the tunnel /24 of acme-dental holds 253
PEERS = 240
CUT_MARGIN = 60_000  # bytes the client may send after the read phase before the cut
CONFIRM_WITHIN = 10  # seconds: the gateway's revert timer in the lock-out test


@pytest.fixture(scope="module")
def loaded(lab: Lab) -> Iterator[Lab]:
    """The lab gateway with the agent and PEERS peers put there by `apply`."""
    apply_lab.install_agent(lab)
    apply_lab.add_peers(lab, PEERS)
    result = apply(lab)
    assert result.returncode == 0, explain(result)
    yield lab


def _one_more_peer(lab: Lab, stem: str) -> str:
    return apply_lab.add_peers(lab, 1, stem=stem)[0].public_key


def _assert_untouched(lab: Lab, before: apply_lab.GatewaySnapshot, new_key: str) -> None:
    after = settled_snapshot(lab)
    assert before.differences(after) == []
    assert new_key not in apply_lab.peer_keys(lab.ns("gateway"), lab.gateway_interface)


def test_unknown_host_key_is_refused_before_anything_is_sent(loaded: Lab) -> None:
    lab = loaded
    new_key = _one_more_peer(lab, "hostkey")
    pinned = apply_lab.gateway_table(lab)["host_key"]
    other = apply_lab.other_host_key(lab)
    assert other != pinned
    before, audit = snapshot(lab), apply_lab.gateway_audit_lines(lab)
    logins = apply_lab.sshd_accepted_logins(lab)
    assert logins > 0  # the log shows logins (the fixture's apply made some): a count that can move
    apply_lab.set_gateway_keys(lab, host_key=other)
    try:
        result = apply(lab)
    finally:
        apply_lab.set_gateway_keys(lab, host_key=pinned)
    assert result.returncode == 3, explain(result)
    said = result.stdout + result.stderr
    assert pinned in said and other in said  # both fingerprints, side by side
    assert apply_lab.sshd_accepted_logins(lab) == logins  # no authentication happened
    assert apply_lab.gateway_audit_lines(lab) == audit
    _assert_untouched(lab, before, new_key)


@pytest.mark.parametrize("fault", [WG_SYNCCONF, NFT_LOAD], ids=["wg-syncconf", "nft-load"])
def test_failing_program_on_the_gateway_is_undone(loaded: Lab, fault: tuple[str, str, str]) -> None:
    lab = loaded
    new_key = _one_more_peer(lab, f"fails-{fault[0]}")
    before = snapshot(lab)
    with failing_program(lab, fault) as mark:
        result = apply(lab)
        fired = fault_fired(lab, mark)
    assert fired, f"the failing {fault[0]} was never called: the test proved nothing"
    assert result.returncode == 3, explain(result)
    assert "restored" in result.stdout
    _assert_untouched(lab, before, new_key)
    assert apply_lab.stage_files(lab) == []  # no staged secret left behind


def test_ssh_cut_in_the_middle_of_the_upload(loaded: Lab) -> None:
    lab = loaded
    new_key = _one_more_peer(lab, "cut")
    read_phase = apply_lab.ssh_bytes_of(lab, lambda: plan(lab))
    before, audit = snapshot(lab), apply_lab.gateway_audit_lines(lab)
    with apply_lab.ssh_cut_after(lab, read_phase + CUT_MARGIN) as rejected:
        result = apply(lab)
        cut = rejected()
    assert cut > 0, "the connection was never cut: the upload was smaller than the margin"
    assert result.returncode == 3, explain(result)
    assert apply_lab.gateway_audit_lines(lab) == audit  # the agent never got to commit
    _assert_untouched(lab, before, new_key)
    assert apply_lab.stage_files(lab) == [], "a staged file (with secrets) was left behind"


def test_ruleset_that_locks_the_admin_out_is_reverted_by_the_gateway(loaded: Lab) -> None:
    lab = loaded
    new_key = _one_more_peer(lab, "lockout")
    admin_from = apply_lab.gateway_table(lab)["admin_from"]
    before, audit = snapshot(lab), apply_lab.gateway_audit_lines(lab)
    # a documentation network that is not the office LAN, where the admin runs apply
    apply_lab.set_gateway_keys(lab, admin_from=["203.0.113.128/25"])
    try:
        result = apply(lab, "--confirm-within", str(CONFIRM_WITHIN))
    finally:
        apply_lab.set_gateway_keys(lab, admin_from=admin_from)
    assert result.returncode == 3, explain(result)
    _assert_untouched(lab, before, new_key)
    new_lines = apply_lab.gateway_audit_lines(lab)[len(audit) :]
    assert any(re.search(r"revert", line) for line in new_lines), new_lines
    again = plan(lab)  # SSH from the office works again
    assert again.returncode == 1, explain(again)  # the peers of this module are still pending
