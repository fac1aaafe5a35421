"""Typed, immutable objects for a profile and its peers. No I/O here.

Every dataclass has a docstring: without one, `@dataclass` builds a default docstring with
`inspect.signature`, at import, on every command.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path

from netsetup.profile.values import IPAddress, IPNetwork, PeerName, ProfileId, format_duration


class AccessMode(enum.StrEnum):
    """How an assistant works, which decides what they reach (`access.<mode>` in a profile).

    Member names equal their values so that a Typer option over this enum lists `dedicated` and
    `agency`, the words written in profiles and peer files.
    """

    dedicated = "dedicated"  # works for one company: its internal network
    agency = "agency"  # placed by a service firm: the portal and the phones, expiring


class PeerState(enum.StrEnum):
    """Where a peer stands at a moment (`Peer.state(now)`): what `list --state` filters on."""

    active = "active"
    expired = "expired"
    revoked = "revoked"


MODES: tuple[str, ...] = tuple(AccessMode)  # the same facts, for code that wants plain strings
PEER_STATUSES = ("active", "revoked")


# eq=False: there is one instance and nothing compares it; each method `@dataclass` generates is
# compiled at import, on every command.
@dataclass(frozen=True, eq=False)
class ProfileDefaults:
    """What a profile gets for a key it leaves out. The parser, the model and the docs read these
    values; nothing else writes them down. `key` is the path the docs print."""

    interface: str = field(default="wg0", metadata={"key": "gateway.interface"})
    mtu: int = field(default=1380, metadata={"key": "network.mtu"})
    keepalive: int = field(default=25, metadata={"key": "network.keepalive"})
    quarantine_days: int = field(default=30, metadata={"key": "network.quarantine_days"})
    agency_expires: timedelta = field(
        default=timedelta(days=30), metadata={"key": "access.agency_expires"}
    )
    portal_proto: str = field(default="tcp", metadata={"key": "portal.proto"})
    transports: tuple[str, ...] = field(
        default=("udp", "tcp", "tls"), metadata={"key": "voip.transports"}
    )
    sip_port: int = field(default=5060, metadata={"key": "voip.sip_port"})
    tls_port: int = field(default=5061, metadata={"key": "voip.tls_port"})
    rtp_ports: tuple[int, int] = field(default=(10000, 20000), metadata={"key": "voip.rtp_ports"})
    codec: str = field(default="g711", metadata={"key": "voip.codec"})
    plc: bool = field(default=True, metadata={"key": "voip.plc"})
    sip_mirror: bool = field(default=False, metadata={"key": "diagnose.sip_mirror"})
    target_kind: str = field(default="tcp", metadata={"key": "diagnose.targets.kind"})
    ssh_port: int = field(default=22, metadata={"key": "diagnose.targets.port", "when": "kind ssh"})
    https_port: int = field(
        default=443, metadata={"key": "diagnose.targets.port", "when": "kind https"}
    )
    rdp_port: int = field(
        default=3389, metadata={"key": "diagnose.targets.port", "when": "kind rdp"}
    )


DEFAULTS = ProfileDefaults()

# Defaults that follow from other values of the profile rather than being constants.
DERIVED_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("gateway.listen_port", "the port of gateway.endpoint"),
    ("gateway.witness_port", "gateway.listen_port + 1 (0 turns the witness off)"),
    ("network.gateway_v4", "the first address of network.tunnel_v4"),
    ("network.gateway_v6", "the first address of network.tunnel_v6"),
    ("network.client_interface", '"wg-<profile id>", cut to 15 characters'),
)

# Agency access is meant to end: a longer default belongs to a dedicated peer or to --expires.
MAX_AGENCY_EXPIRES = timedelta(days=365)


def default_client_interface(profile_id: str) -> str:
    return ("wg-" + profile_id)[:15].rstrip("-.")


def describe_defaults() -> list[str]:
    """Every default as one line (`network.mtu = 1380`, `gateway.listen_port: the port of ...`),
    for the README and `netsetup rule`: the docs read the values, they do not repeat them."""
    constant = [
        f"{f.metadata['key']} = {_as_toml(getattr(DEFAULTS, f.name))}"
        + (f" ({f.metadata['when']})" if "when" in f.metadata else "")
        for f in fields(DEFAULTS)
    ]
    return constant + [f"{key}: {how}" for key, how in DERIVED_DEFAULTS]


def _as_toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return f'"{format_duration(value)}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(p, int) for p in value):
        return f'"{value[0]}-{value[1]}"'  # a port range, written as in rtp_ports
    if isinstance(value, tuple):
        return "[" + ", ".join(_as_toml(item) for item in value) + "]"
    return str(value)


@dataclass(frozen=True)
class AccessRule:
    """A destination an assistant may reach: a network, optionally one protocol and some ports."""

    network: IPNetwork
    proto: str | None = None  # "tcp", "udp" or None for any
    ports: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        if not self.proto:
            return str(self.network)
        ports = ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in self.ports)
        return f"{self.network} {self.proto}/{ports}" if ports else f"{self.network} {self.proto}"


@dataclass(frozen=True)
class Portal:
    """A web portal an agency assistant reaches (`[[portals]]`): one host, protocol and port."""

    name: str
    host: IPAddress
    proto: str
    port: int

    def as_rule(self) -> AccessRule:
        return AccessRule(ipaddress.ip_network(self.host), self.proto, ((self.port, self.port),))


@dataclass(frozen=True)
class SshTarget:
    """How netsetup logs in to a gateway (`[gateway] ssh = "admin@host:22"`)."""

    user: str
    host: str | IPAddress
    port: int = 22

    def __str__(self) -> str:
        if isinstance(self.host, ipaddress.IPv6Address):
            return f"{self.user}@[{self.host}]:{self.port}"
        return f"{self.user}@{self.host}:{self.port}"


# the name of the gateway of a profile written in the single `[gateway]` form
DEFAULT_GATEWAY_NAME = "gateway"


@dataclass(frozen=True)
class Gateway:
    """One WireGuard gateway of the company (`[gateway]`, or one of several `[[gateway]]` sites):
    where peers connect, its public key, and how netsetup reaches it over SSH."""

    endpoint_host: str | IPAddress
    endpoint_port: int
    public_key: str
    listen_port: int  # by default the endpoint's port (DERIVED_DEFAULTS)
    interface: str = DEFAULTS.interface
    # the diagnose witness's UDP port beside WireGuard's (DERIVED_DEFAULTS); 0: no witness
    witness_port: int = 0
    name: str = DEFAULT_GATEWAY_NAME  # `name` of a `[[gateway]]` site
    ssh: SshTarget | None = None  # how plan/apply/bootstrap log in
    host_key: str | None = None  # its SSH host key, pinned: "SHA256:<base64>"
    # the only sources the rendered ruleset lets reach the gateway's SSH; () leaves SSH alone
    admin_from: tuple[IPNetwork, ...] = ()
    # a `[[gateway]]` site's own tunnel subnets; None: `[network]`'s (the first site's)
    tunnel_v4: ipaddress.IPv4Network | None = None
    tunnel_v6: ipaddress.IPv6Network | None = None

    @property
    def endpoint(self) -> str:
        if isinstance(self.endpoint_host, ipaddress.IPv6Address):
            return f"[{self.endpoint_host}]:{self.endpoint_port}"
        return f"{self.endpoint_host}:{self.endpoint_port}"


@dataclass(frozen=True)
class Network:
    """The tunnel's address space and link settings (`[network]`)."""

    tunnel_v4: ipaddress.IPv4Network
    client_interface: str  # by default derived from the profile id (DERIVED_DEFAULTS)
    tunnel_v6: ipaddress.IPv6Network | None = None
    gateway_v4: ipaddress.IPv4Address | None = None
    gateway_v6: ipaddress.IPv6Address | None = None
    mtu: int = DEFAULTS.mtu
    keepalive: int = DEFAULTS.keepalive
    quarantine_days: int = DEFAULTS.quarantine_days

    @property
    def gateway_address_v4(self) -> ipaddress.IPv4Address:
        return self.gateway_v4 or self.tunnel_v4.network_address + 1

    @property
    def gateway_address_v6(self) -> ipaddress.IPv6Address | None:
        if self.tunnel_v6 is None:
            return None
        return self.gateway_v6 or self.tunnel_v6.network_address + 1


@dataclass(frozen=True)
class Dns:
    """The resolvers, search domains and local records handed to peers (`[dns]`)."""

    servers: tuple[IPAddress, ...] = ()
    search: tuple[str, ...] = ()
    records: tuple[tuple[str, IPAddress], ...] = ()


@dataclass(frozen=True)
class Voip:
    """The phone system an assistant reaches (`[voip]`): SIP server, transports, media."""

    sip_server: IPAddress
    sip_domain: str | None = None
    transports: tuple[str, ...] = DEFAULTS.transports
    sip_port: int = DEFAULTS.sip_port
    tls_port: int = DEFAULTS.tls_port
    rtp_ports: tuple[int, int] = DEFAULTS.rtp_ports
    media: tuple[IPNetwork, ...] = ()
    codec: str = DEFAULTS.codec  # for the call-quality estimate: one of VOICE_CODECS
    plc: bool = DEFAULTS.plc  # whether the phones conceal lost packets (G.711 Appendix I)

    @property
    def media_networks(self) -> tuple[IPNetwork, ...]:
        return self.media or (ipaddress.ip_network(self.sip_server),)


TARGET_KINDS = ("tcp", "https", "rdp", "ssh")
# Codecs whose E-model values (Ie, Bpl) ITU-T G.113 Appendix I publishes; the call-quality
# estimate has no honest numbers for others (Opus and G.722 are not in it).
VOICE_CODECS = ("g711", "g729")


@dataclass(frozen=True)
class Target:
    """One host `diagnose` checks (`[[diagnose.targets]]`)."""

    name: str
    host: str | IPAddress
    port: int | None = None
    kind: str = DEFAULTS.target_kind  # one of TARGET_KINDS
    host_key: str | None = None  # kind ssh: the pinned host key, "SHA256:<base64>"


@dataclass(frozen=True)
class Diagnose:
    """What `diagnose` checks (`[diagnose]`): an optional responder and targets."""

    responder: tuple[str | IPAddress, int] | None = None
    targets: tuple[Target, ...] = ()
    sip_mirror: bool = DEFAULTS.sip_mirror  # the witness mirrors SIP on UDP+TCP 5060 too


@dataclass(frozen=True)
class Profile:
    """One company's profile (`profiles/<id>/profile.toml`) as read and checked."""

    id: ProfileId
    directory: Path
    company: str
    gateway: Gateway
    network: Network
    dns: Dns = field(default_factory=Dns)
    dedicated: tuple[AccessRule, ...] = ()
    agency: tuple[AccessRule, ...] = ()
    agency_expires: timedelta = DEFAULTS.agency_expires
    portals: tuple[Portal, ...] = ()
    voip: Voip | None = None
    diagnose: Diagnose = field(default_factory=Diagnose)
    contact: str | None = None
    # every gateway (site) in the order of the file; () in the single `[gateway]` form, where
    # `gateway` is the only one. In the `[[gateway]]` form `gateway` is the first.
    sites: tuple[Gateway, ...] = ()

    @property
    def gateways(self) -> tuple[Gateway, ...]:
        return self.sites or (self.gateway,)

    @property
    def multi_site(self) -> bool:
        return len(self.gateways) > 1

    def gateway_named(self, name: str | None) -> Gateway:
        """The gateway called `name` (None: the first). KeyError when there is none."""
        if name is None:
            return self.gateways[0]
        for gateway in self.gateways:
            if gateway.name == name:
                return gateway
        raise KeyError(name)

    def site(self, name: str | None) -> Profile:
        """This profile as one gateway sees it: `gateway` is that site and `network` carries its
        tunnel subnets. Rendering, the firewall, allocation and client configs take this view,
        with the peers of that site only (`peers_of`)."""
        from dataclasses import replace

        gateway = self.gateway_named(name)
        network = self.network
        if gateway.tunnel_v4 is not None:
            network = replace(
                network,
                tunnel_v4=gateway.tunnel_v4,
                tunnel_v6=gateway.tunnel_v6,
                gateway_v4=None,
                gateway_v6=None,
            )
        return replace(self, gateway=gateway, network=network)

    def peers_of(self, gateway: Gateway, peers: Sequence[Peer]) -> list[Peer]:
        """The peers that connect to `gateway` (a peer without `gateway` uses the first)."""
        first = self.gateways[0].name
        return [p for p in peers if (p.gateway or first) == gateway.name]

    @property
    def mirrors_sip(self) -> bool:
        """Whether the gateway witness mirrors SIP on 5060: `[diagnose] sip_mirror`, for a
        company with phones (`[voip]`); without them no check would ever use it."""
        return self.diagnose.sip_mirror and self.voip is not None

    @property
    def peers_dir(self) -> Path:
        return self.directory / "peers"

    @property
    def profile_file(self) -> Path:
        return self.directory / "profile.toml"

    def access_for(self, mode: AccessMode | str) -> tuple[AccessRule, ...]:
        if mode == AccessMode.dedicated:
            return self.dedicated
        return self.agency or tuple(p.as_rule() for p in self.portals)


@dataclass(frozen=True)
class Peer:
    """One assistant's peer file (`peers/<name>.toml`): public facts only, never a secret."""

    name: PeerName
    mode: str
    public_key: str
    address_v4: ipaddress.IPv4Address
    address_v6: ipaddress.IPv6Address | None
    created: datetime
    expires: datetime | None = None
    status: str = "active"
    revoked: datetime | None = None
    key_origin: str = "generated"  # or "client": the assistant kept their own private key
    rotated: datetime | None = None
    gateway: str | None = None  # the `name` of its `[[gateway]]` site; None: the first

    def is_expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def is_active(self, now: datetime) -> bool:
        return self.status == "active" and not self.is_expired(now)

    def state(self, now: datetime) -> PeerState:
        if self.status == "revoked":
            return PeerState.revoked
        return PeerState.expired if self.is_expired(now) else PeerState.active
