"""Issue 10, must-hold 5: two gateways in one profile. `apply` updates both; when one fails, only
that one rolls back, and the exit code and the report say which.

The lab has one gateway namespace, and one netsetup tunnel per gateway (each firewall table
drops the forwarding that is not its own), so the second site is a gateway of its own: a lab
namespace `<prefix>-gw2` linked to the office, with its own sshd in a mount namespace of its own,
its own WireGuard interface, port, key and tunnel subnet (`apply_lab.add_second_gateway`; it goes
with the lab). The profile is rewritten in the `[[gateway]]` form: "hq" (the lab's gateway) and
"branch". The failing site has a `wg` wrapper in ITS /usr/local/bin that fails `wg syncconf`
once after running it, so there is something to undo there.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from netsetup.fsutil import atomic_write
from netsetup.lab import Lab, tomlwrite

from . import apply_lab
from .apply_lab import WG_SYNCCONF, SecondGateway, apply, explain, peer_keys, plan, snapshot

pytestmark = pytest.mark.lab

BRANCH_TUNNEL = "198.18.20.0/24"  # beside acme-dental's 198.18.10.0/24
BRANCH_PORT = 51830


def _two_sites(lab: Lab, branch: SecondGateway) -> None:
    """The lab's profile copy with `[[gateway]]` hq (the lab gateway, as it was) and branch."""
    path = lab.profile_dir / "profile.toml"
    data = tomllib.loads(path.read_text())
    hq = {"name": "hq", **data["gateway"]}
    data["gateway"] = [
        hq,
        {
            "name": "branch",
            "endpoint": f"vpn-branch.acme-dental.example:{BRANCH_PORT}",
            "public_key": branch.public_key,
            "interface": branch.interface,
            "listen_port": BRANCH_PORT,
            "tunnel_v4": BRANCH_TUNNEL,
            "ssh": f"root@{branch.address}:22",
            "host_key": branch.host_key,
            "admin_from": [f"{branch.office_address}/32"],
        },
    ]
    atomic_write(path, tomlwrite.dumps(data), mode=0o644)


@pytest.fixture(scope="module")
def sites(lab: Lab) -> Iterator[tuple[Lab, SecondGateway]]:
    apply_lab.install_agent(lab)
    branch = apply_lab.add_second_gateway(lab, tunnel_v4=BRANCH_TUNNEL, listen_port=BRANCH_PORT)
    apply_lab.install_agent(lab, service=branch.sshd)
    _two_sites(lab, branch)
    assert [g.name for g in lab.profile().gateways] == ["hq", "branch"]
    yield lab, branch


def _apply_json(lab: Lab) -> tuple[int, dict[str, Any]]:
    result = apply(lab, "--json")
    try:
        document = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"apply --json printed no JSON: {explain(result)}")
    return result.returncode, document


def _by_gateway(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["gateway"]: g for g in document["gateways"]}


def _keys(peers: list[Any]) -> set[str]:
    return {p.public_key for p in peers}


def test_apply_updates_both_gateways(sites: tuple[Lab, SecondGateway]) -> None:
    lab, branch = sites
    hq_peers = _keys(apply_lab.add_peers(lab, 3, stem="hq"))
    branch_peers = _keys(apply_lab.add_peers(lab, 3, stem="branch", site="branch"))

    code, document = _apply_json(lab)
    assert code == 0, document
    assert document["failed"] == []
    results = _by_gateway(document)
    assert results["hq"]["status"] == "applied"
    assert results["branch"]["status"] == "applied"

    on_hq = peer_keys(lab.ns("gateway"), lab.gateway_interface)
    on_branch = peer_keys(branch.namespace, branch.interface)
    assert hq_peers <= on_hq and not branch_peers & on_hq
    assert branch_peers <= on_branch and not hq_peers & on_branch
    in_sync = plan(lab)
    assert in_sync.returncode == 0, explain(in_sync)


def test_one_failing_gateway_rolls_back_only_itself(sites: tuple[Lab, SecondGateway]) -> None:
    lab, branch = sites
    hq_peer = apply_lab.add_peers(lab, 1, stem="hq")[0].public_key
    branch_peer = apply_lab.add_peers(lab, 1, stem="branch", site="branch")[0].public_key
    where: dict[str, Any] = {
        "namespace": branch.namespace,
        "interface": branch.interface,
        "root": branch.root,
    }
    before = snapshot(lab, **where)

    with apply_lab.failing_program(lab, WG_SYNCCONF, service=branch.sshd) as mark:
        code, document = _apply_json(lab)
        fired = apply_lab.fault_fired(lab, mark, service=branch.sshd)
    assert fired, "the failing wg on branch was never called: the test proved nothing"

    assert code == 3, document
    assert document["failed"] == ["branch"]
    results = _by_gateway(document)
    assert results["branch"]["status"] == "failed"
    assert results["branch"]["restored"] is True
    assert results["hq"]["status"] == "applied"
    assert hq_peer in peer_keys(lab.ns("gateway"), lab.gateway_interface)
    assert branch_peer not in peer_keys(branch.namespace, branch.interface)
    assert before.differences(apply_lab.settled_snapshot(lab, **where)) == []

    # the report a person reads says it too: the same fault once more, in text
    with apply_lab.failing_program(lab, WG_SYNCCONF, service=branch.sshd):
        text = apply(lab)
    assert text.returncode == 3, explain(text)
    lines = text.stdout.lower().splitlines()
    assert [line for line in lines if "branch" in line and "failed" in line], text.stdout
    assert "restored" in text.stdout.lower()
    assert not [line for line in lines if "hq" in line and "failed" in line], text.stdout
    assert before.differences(apply_lab.settled_snapshot(lab, **where)) == []

    pending = plan(lab)
    assert pending.returncode == 1, explain(pending)  # branch still has its new peer pending
    assert "branch" in pending.stdout
    again = apply(lab)  # the wrapper is gone: branch takes it now
    assert again.returncode == 0, explain(again)
    assert branch_peer in peer_keys(branch.namespace, branch.interface)
    in_sync = plan(lab)
    assert in_sync.returncode == 0, explain(in_sync)
