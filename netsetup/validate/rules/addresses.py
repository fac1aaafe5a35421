"""NS103-NS105, NS112: tunnel addresses of the peers, which are their AllowedIPs on the gateway."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from netsetup.profile.model import Network, Peer, Profile
from netsetup.profile.values import IPAddress, tunnel_address_problem
from netsetup.validate.context import (
    Context,
    PeerEntry,
    ProfileEntry,
    gateway_addresses,
    quarantine_end,
)
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, profile_check

QUARANTINED_ADDRESS = define(
    "NS103",
    "duplicate-tunnel-address",
    Severity.ERROR,
    "A peer uses the tunnel address of a revoked peer whose quarantine "
    "(network.quarantine_days after revocation) has not ended. Two active peers with one address "
    "are NS105.",
    "Addresses stay quarantined so that logs, firewall states and the audit trail of the revoked "
    "assistant are never attributed to the next one; reusing one early mixes two people's traffic "
    "under one address.",
    """
    # peers/old.toml  (revoked = 2026-05-20, quarantine_days = 30)
    address_v4 = "198.18.10.5"
    # peers/new.toml  (created 2026-05-25)
    address_v4 = "198.18.10.5"
    """,
    """
    # peers/new.toml
    address_v4 = "198.18.10.6"
    """,
)
OUTSIDE_TUNNEL = define(
    "NS104",
    "address-outside-tunnel",
    Severity.ERROR,
    "A peer's tunnel address is outside the tunnel subnet of its gateway (`[network]`'s, or with "
    "several `[[gateway]]` sites its site's), or is the subnet's network, broadcast or gateway "
    "address.",
    "The gateway does not route an address outside its subnet to the tunnel, and the network, "
    "broadcast and gateway addresses are taken: the assistant's traffic goes nowhere.",
    """
    # profile.toml: tunnel_v4 = "198.18.10.0/24"
    address_v4 = "198.18.11.5"
    """,
    """
    address_v4 = "198.18.10.5"
    """,
)
IDENTICAL_ALLOWEDIPS = define(
    "NS105",
    "allowedips-identical",
    Severity.ERROR,
    "Two peers the gateway carries (not revoked) have an identical AllowedIPs entry, that is the "
    "same tunnel address.",
    "WireGuard keeps each AllowedIPs range on one peer only: the last peer written silently takes "
    "it from the other, whose traffic then stops without any error.",
    """
    # peers/alice.toml
    address_v4 = "198.18.10.5"
    # peers/bob.toml
    address_v4 = "198.18.10.5"
    """,
    """
    # peers/bob.toml
    address_v4 = "198.18.10.6"
    """,
)
MISSING_V6 = define(
    "NS112",
    "peer-without-ipv6",
    Severity.WARNING,
    "The profile has an IPv6 tunnel subnet (network.tunnel_v6) but a peer has no address_v6.",
    "That assistant cannot reach anything the company serves over IPv6, while colleagues can: the "
    "kind of partial failure that takes long to diagnose.",
    """
    # profile.toml: tunnel_v6 = "2001:db8:10::/64"
    address_v4 = "198.18.10.5"
    """,
    """
    address_v4 = "198.18.10.5"
    address_v6 = "2001:db8:10::5"
    """,
)


@profile_check
def check_addresses(entry: ProfileEntry, ctx: Context) -> None:
    profile = entry.profile
    if profile is None:
        return
    sites = {site.name: _Site(profile.site(site.name).network) for site in profile.gateways}
    first_site = profile.gateways[0].name
    holders: dict[IPAddress, list[tuple[PeerEntry, Peer, str]]] = {}
    first_holder: dict[IPAddress, tuple[PeerEntry, Peer, str]] = {}
    for peer_entry, peer in entry.valid_peers():
        if peer.status == "revoked" and not _quarantined(profile, peer, ctx):
            continue
        # a peer of a site the profile does not have is NS116; its addresses still clash below
        site = sites.get(peer.gateway or first_site)
        if peer.status != "revoked" and site is not None:
            network = site.network
            v6 = peer.address_v6
            if not site.fits(int(peer.address_v4)) or (
                v6 is not None and (site.fits_v6 is None or not site.fits_v6(int(v6)))
            ):
                _check_inside(network, peer_entry, peer, ctx)
            if network.tunnel_v6 is not None and v6 is None:
                ctx.report(
                    peer_entry.file,
                    ("address_v4",),
                    MISSING_V6.code,
                    f"peer {peer_entry.name!r} has no address_v6 although the profile has "
                    f"tunnel_v6 {network.tunnel_v6}; it cannot reach IPv6 services",
                )
        for key, address in (("address_v4", peer.address_v4), ("address_v6", peer.address_v6)):
            if address is None:
                continue
            item = (peer_entry, peer, key)
            first = first_holder.setdefault(address, item)
            if first is not item:  # a clash: rare, so only clashing addresses get a list
                holders.setdefault(address, [first]).append(item)
    for address, group in holders.items():
        _report_clash(address, group, ctx)


class _Site:
    """One gateway's tunnel subnets with the cheap fit tests of its addresses."""

    def __init__(self, network: Network) -> None:
        self.network = network
        gateway_v4, gateway_v6 = gateway_addresses(network)
        self.fits = _fast_fit(network.tunnel_v4, gateway_v4)
        tunnel_v6 = network.tunnel_v6
        self.fits_v6 = _fast_fit(tunnel_v6, gateway_v6) if tunnel_v6 is not None else None


def _fast_fit(
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, gateway: IPAddress | None
) -> Callable[[int], bool]:
    """A cheap test that an address (as an int) is a usable host address of the subnet.

    False means "look closer": `tunnel_address_problem` then words the exact problem.
    """
    low, high = int(subnet.network_address), int(subnet.broadcast_address)
    taken = int(gateway) if gateway is not None else -1
    return lambda address: low < address < high and address != taken


def _quarantined(profile: Profile, peer: Peer, ctx: Context) -> bool:
    end = quarantine_end(profile, peer)
    return end is not None and end > ctx.now


def _report_clash(
    address: IPAddress, group: list[tuple[PeerEntry, Peer, str]], ctx: Context
) -> None:
    carried = [item for item in group if item[1].status != "revoked"]
    reported: set[int] = set()
    prefix = address.max_prefixlen
    for peer_entry, _, key in carried[1:]:
        first = carried[0][0]
        reported.add(id(peer_entry))
        ctx.report(
            peer_entry.file,
            (key,),
            IDENTICAL_ALLOWEDIPS.code,
            f"peer {peer_entry.name!r} has AllowedIPs {address}/{prefix}, identical to peer "
            f"{first.name!r} ({ctx.where(first.file, (key,))}); WireGuard silently keeps it only "
            "on the last peer",
        )
    revoked = [item for item in group if item[1].status == "revoked"]
    if not revoked:
        return
    holder = revoked[0][0]
    for peer_entry, _, key in group:
        if peer_entry is holder or id(peer_entry) in reported:
            continue
        ctx.report(
            peer_entry.file,
            (key,),
            QUARANTINED_ADDRESS.code,
            f"peer {peer_entry.name!r} uses {address}, still quarantined for revoked peer "
            f"{holder.name!r} ({ctx.where(holder.file, (key,))}); pick a free address",
        )


def _check_inside(network: Network, peer_entry: PeerEntry, peer: Peer, ctx: Context) -> None:
    gateway_v4, gateway_v6 = gateway_addresses(network)
    problem = tunnel_address_problem(peer.address_v4, network.tunnel_v4, gateway_v4)
    if problem:
        ctx.report(
            peer_entry.file,
            ("address_v4",),
            OUTSIDE_TUNNEL.code,
            f"peer {peer_entry.name!r} address_v4 {peer.address_v4} {problem}",
        )
    if peer.address_v6 is None:
        return
    if network.tunnel_v6 is None:
        problem = "is set but the profile has no network.tunnel_v6"
    else:
        problem = tunnel_address_problem(peer.address_v6, network.tunnel_v6, gateway_v6)
    if problem:
        ctx.report(
            peer_entry.file,
            ("address_v6",),
            OUTSIDE_TUNNEL.code,
            f"peer {peer_entry.name!r} address_v6 {peer.address_v6} {problem}",
        )
