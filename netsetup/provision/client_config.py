"""The wg-quick config an assistant receives, with split-tunnel AllowedIPs for their mode."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from netsetup import wgconf
from netsetup.keys import SecretKey
from netsetup.profile.model import Peer, Profile
from netsetup.profile.values import IPNetwork


def allowed_networks(profile: Profile, mode: str) -> list[IPNetwork]:
    """What the assistant's tunnel routes: the mode's destinations, the gateway's tunnel
    address, the DNS servers and the VoIP path. Overlaps are merged, v4 before v6."""
    networks: list[IPNetwork] = [rule.network for rule in profile.access_for(mode)]
    networks.append(ipaddress.ip_network(profile.network.gateway_address_v4))
    if profile.network.gateway_address_v6 is not None:
        networks.append(ipaddress.ip_network(profile.network.gateway_address_v6))
    networks.extend(ipaddress.ip_network(server) for server in profile.dns.servers)
    if profile.voip is not None:
        networks.append(ipaddress.ip_network(profile.voip.sip_server))
        networks.extend(profile.voip.media_networks)
    return collapse(networks)


def collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def peer_addresses(peer: Peer) -> list[str]:
    out = [f"{peer.address_v4}/32"]
    if peer.address_v6 is not None:
        out.append(f"{peer.address_v6}/128")
    return out


def render_client_config(
    profile: Profile, peer: Peer, private_key: SecretKey | None, psk: SecretKey
) -> str:
    """The assistant's wg-quick config. Without a private key (the assistant keeps their own),
    the file says where to add it."""
    interface: list[tuple[str, wgconf.Value]] = []
    header = [
        f"netsetup: {peer.name} on {profile.id} ({peer.mode})",
        f"Bring it up with: wg-quick up ./{profile.network.client_interface}.conf",
    ]
    if private_key is not None:
        interface.append(("PrivateKey", private_key))
    else:
        header.append("Add your own PrivateKey line under [Interface]: netsetup never saw it.")
    interface.append(("Address", wgconf.join(peer_addresses(peer))))
    dns = [str(s) for s in profile.dns.servers] + list(profile.dns.search)
    if dns:
        interface.append(("DNS", wgconf.join(dns)))
    interface.append(("MTU", profile.network.mtu))
    section: list[tuple[str, wgconf.Value]] = [
        ("PublicKey", profile.gateway.public_key),
        ("PresharedKey", psk),
        ("Endpoint", profile.gateway.endpoint),
        ("AllowedIPs", wgconf.join(allowed_networks(profile, peer.mode))),
    ]
    if profile.network.keepalive:
        section.append(("PersistentKeepalive", profile.network.keepalive))
    return wgconf.render_config(interface, [((), section)], header=header)
