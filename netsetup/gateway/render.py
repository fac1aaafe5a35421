"""The gateway's WireGuard config: its interface and every active peer with its preshared key."""

from __future__ import annotations

from datetime import datetime

from netsetup import wgconf
from netsetup.errors import InputError
from netsetup.keys import SecretKey
from netsetup.profile.model import Peer, Profile
from netsetup.profile.values import PeerName, ProfileId, format_time
from netsetup.provision.client_config import peer_addresses
from netsetup.state import StateDir


def gateway_addresses(profile: Profile) -> list[str]:
    network = profile.network
    out = [f"{network.gateway_address_v4}/{network.tunnel_v4.prefixlen}"]
    if network.tunnel_v6 is not None:
        out.append(f"{network.gateway_address_v6}/{network.tunnel_v6.prefixlen}")
    return out


def render_gateway_config(
    profile: Profile,
    peers: list[Peer],
    state: StateDir,
    now: datetime,
    *,
    private_key: SecretKey | None = None,
    reveal: bool = True,
) -> str:
    """wg-quick config for the gateway. Expired and revoked peers are left out. With
    reveal=False the secrets are replaced by a marker (what `render` prints to a terminal)."""
    interface: list[tuple[str, wgconf.Value]] = [
        ("Address", wgconf.join(gateway_addresses(profile))),
        ("ListenPort", profile.gateway.listen_port),
    ]
    if private_key is not None:
        interface.append(("PrivateKey", private_key))
    active = [p for p in peers if p.is_active(now)]
    sections: list[tuple[list[str], list[tuple[str, wgconf.Value]]]] = []
    for peer in active:
        pid, name = ProfileId(profile.id), PeerName(peer.name)  # what the state folder takes
        psk = state.load_psk(pid, name, peer.public_key)
        if psk is None:
            raise InputError(
                f"no preshared key for peer {peer.name!r} in the state directory "
                f"(provisioned by another admin? run `netsetup rotate {profile.id} {peer.name}`)",
                where=str(state.psk_path(pid, name, peer.public_key)),
            )
        expiry = f", expires {format_time(peer.expires)}" if peer.expires else ""
        sections.append(
            (
                [f"{peer.name} ({peer.mode}{expiry})"],
                [
                    ("PublicKey", peer.public_key),
                    ("PresharedKey", psk),
                    ("AllowedIPs", wgconf.join(peer_addresses(peer))),
                ],
            )
        )
    left_out = len(peers) - len(active)
    header = [
        f"netsetup: gateway {profile.gateway.interface} of {profile.id}",
        f"rendered {format_time(now)}",
        f"{len(active)} active peer(s); {left_out} revoked or expired left out",
    ]
    if private_key is None:
        header.append("No PrivateKey: set it on the gateway (wg set <iface> private-key FILE)")
    return wgconf.render_config(interface, sections, header=header, reveal=reveal)
