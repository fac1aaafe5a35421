"""Issue 4, what must hold 3: revoked and expired peers can't handshake after a re-render."""

from __future__ import annotations

import pytest

from netsetup.lab import Lab, probe

pytestmark = pytest.mark.lab

# wireguard-go retries a handshake every 5 s (REKEY_TIMEOUT): 7 s covers the first retry
NO_HANDSHAKE_WINDOW = 7.0


@pytest.mark.parametrize(("how", "mode"), [("revoke", "dedicated"), ("expire", "agency")])
def test_peer_cannot_handshake_after_rerender(lab: Lab, how: str, mode: str) -> None:
    name = f"gone-{how}"
    config = lab.provision(name, mode, expires="7d")
    # the assistant keeps their copy of the config whatever the admin does
    kept = lab.run_dir / f"kept-{name}" / config.name
    kept.parent.mkdir()
    kept.write_text(config.read_text())
    kept.chmod(0o600)
    lab.tunnel_up(kept)
    assert lab.wait_handshake(timeout=15) is not None, "the peer works before"
    lab.tunnel_down()

    if how == "revoke":
        lab.revoke(name)  # netsetup revoke, render, wg syncconf, firewall reload
    else:
        lab.expire(name)  # expiry now in the past; render and the firewall leave it out
    listed = lab.netsetup("list", str(lab.profile_dir), "--json").stdout
    assert name in listed and ("revoked" if how == "revoke" else "expired") in listed
    from netsetup.profile.store import load_peer

    public_key = load_peer(lab.profile(), name).public_key
    on_gateway = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "peers"]).stdout
    assert public_key not in on_gateway.split()
    assert name not in lab.gateway_config.read_text()
    firewall = (lab.run_dir / "gateway" / "firewall.nft").read_text()
    assert f"# {name} " not in firewall

    lab.tunnel_up(kept)  # a fresh interface: nothing left from the earlier session
    assert lab.latest_handshake() == 0
    assert lab.wait_handshake(timeout=NO_HANDSHAKE_WINDOW) is None, f"{how}d peer handshook"
    gateway = str(lab.profile().network.gateway_address_v4)
    assert probe.ping(lab.ns("home"), gateway, count=2, wait=1).received == 0
    lab.tunnel_down()


def test_other_peers_keep_working_after_a_revoke(lab: Lab) -> None:
    keep = lab.provision("stays", "dedicated")
    lab.tunnel_up(keep)
    assert lab.wait_handshake(timeout=15) is not None
    lab.provision("leaves", "dedicated")
    lab.revoke("leaves")
    gateway = str(lab.profile().network.gateway_address_v4)
    assert probe.ping(lab.ns("home"), gateway, count=2).received == 2
    lab.tunnel_down()
