"""The gateway's side of a profile: its WireGuard config (its interface and every active peer with
its preshared key) and its nftables ruleset, as `netsetup render` produces them.

`render_gateway` makes every decision of the command (refuse stdout when it is not a terminal,
check the peers' AllowedIPs, read the gateway key, write the file) and returns a `RenderResult`
for the CLI to show.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from netsetup import wgconf
from netsetup.errors import EnvironmentProblem, InputError
from netsetup.fsutil import atomic_write, ensure_dir, write_secret
from netsetup.keys import SecretKey
from netsetup.profile.model import Peer, Profile
from netsetup.profile.store import (
    load_peers,
    parse_peer_file,
    parse_profile_file,
    peer_path,
    profile_site,
)
from netsetup.profile.values import (
    IPAddress,
    PeerName,
    ProfileId,
    format_time,
    tunnel_address_problem,
)
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
    psk_for: Callable[[Peer], SecretKey | None] | None = None,
) -> str:
    """wg-quick config for the gateway of `profile` (a site's view, `Profile.site`, with that
    site's peers, `Profile.peers_of`). Expired and revoked peers are left out. With
    reveal=False the secrets are replaced by a marker (what `render` prints to a terminal).

    `psk_for` gives each peer's preshared key (apply takes the ones live on the gateway); None
    reads the state folder's. A peer it has no key for is an error, never a config without one.
    """
    if psk_for is None:
        psk_for = _state_psk(profile, state)
    interface: list[tuple[str, wgconf.Value]] = [
        ("Address", wgconf.join(gateway_addresses(profile))),
        ("ListenPort", profile.gateway.listen_port),
    ]
    if private_key is not None:
        interface.append(("PrivateKey", private_key))
    active = [p for p in peers if p.is_active(now)]
    sections: list[tuple[list[str], list[tuple[str, wgconf.Value]]]] = []
    for peer in active:
        psk = psk_for(peer)
        if psk is None:
            raise InputError(
                f"no preshared key for peer {peer.name!r} (provisioned by another admin? run "
                f"`netsetup rotate {profile.id} {peer.name}`)",
                where=f"peer {peer.name!r}",
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
    site = f" (site {profile.gateway.name})" if profile.multi_site else ""
    header = [
        f"netsetup: gateway {profile.gateway.interface} of {profile.id}{site}",
        f"rendered {format_time(now)}",
        f"{len(active)} active peer(s); {left_out} revoked or expired left out",
    ]
    if private_key is None:
        header.append("No PrivateKey: set it on the gateway (wg set <iface> private-key FILE)")
    return wgconf.render_config(interface, sections, header=header, reveal=reveal)


def _state_psk(profile: Profile, state: StateDir) -> Callable[[Peer], SecretKey | None]:
    """The preshared keys of the admin's state folder; one missing is an error that names the
    file it was looked for in."""
    pid = ProfileId(profile.id)

    def psk(peer: Peer) -> SecretKey:
        name = PeerName(peer.name)  # what the state folder takes
        found = state.load_psk(pid, name, peer.public_key)
        if found is None:
            raise InputError(
                f"no preshared key for peer {peer.name!r} in the state directory "
                f"(provisioned by another admin? run `netsetup rotate {profile.id} {peer.name}`)",
                where=str(state.psk_path(pid, name, peer.public_key)),
            )
        return found

    return psk


# -- the AllowedIPs the gateway would route into the tunnel ------------------------------------


def _tunnel_addresses(peer: Peer) -> Iterator[tuple[str, IPAddress]]:
    yield "address_v4", peer.address_v4
    if peer.address_v6 is not None:
        yield "address_v6", peer.address_v6


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _peer_file_line(profile: Profile, peer: Peer, key: str) -> str:
    """`peers/<name>.toml:<line>` of `key` (looked up only when there is something to report)."""
    path = peer_path(profile, peer.name)
    line, _ = parse_peer_file(path)[1].locate((key,))
    return f"{_shown(path)}:{line}"


def _profile_file_line(profile: Profile, key: str) -> str:
    """Where the tunnel subnet `key` of the gateway's site is written: `[network]`, or the
    `[[gateway]]` table of a site with subnets of its own."""
    path: tuple[str | int, ...] = ("network", key)
    if profile.gateway.tunnel_v4 is not None:
        index = [site.name for site in profile.gateways].index(profile.gateway.name)
        path = ("gateway", index, key)
    line, _ = parse_profile_file(profile.directory)[1].locate(path)
    return f"{_shown(profile.profile_file)}:{line}"


def _check_inside(profile: Profile, peer: Peer, key: str, address: IPAddress) -> None:
    network = profile.network
    family = "tunnel_v4" if address.version == 4 else "tunnel_v6"
    subnet = network.tunnel_v4 if address.version == 4 else network.tunnel_v6
    gateway = network.gateway_address_v4 if address.version == 4 else network.gateway_address_v6
    if subnet is None:
        problem: str | None = "is set but the profile has no network.tunnel_v6"
    else:
        problem = tunnel_address_problem(address, subnet, gateway)
    if problem:
        raise InputError(
            f"peer {peer.name!r} has AllowedIPs {address}/{address.max_prefixlen}, which "
            f"{problem}: the gateway would route that address into the tunnel to this peer; "
            "correct the peer file (`netsetup validate` shows every such problem)",
            where=f"{_peer_file_line(profile, peer, key)}, {_profile_file_line(profile, family)}",
        )


def check_allowed_ips(profile: Profile, peers: Sequence[Peer], now: datetime) -> None:
    """Refuse what would make the gateway route an address to the wrong place: an active peer's
    address outside the tunnel subnets (a hand-edited peer file claiming the portal's address,
    say) or the same address on two active peers (WireGuard silently keeps it on the last)."""
    holders: dict[IPAddress, Peer] = {}
    for peer in peers:
        if not peer.is_active(now):
            continue
        for key, address in _tunnel_addresses(peer):
            _check_inside(profile, peer, key, address)
            first = holders.setdefault(address, peer)
            if first is not peer:
                raise InputError(
                    f"peers {first.name!r} and {peer.name!r} both have AllowedIPs "
                    f"{address}/{address.max_prefixlen}: WireGuard would silently keep it on one "
                    "of them only; give one of them a free address",
                    where=f"{_peer_file_line(profile, first, key)}, "
                    f"{_peer_file_line(profile, peer, key)}",
                )


# -- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderWarning:
    """Something the user must do before the rendered file works, and how."""

    what: str
    fixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenderResult:
    """What `render` produced. `text` is what may go to stdout (the nftables ruleset, or the
    config with its keys redacted); it is None when the output was written to `written`."""

    kind: Literal["wireguard", "firewall"]
    text: str | None
    written: Path | None
    active: int
    left_out: int
    warnings: tuple[RenderWarning, ...] = ()
    # the site rendered when the profile has several gateways (`[[gateway]]`); None with one
    site: str | None = None
    sites: tuple[str, ...] = ()  # every site's name, when there are several


def read_gateway_key(path: Path) -> SecretKey:
    """The gateway's private key from a file given on the command line."""
    try:
        return SecretKey(path.read_text().strip())
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except ValueError:
        raise InputError("not a WireGuard private key", where=str(path)) from None


def _write(path: Path, text: str, *, secret: bool) -> None:
    """Write atomically (0600); an OS error names the file asked for, not the temporary one."""
    try:
        if secret:
            write_secret(path, text)
        else:
            ensure_dir(path.parent)
            atomic_write(path, text, mode=0o600)
    except OSError as exc:
        raise EnvironmentProblem.from_os_error(exc, where=path) from None


def _missing_key(profile: Profile, state: StateDir, out: Path) -> RenderWarning:
    return RenderWarning(
        f"{out} has no PrivateKey: the gateway's tunnel carries nothing until its private key is "
        "set; add it in one of these ways",
        (
            f"save it as {state.gateway_key_path(profile.id)} (mode 0600, in a 0700 folder) and "
            "render again",
            "render again with --gateway-key FILE",
            f"on the gateway, after loading the file: wg set {profile.gateway.interface} "
            "private-key FILE",
        ),
    )


def _state_gateway_key(profile: Profile, state: StateDir) -> SecretKey | None:
    """The state folder's gateway key, when it is this gateway's: it holds one key per profile,
    and with several sites (`[[gateway]]`) it belongs to one of them only (the others get the
    missing-key warning rather than another gateway's identity)."""
    key = state.load_gateway_key(profile.id)
    if key is None or not profile.multi_site:
        return key
    from netsetup.keys import public_from_private

    return key if public_from_private(key) == profile.gateway.public_key else None


def _render_firewall(
    profile: Profile, peers: list[Peer], now: datetime, out: Path | None
) -> RenderResult:
    from netsetup.gateway.firewall import render_firewall

    text = render_firewall(profile, peers, now)
    active = sum(1 for p in peers if p.is_active(now))
    if out is not None:
        _write(out, text, secret=False)
    return RenderResult("firewall", None if out else text, out, active, len(peers) - active)


def _render_wireguard(
    profile: Profile,
    peers: list[Peer],
    state: StateDir,
    now: datetime,
    *,
    out: Path | None,
    gateway_key_file: Path | None,
) -> RenderResult:
    if gateway_key_file is not None:
        key: SecretKey | None = read_gateway_key(gateway_key_file)
    else:
        key = _state_gateway_key(profile, state)
    active = sum(1 for p in peers if p.is_active(now))
    text = render_gateway_config(
        profile, peers, state, now, private_key=key, reveal=out is not None
    )
    if out is None:
        return RenderResult("wireguard", text, None, active, len(peers) - active)
    from netsetup.provision.service import refuse_inside_profiles

    refuse_inside_profiles(out.parent, profile)
    _write(out, text, secret=True)
    warnings = (_missing_key(profile, state, out),) if key is None else ()
    return RenderResult("wireguard", None, out, active, len(peers) - active, warnings)


def render_gateway(
    profile: Profile,
    state: StateDir,
    now: datetime,
    *,
    out: Path | None = None,
    firewall: bool = False,
    gateway_key_file: Path | None = None,
    to_terminal: bool = False,
    site: str | None = None,
) -> RenderResult:
    """Render the WireGuard config of the gateway `site` (None: the first; every other site's
    peers are left out), or with firewall=True its nftables ruleset, and write it to `out`, or
    return it for stdout.

    The WireGuard config goes to stdout only with its keys redacted, which `wg` rejects, so it
    is refused unless a person is looking (`to_terminal`): `render > wg0.conf` would otherwise
    leave an unusable file. The ruleset holds no secret and may go to a pipe.
    """
    if not firewall and out is None and not to_terminal:
        raise InputError(
            "the gateway config on stdout has its keys redacted and wg rejects such a file; "
            "write it with --out FILE (0600), or run render in a terminal to look at it",
            where="stdout is not a terminal",
        )
    view = profile_site(profile, site, where="--gateway")
    peers = profile.peers_of(view.gateway, load_peers(profile))
    check_allowed_ips(view, peers, now)
    if firewall:
        result = _render_firewall(view, peers, now, out)
    else:
        result = _render_wireguard(
            view, peers, state, now, out=out, gateway_key_file=gateway_key_file
        )
    if not profile.multi_site:
        return result
    return replace(result, site=view.gateway.name, sites=tuple(g.name for g in profile.gateways))
