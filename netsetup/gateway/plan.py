"""What `apply` would change on one gateway: the profile (one site of it) compared with the live
state the gateway agent read (`netsetup.gateway.state.LiveState`).

The plan is a reviewer's diff: peers to add, remove or change, interface changes, the config
file, the ruleset (a unified diff of the source netsetup installed against the one it renders
now), and drift: peers on the gateway that no peer file of the profile knows, and hand edits of
the loaded ruleset (the live listing against the listing recorded when netsetup loaded it).

Preshared keys: each admin's state folder holds only the keys that admin made, so the plan keeps
every preshared key already on the gateway and takes from the state folder only those of peers
the gateway does not have yet. A new peer whose key is in neither place is `unkeyed`: apply
refuses it and says to rotate it; it never makes up a key, which would cut the assistant off.

Nothing in a plan's text or JSON is secret: peers are named by their key fingerprints. Only
`DesiredFiles.conf` holds keys, for the upload, and it is kept out of every repr.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from netsetup import wgconf
from netsetup.errors import InputError
from netsetup.gateway.state import LivePeer, LiveState, normalise_allowed_ips, normalise_listing
from netsetup.keys import SecretKey, fingerprint
from netsetup.profile.model import Peer, Profile
from netsetup.profile.values import PeerName, ProfileId, format_time
from netsetup.state import StateDir

PLAN_SCHEMA = "netsetup.plan/1"
DRIFT_REASON = "drift: unknown to the profile (--prune)"
# [Interface] keys of the gateway's own file that the profile does not set and apply keeps. The
# agent refuses the others: PreUp/PostUp/... run shell commands as root, SaveConfig rewrites the
# file, DNS means nothing on a gateway.
KEPT_INTERFACE_KEYS = ("mtu", "table", "fwmark")
_WG_QUICK_SPELLING = {"mtu": "MTU", "table": "Table", "fwmark": "FwMark"}


@dataclass(frozen=True)
class PeerChange:
    """One peer `apply` adds, removes or changes on the gateway."""

    kind: Literal["add", "remove", "change"]
    public_key: str
    name: str | None  # None: known to no peer file (a drift peer pruned)
    mode: str | None
    allowed_ips: tuple[str, ...]
    details: tuple[str, ...] = ()  # what changes, or why a peer goes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "mode": self.mode,
            "allowed_ips": list(self.allowed_ips),
            "details": list(self.details),
        }


@dataclass(frozen=True)
class DriftPeer:
    """A peer on the gateway (live, in its config file, or both) that no peer file knows."""

    peer: LivePeer  # its preshared key, if any, stays in here (SecretKey): for --adopt
    comments: tuple[str, ...]  # the comment lines above it in the config file (a name, maybe)
    live: bool
    in_conf: bool

    @property
    def public_key(self) -> str:
        return self.peer.public_key

    @property
    def fingerprint(self) -> str:
        return self.peer.fingerprint

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "allowed_ips": list(self.peer.allowed_ips),
            "comments": list(self.comments),
            "live": self.live,
            "in_conf_file": self.in_conf,
        }


@dataclass(frozen=True)
class UnkeyedPeer:
    """A peer to add whose preshared key is neither on the gateway nor in this admin's state."""

    name: str
    public_key: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": fingerprint(self.public_key), "fix": self.fix}


@dataclass(frozen=True)
class DesiredFiles:
    """What apply uploads: the wg-quick config (holds the keys: never shown) and the ruleset."""

    conf: str = field(repr=False)
    ruleset: str
    peers: dict[str, DesiredPeer] = field(repr=False)
    listen_port: int
    public_key: str

    @property
    def ruleset_sha256(self) -> str:
        return hashlib.sha256(self.ruleset.encode()).hexdigest()


@dataclass(frozen=True)
class DesiredPeer:
    """A peer as the gateway must run it after apply (what `verify` compares)."""

    public_key: str
    preshared_key: SecretKey | None = field(repr=False)
    networks: frozenset[str]
    keepalive: int | None = None


@dataclass(frozen=True)
class GatewayPlan:
    """Everything `apply` would do on one gateway, and what stops it (drift, unkeyed peers)."""

    gateway: str  # the site's name
    target: str  # user@host:port
    interface: str
    table: str
    add: tuple[PeerChange, ...] = ()
    remove: tuple[PeerChange, ...] = ()
    change: tuple[PeerChange, ...] = ()
    interface_changes: tuple[str, ...] = ()
    conf_file: tuple[str, ...] = ()  # why the config file is rewritten; () when it is current
    ruleset_diff: str = ""  # unified diff, installed source -> rendered source
    rules_drift: str = ""  # unified diff, listing when netsetup loaded it -> live listing
    drift_peers: tuple[DriftPeer, ...] = ()
    unkeyed: tuple[UnkeyedPeer, ...] = ()
    notes: tuple[str, ...] = ()
    desired: DesiredFiles | None = field(default=None, repr=False)

    @property
    def peers_in_sync(self) -> bool:
        return not (self.add or self.remove or self.change or self.drift_peers or self.unkeyed)

    @property
    def rules_in_sync(self) -> bool:
        return not (self.ruleset_diff or self.rules_drift)

    @property
    def has_drift(self) -> bool:
        return bool(self.drift_peers or self.rules_drift)

    @property
    def in_sync(self) -> bool:
        return (
            self.peers_in_sync
            and self.rules_in_sync
            and not self.interface_changes
            and not self.conf_file
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "ssh": self.target,
            "interface": self.interface,
            "table": self.table,
            "in_sync": self.in_sync,
            "peers_in_sync": self.peers_in_sync,
            "rules_in_sync": self.rules_in_sync,
            "drift": self.has_drift,
            "add": [c.as_dict() for c in self.add],
            "remove": [c.as_dict() for c in self.remove],
            "change": [c.as_dict() for c in self.change],
            "interface_changes": list(self.interface_changes),
            "conf_file": list(self.conf_file),
            "ruleset_diff": self.ruleset_diff,
            "rules_drift": self.rules_drift,
            "drift_peers": [d.as_dict() for d in self.drift_peers],
            "unkeyed": [u.as_dict() for u in self.unkeyed],
            "notes": list(self.notes),
        }


# -- the pieces -------------------------------------------------------------------------------


def _addresses(peer: Peer) -> tuple[str, ...]:
    from netsetup.provision.client_config import peer_addresses

    return tuple(peer_addresses(peer))


def _peer_label(peer: Peer) -> str:
    expiry = f", expires {format_time(peer.expires)}" if peer.expires else ""
    return f"{peer.name} ({peer.mode}{expiry})"


def _why_not_here(peer: Peer, site: Profile, now: datetime) -> str:
    first = site.gateways[0].name
    if (peer.gateway or first) != site.gateway.name:
        return f"belongs to gateway {peer.gateway or first!r}"
    if peer.status == "revoked":
        return "revoked"
    return f"expired {format_time(peer.expires)}" if peer.expires else "not active"


def _keepalive_text(value: int | None) -> str:
    return str(value) if value else "off"


def _peer_details(live: LivePeer, want: DesiredPeer) -> tuple[str, ...]:
    details = []
    if live.networks != want.networks:
        before = ", ".join(sorted(live.networks)) or "(none)"
        after = ", ".join(sorted(want.networks))
        details.append(f"AllowedIPs {before} -> {after}")
    if (live.keepalive or None) != want.keepalive:
        details.append(
            f"keepalive {_keepalive_text(live.keepalive)} -> {_keepalive_text(want.keepalive)}"
        )
    if live.preshared_key is None and want.preshared_key is not None:
        details.append("preshared key set (from this admin's state folder)")
    return tuple(details)


@dataclass
class _Peers:
    """The peer part of a plan, built up by `_compare_peers`."""

    add: list[PeerChange] = field(default_factory=list)
    remove: list[PeerChange] = field(default_factory=list)
    change: list[PeerChange] = field(default_factory=list)
    drift: list[DriftPeer] = field(default_factory=list)
    unkeyed: list[UnkeyedPeer] = field(default_factory=list)
    desired: dict[str, DesiredPeer] = field(default_factory=dict)


def _on_gateway(live: LiveState) -> dict[str, LivePeer]:
    """The gateway's peers: what WireGuard runs, else (interface down) its config file's."""
    if live.dump is not None:
        return live.peers
    return {key: entry.peer for key, entry in live.conf_peers.items()}


def _psk_for(peer: Peer, site: Profile, live: LiveState, state: StateDir) -> SecretKey | None:
    """The preshared key a peer keeps: the live one, else the config file's, else this admin's
    state folder's (another admin's peer keeps the key the gateway has)."""
    running = live.peers.get(peer.public_key)
    if running is not None and running.preshared_key is not None:
        return running.preshared_key
    written = live.conf_peers.get(peer.public_key)
    if written is not None and written.peer.preshared_key is not None:
        return written.peer.preshared_key
    return state.load_psk(ProfileId(site.id), PeerName(peer.name), peer.public_key)


def _compare_peers(
    site: Profile, all_peers: Sequence[Peer], live: LiveState, state: StateDir, now: datetime
) -> _Peers:
    out = _Peers()
    known = {p.public_key: p for p in all_peers}
    wanted = {p.public_key: p for p in site.peers_of(site.gateway, all_peers) if p.is_active(now)}
    present = _on_gateway(live)
    for key, peer in wanted.items():
        psk = _psk_for(peer, site, live, state)
        on_gateway = key in present
        if psk is None and not on_gateway:
            out.unkeyed.append(
                UnkeyedPeer(
                    peer.name,
                    key,
                    f"its preshared key is neither on the gateway nor in this admin's state "
                    f"folder (provisioned by another admin?): run `netsetup rotate {site.id} "
                    f"{peer.name}` and hand the assistant the new config",
                )
            )
            continue
        desired = DesiredPeer(key, psk, normalise_allowed_ips(_addresses(peer)))
        out.desired[key] = desired
        label = _peer_label(peer)
        if not on_gateway:
            out.add.append(PeerChange("add", key, peer.name, peer.mode, _addresses(peer), (label,)))
            continue
        details = _peer_details(present[key], desired)
        if details:
            out.change.append(
                PeerChange("change", key, peer.name, peer.mode, _addresses(peer), details)
            )
    conf_peers = live.conf_peers
    for key in sorted(set(present) | set(conf_peers)):
        if key in wanted:
            continue
        peer_file = known.get(key)
        if peer_file is None:
            entry = conf_peers.get(key)
            seen = present.get(key) or (entry.peer if entry else None)
            assert seen is not None
            out.drift.append(
                DriftPeer(
                    live.peers.get(key) or seen,
                    entry.comments if entry else (),
                    live=key in live.peers,
                    in_conf=entry is not None,
                )
            )
            continue
        reason = _why_not_here(peer_file, site, now)
        out.remove.append(
            PeerChange(
                "remove", key, peer_file.name, peer_file.mode, _addresses(peer_file), (reason,)
            )
        )
    return out


def _drift_as_removals(drift: Sequence[DriftPeer]) -> list[PeerChange]:
    return [
        PeerChange("remove", d.public_key, None, None, d.peer.allowed_ips, (DRIFT_REASON,))
        for d in drift
    ]


# -- the interface ----------------------------------------------------------------------------


def _public_of(key: SecretKey) -> str:
    from netsetup.keys import public_from_private

    return public_from_private(key)


def gateway_private_key(site: Profile, live: LiveState, state: StateDir) -> tuple[SecretKey, str]:
    """The private key the gateway must run and where it came from: the live one when its public
    key is the profile's, else the config file's, else the state folder's. Never a made-up key:
    without a matching one, an InputError that says what to do."""
    want = site.gateway.public_key
    facts = live.interface_facts
    if facts is not None and facts.private_key is not None and facts.public_key == want:
        return facts.private_key, "live"
    written = live.conf.private_key if live.conf is not None else None
    if written is not None and _public_of(written) == want:
        return written, "config file"
    stored = state.load_gateway_key(ProfileId(site.id))
    if stored is not None and _public_of(stored) == want:
        return stored, "state folder"
    running = facts.public_key if facts is not None else None
    raise InputError(
        f"the private key of gateway {site.gateway.name!r} is unknown: the profile's "
        f"[gateway] public_key is {want}, the gateway runs "
        f"{running or 'no key'}, and this admin's state folder holds no key matching the "
        "profile; save the gateway's private key there (0600), or correct public_key",
        where=str(state.gateway_key_path(ProfileId(site.id))),
    )


def gateway_addresses(site: Profile) -> tuple[str, ...]:
    from netsetup.gateway.render import gateway_addresses as rendered

    return tuple(rendered(site))


def _interface_changes(site: Profile, live: LiveState, key_source: str) -> list[str]:
    changes = []
    facts = live.interface_facts
    port = site.gateway.listen_port
    if not live.up or facts is None:
        changes.append(f"interface {site.gateway.interface} is down: apply brings it up")
    elif facts.listen_port != port:
        changes.append(f"listen port {facts.listen_port} -> {port}")
    if facts is not None and facts.public_key != site.gateway.public_key:
        changes.append(
            f"private key: the gateway runs the key of public key {facts.public_key}; the "
            f"profile's ({site.gateway.public_key}) comes from the {key_source}"
        )
    if live.conf is not None:
        have = normalise_allowed_ips(live.conf.addresses)
        want = normalise_allowed_ips(gateway_addresses(site))
        if have != want:
            changes.append(
                f"addresses {', '.join(sorted(have)) or '(none)'} -> {', '.join(sorted(want))} "
                "(the config file; the live addresses change at the next wg-quick up)"
            )
    return changes


# -- the config file --------------------------------------------------------------------------


def _kept_interface_lines(live: LiveState) -> list[tuple[str, wgconf.Value]]:
    if live.conf is None:
        return []
    return [
        (_WG_QUICK_SPELLING[key], value)
        for key, value in live.conf.other
        if key in KEPT_INTERFACE_KEYS
    ]


def render_conf(
    site: Profile,
    peers: Sequence[Peer],
    desired: dict[str, DesiredPeer],
    private_key: SecretKey,
    kept: Sequence[tuple[str, wgconf.Value]] = (),
) -> str:
    """The gateway's wg-quick config: its interface and each desired peer with the preshared key
    the plan chose (the gateway's own, or this admin's for a new peer). No time stamp in it: the
    same profile gives the same file."""
    interface: list[tuple[str, wgconf.Value]] = [
        ("Address", wgconf.join(gateway_addresses(site))),
        ("ListenPort", site.gateway.listen_port),
        ("PrivateKey", private_key),
        *kept,
    ]
    sections: list[tuple[list[str], list[tuple[str, wgconf.Value]]]] = []
    for peer in peers:
        want = desired.get(peer.public_key)
        if want is None:
            continue
        section: list[tuple[str, wgconf.Value]] = [("PublicKey", peer.public_key)]
        if want.preshared_key is not None:
            section.append(("PresharedKey", want.preshared_key))
        section.append(("AllowedIPs", wgconf.join(_addresses(peer))))
        sections.append(([_peer_label(peer)], section))
    header = [
        f"netsetup: gateway {site.gateway.interface} ({site.gateway.name}) of {site.id}",
        "written by `netsetup apply`: change the profile and apply, not this file",
    ]
    return wgconf.render_config(interface, sections, header=header)


def _conf_reasons(
    live: LiveState, desired: dict[str, DesiredPeer], site: Profile, key: SecretKey
) -> list[str]:
    """Why the gateway's config file differs from the one apply writes (by meaning, not by
    text: comments and the order of peers do not count)."""
    conf = live.conf
    if conf is None:
        return [f"/etc/wireguard/{site.gateway.interface}.conf is missing"]
    reasons = []
    if normalise_allowed_ips(conf.addresses) != normalise_allowed_ips(gateway_addresses(site)):
        reasons.append("Address differs")
    if conf.listen_port != site.gateway.listen_port:
        reasons.append("ListenPort differs")
    if conf.private_key != key:
        reasons.append("PrivateKey differs")
    dropped = sorted({k for k, _ in conf.other if k not in KEPT_INTERFACE_KEYS})
    if dropped:
        reasons.append(
            f"[Interface] {', '.join(dropped)} dropped (the gateway agent installs no command "
            "hooks, SaveConfig or DNS: put NAT and such in the gateway's own setup)"
        )
    written = {entry.peer.public_key: entry.peer for entry in conf.peers}
    if set(written) != set(desired):
        reasons.append("its peers differ")
    else:
        for public, want in desired.items():
            have = written[public]
            if (
                have.networks != want.networks
                or have.preshared_key != want.preshared_key
                or (have.keepalive or None) != want.keepalive
            ):
                reasons.append("a peer's AllowedIPs, preshared key or keepalive differs")
                break
    return reasons


# -- the ruleset ------------------------------------------------------------------------------


def ruleset_body(text: str) -> list[str]:
    """A ruleset source without its leading comment lines (they carry the time it was
    rendered), as lines for a diff."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return lines[start:]


def _diff(before: Sequence[str], after: Sequence[str], old: str, new: str) -> str:
    return "".join(difflib.unified_diff(before, after, old, new, n=2))


def _ruleset_diff(site: Profile, live: LiveState, rendered: str) -> str:
    path = f"/etc/netsetup/nftables/{site.gateway.interface}.nft"
    if live.ruleset_file is None:
        return _diff([], ruleset_body(rendered), f"gateway:{path} (none)", "profile")
    return _diff(
        ruleset_body(live.ruleset_file), ruleset_body(rendered), f"gateway:{path}", "profile"
    )


def _rules_drift(live: LiveState, table: str) -> str:
    if live.applied is None:
        return ""
    if live.listing is None:
        return f"the table inet {table} netsetup loaded ({live.applied.at}) is gone\n"
    loaded = normalise_listing(live.applied.listing).splitlines(keepends=True)
    now = normalise_listing(live.listing).splitlines(keepends=True)
    return _diff(loaded, now, f"as loaded by netsetup {live.applied.at}", "live now")


def _ruleset_notes(live: LiveState, table: str) -> list[str]:
    notes = []
    if live.applied is None and live.listing is not None:
        notes.append(
            f"the table inet {table} was loaded by something other than netsetup apply: "
            "apply replaces it"
        )
    if live.applied is not None and live.ruleset_file is not None:
        digest = hashlib.sha256(live.ruleset_file.encode()).hexdigest()
        if digest != live.applied.source_sha256:
            notes.append(
                "the ruleset file on the gateway changed after netsetup loaded it (apply "
                "rewrites it)"
            )
    return notes


def _notes(live: LiveState, table: str) -> list[str]:
    notes = _ruleset_notes(live, table)
    if live.pending:
        notes.append(
            "another apply awaits its confirmation on this gateway (a revert is armed until "
            f"{live.pending.get('deadline')}); apply waits for it to end"
        )
    for family, enabled in sorted(live.forwarding.items()):
        if not enabled:
            notes.append(
                f"{family} forwarding is off on the gateway: nothing of that family passes "
                "the tunnel"
            )
    missing = sorted(name for name, installed in live.tools.items() if not installed)
    if missing:
        notes.append(
            f"not installed on the gateway: {', '.join(missing)} (`netsetup gateway bootstrap` "
            "installs them)"
        )
    return notes


# -- the plan ---------------------------------------------------------------------------------


def make_plan(
    site: Profile,
    peers: Sequence[Peer],
    live: LiveState,
    state: StateDir,
    now: datetime,
    *,
    prune: bool = False,
) -> GatewayPlan:
    """The plan of one gateway. `site` is `profile.site(name)`; `peers` every peer file of the
    profile (all sites: a key known to any of them is not drift). With prune=True the drift
    peers are removals (what `apply --prune` does) and still listed as drift."""
    from netsetup.gateway.firewall import render_firewall, table_name

    gateway = site.gateway
    table = table_name(gateway.interface)
    compared = _compare_peers(site, peers, live, state, now)
    key, key_source = gateway_private_key(site, live, state)
    site_peers = site.peers_of(gateway, peers)
    ruleset = render_firewall(site, site_peers, now)
    desired = None
    if not compared.unkeyed:
        active = [p for p in site_peers if p.is_active(now)]
        conf = render_conf(site, active, compared.desired, key, _kept_interface_lines(live))
        desired = DesiredFiles(
            conf, ruleset, compared.desired, gateway.listen_port, gateway.public_key
        )
    removals = compared.remove + (_drift_as_removals(compared.drift) if prune else [])
    return GatewayPlan(
        gateway=gateway.name,
        target=str(gateway.ssh) if gateway.ssh else "",
        interface=gateway.interface,
        table=table,
        add=tuple(compared.add),
        remove=tuple(removals),
        change=tuple(compared.change),
        interface_changes=tuple(_interface_changes(site, live, key_source)),
        conf_file=tuple(_conf_reasons(live, compared.desired, site, key)),
        ruleset_diff=_ruleset_diff(site, live, ruleset),
        rules_drift=_rules_drift(live, table),
        drift_peers=tuple(compared.drift),
        unkeyed=tuple(compared.unkeyed),
        notes=tuple(_notes(live, table)),
        desired=desired,
    )


# -- the reviewer's text ----------------------------------------------------------------------


def _ips(change: PeerChange) -> str:
    return ", ".join(change.allowed_ips)


def _peer_lines(plan: GatewayPlan) -> list[str]:
    lines = []
    for change in plan.add:
        lines.append(f"+ peer {change.details[0]} {_ips(change)}  [{change.fingerprint}]")
    for change in plan.remove:
        who = f"{change.name} ({change.mode})" if change.name else change.fingerprint
        why = "; ".join(change.details)
        lines.append(f"- peer {who} {_ips(change)}  [{change.fingerprint}]: {why}")
    for change in plan.change:
        lines.append(f"~ peer {change.name} ({change.mode})  [{change.fingerprint}]")
        lines.extend(f"    {detail}" for detail in change.details)
    return lines


def _drift_lines(plan: GatewayPlan) -> list[str]:
    lines = []
    for drift in plan.drift_peers:
        where = " and ".join(
            w for w, on in (("live", drift.live), ("in the config file", drift.in_conf)) if on
        )
        named = f" (comment: {' / '.join(drift.comments)})" if drift.comments else ""
        lines.append(
            f"! drift: peer {drift.fingerprint} {', '.join(drift.peer.allowed_ips) or '(none)'} "
            f"on the gateway ({where}), unknown to the profile{named}"
        )
    if plan.rules_drift:
        lines.append(f"! drift: the live table inet {plan.table} was changed by hand:")
        lines.extend("    " + line for line in plan.rules_drift.splitlines())
    if plan.has_drift:
        lines.append(
            "  apply refuses while there is drift: --adopt takes the peers into the profile, "
            "--prune removes them (and overwrites hand-edited rules)"
        )
    return lines


def _ruleset_lines(plan: GatewayPlan) -> list[str]:
    diff = plan.ruleset_diff.splitlines()
    if diff and diff[0].endswith(" (none)"):  # nothing of netsetup's there yet: all of it is new
        added = sum(1 for line in diff[3:] if line.startswith("+"))
        return [
            f"~ ruleset: netsetup's table inet {plan.table} installed ({added} lines; "
            "`netsetup plan --json` shows them, `netsetup render --firewall` too)"
        ]
    return ["~ ruleset:", *("    " + line for line in diff)]


def describe(plan: GatewayPlan) -> list[str]:
    """The plan as a reviewer reads it, one line per fact; no secret in it."""
    head = f"gateway {plan.gateway} ({plan.target}, {plan.interface})"
    if plan.in_sync and not plan.has_drift:
        return [f"{head}: in sync"]
    lines = [f"{head}:"]
    lines.extend(_peer_lines(plan))
    lines.extend(_drift_lines(plan))
    for unkeyed in plan.unkeyed:
        lines.append(f"? peer {unkeyed.name} has no preshared key: {unkeyed.fix}")
    lines.extend(f"~ interface: {change}" for change in plan.interface_changes)
    if plan.conf_file:
        lines.append(f"~ config file rewritten: {'; '.join(plan.conf_file)}")
    if plan.ruleset_diff:
        lines.extend(_ruleset_lines(plan))
    lines.extend(f"  note: {note}" for note in plan.notes)
    return lines
