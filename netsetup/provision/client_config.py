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
    address, the DNS servers, the office responder and the VoIP path. Overlaps are merged, v4
    before v6."""
    networks: list[IPNetwork] = [rule.network for rule in profile.access_for(mode)]
    networks.append(ipaddress.ip_network(profile.network.gateway_address_v4))
    if profile.network.gateway_address_v6 is not None:
        networks.append(ipaddress.ip_network(profile.network.gateway_address_v6))
    networks.extend(ipaddress.ip_network(server) for server in profile.dns.servers)
    responder = profile.diagnose.responder
    if responder is not None and not isinstance(responder[0], str):
        networks.append(ipaddress.ip_network(responder[0]))  # every mode measures against it
    if profile.voip is not None:
        networks.append(ipaddress.ip_network(profile.voip.sip_server))
        networks.extend(profile.voip.media_networks)
    return collapse(networks)


def collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def diagnose_lines(profile: Profile, responder_key: SecretKey | None = None) -> list[str]:
    """The `netsetup-diagnose:` comment lines (without the leading "# ") for a client config;
    `responder_key`, the peer's key for the office responder, goes on the responder line."""
    from dataclasses import replace

    from netsetup.diagnose.clientconfig import DiagnoseInfo, render_info_lines

    info = replace(DiagnoseInfo.from_profile(profile), responder_key=responder_key)
    return [line[2:] for line in render_info_lines(info)]


def responder_key(token: SecretKey, public_key: str) -> SecretKey:
    """The peer's key for the office responder (base64, key-shaped: scrubbed like keys)."""
    import base64

    from netsetup.responder.office_wire import peer_key

    raw = peer_key(base64.b64decode(token.reveal()), base64.b64decode(public_key))
    return SecretKey(base64.b64encode(raw).decode("ascii"))


def peer_addresses(peer: Peer) -> list[str]:
    out = [f"{peer.address_v4}/32"]
    if peer.address_v6 is not None:
        out.append(f"{peer.address_v6}/128")
    return out


def render_client_config(
    profile: Profile,
    peer: Peer,
    private_key: SecretKey | None,
    psk: SecretKey,
    responder: SecretKey | None = None,
) -> str:
    """The assistant's wg-quick config. Without a private key (the assistant keeps their own),
    the file says where to add it. `responder` is the peer's office responder key (a comment
    line: the QR code, which leaves comments out, never carries it)."""
    interface: list[tuple[str, wgconf.Value]] = []
    header = [
        f"netsetup: {peer.name} on {profile.id} ({peer.mode})",
        f"Bring it up with: wg-quick up ./{profile.network.client_interface}.conf",
    ]
    if private_key is not None:
        interface.append(("PrivateKey", private_key))
    else:
        header.append("Add your own PrivateKey line under [Interface]: netsetup never saw it.")
    header.append("What `netsetup diagnose --config` reads (WireGuard ignores comments):")
    header.extend(diagnose_lines(profile, responder))
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


# -- QR codes for the WireGuard mobile app --------------------------------------------------------
QR_KINDS = ("png", "svg")
TERMINAL_BORDER = 1  # the quiet zone the terminal's own background extends; 4 would not fit 80


def qr_payload(config_text: str) -> str:
    """What a QR code carries: the config without its comment and blank lines.

    wg-quick and the mobile app ignore comments, and every line left out makes the code smaller:
    a dedicated config with IPv6 then fits an 80-column terminal."""
    lines = [line for line in config_text.splitlines() if line.strip() and not _comment(line)]
    return "\n".join(lines) + "\n"


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def qr_images(config_text: str) -> list[tuple[str, bytes]]:
    """(kind, image) for each of QR_KINDS: the images written beside the config (0600)."""
    import io

    import segno

    code = segno.make(qr_payload(config_text), error="l", micro=False)
    images: list[tuple[str, bytes]] = []
    for kind in QR_KINDS:
        buffer = io.BytesIO()
        code.save(buffer, kind=kind, scale=4, border=4)
        images.append((kind, buffer.getvalue()))
    return images


def terminal_qr(config_text: str) -> str:
    """The QR code as text for a terminal, two modules per character cell."""
    import io

    import segno

    buffer = io.StringIO()
    code = segno.make(qr_payload(config_text), error="l", micro=False)
    code.terminal(out=buffer, compact=True, border=TERMINAL_BORDER)
    return buffer.getvalue()
