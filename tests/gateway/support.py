"""A profile with provisioned peers under tmp_path, a gateway whose state is what the agent's
`read` would report, and the admins' state folders: what plan and apply tests build on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsetup.clock import FixedClock
from netsetup.fsutil import write_secret
from netsetup.gateway.plan import GatewayPlan
from netsetup.gateway.state import LiveState, parse_conf, parse_read
from netsetup.keys import generate_keypair, public_from_private
from netsetup.profile.edit import set_gateway_key
from netsetup.profile.model import Profile
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName, ProfileId
from netsetup.provision.service import provision, revoke
from netsetup.state import StateDir

DATA = Path(__file__).parent / "data"
LISTING = (DATA / "nft-list-table-fresh.txt").read_text()


def dump_of(conf_text: str) -> str:
    """`wg show <iface> dump` of an interface set up from `conf_text` (as wg would print it)."""
    conf = parse_conf(conf_text)
    assert conf.private_key is not None
    private = conf.private_key.reveal()
    lines = [f"{private}\t{public_from_private(conf.private_key)}\t{conf.listen_port}\toff"]
    for entry in conf.peers:
        peer = entry.peer
        psk = peer.preshared_key.reveal() if peer.preshared_key else "(none)"
        ips = ",".join(peer.allowed_ips) or "(none)"
        keepalive = str(peer.keepalive) if peer.keepalive else "off"
        lines.append(f"{peer.public_key}\t{psk}\t(none)\t{ips}\t0\t0\t0\t{keepalive}")
    return "\n".join(lines) + "\n"


@dataclass
class FakeGateway:
    """What a gateway holds, reported as the agent's `read` reports it."""

    conf: str | None
    live_conf: str | None = None  # what WireGuard runs, when it differs from the file
    ruleset_file: str | None = None
    listing: str | None = LISTING
    applied_listing: str | None = None
    up: bool = True
    pending: dict[str, Any] | None = None

    def answer(self) -> dict[str, Any]:
        running = self.live_conf or self.conf
        applied = None
        if self.applied_listing is not None and self.ruleset_file is not None:
            digest = hashlib.sha256(self.ruleset_file.encode()).hexdigest()
            applied = {"source_sha256": digest, "listing": self.applied_listing, "at": "then"}
        return {
            "ok": True,
            "interface": "wg0",
            "up": self.up,
            "dump": dump_of(running) if self.up and running else None,
            "conf": self.conf,
            "ruleset_file": self.ruleset_file,
            "listing": self.listing,
            "tables": ["inet netsetup_wg0"],
            "applied": applied,
            "pending": self.pending,
            "forwarding": {"ipv4": True, "ipv6": True},
        }

    def live(self) -> LiveState:
        return parse_read(self.answer(), where="test gateway")

    def take(self, plan: GatewayPlan) -> None:
        """What a successful apply leaves: the planned files, running and loaded."""
        assert plan.desired is not None
        self.conf = plan.desired.conf
        self.live_conf = None
        self.ruleset_file = plan.desired.ruleset
        self.applied_listing = self.listing = LISTING
        self.up = True


@dataclass
class World:
    """A profile, its gateway's key pair, a clock and one state folder per admin."""

    root: Path
    profile_dir: Path
    clock: FixedClock
    gateway_private: str = field(repr=False)
    admins: dict[str, StateDir] = field(default_factory=dict)

    def profile(self) -> Profile:
        return load_profile(self.profile_dir)

    def admin(self, name: str) -> StateDir:
        if name not in self.admins:
            self.admins[name] = StateDir(self.root / f"state-{name}")
        return self.admins[name]

    def provision(self, name: str, mode: str = "dedicated", *, by: str = "a", **kw: Any) -> None:
        provision(
            self.profile(), PeerName(name), mode, state=self.admin(by), clock=self.clock, **kw
        )

    def revoke(self, name: str, *, by: str = "a") -> None:
        revoke(self.profile(), PeerName(name), state=self.admin(by), clock=self.clock)

    def give_gateway_key(self, admin: str) -> None:
        """The gateway's private key in an admin's state folder (as `init` leaves it)."""
        state = self.admin(admin)
        path = state.gateway_key_path(ProfileId(self.profile().id))
        write_secret(path, self.gateway_private + "\n")

    def psk(self, admin: str, name: str) -> str:
        profile = self.profile()
        peer = next(p for p in _peers(profile) if p.name == name)
        key = self.admin(admin).load_psk(ProfileId(profile.id), PeerName(name), peer.public_key)
        assert key is not None
        return key.reveal()


def _peers(profile: Profile) -> list[Any]:
    from netsetup.profile.store import load_peers

    return load_peers(profile)


def make_world(acme: Path, root: Path) -> World:
    """acme-dental under tmp_path with a gateway key pair of its own (the private key only in
    the world, handed to an admin by `give_gateway_key`) and `ssh` to a port of 127.0.0.1 where
    nothing listens (tests that connect set their own)."""
    from datetime import UTC, datetime

    pair = generate_keypair()
    set_gateway_key(acme / "profile.toml", 0, "public_key", pair.public)
    set_gateway_key(acme / "profile.toml", 0, "ssh", "root@127.0.0.1:9")
    clock = FixedClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    return World(root, acme, clock, pair.private.reveal())
