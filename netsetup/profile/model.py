"""Typed, immutable objects for a profile and its peers. No I/O here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from netsetup.profile.values import IPAddress, IPNetwork

MODES = ("dedicated", "agency")
PEER_STATUSES = ("active", "revoked")


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
    name: str
    host: IPAddress
    proto: str
    port: int

    def as_rule(self) -> AccessRule:
        return AccessRule(ipaddress.ip_network(self.host), self.proto, ((self.port, self.port),))


@dataclass(frozen=True)
class Gateway:
    endpoint_host: str | IPAddress
    endpoint_port: int
    public_key: str
    interface: str = "wg0"
    listen_port: int = 51820

    @property
    def endpoint(self) -> str:
        if isinstance(self.endpoint_host, ipaddress.IPv6Address):
            return f"[{self.endpoint_host}]:{self.endpoint_port}"
        return f"{self.endpoint_host}:{self.endpoint_port}"


@dataclass(frozen=True)
class Network:
    tunnel_v4: ipaddress.IPv4Network
    tunnel_v6: ipaddress.IPv6Network | None = None
    gateway_v4: ipaddress.IPv4Address | None = None
    gateway_v6: ipaddress.IPv6Address | None = None
    mtu: int = 1380
    keepalive: int = 25
    quarantine_days: int = 30
    client_interface: str = "wg-company"

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
    servers: tuple[IPAddress, ...] = ()
    search: tuple[str, ...] = ()
    records: tuple[tuple[str, IPAddress], ...] = ()


@dataclass(frozen=True)
class Voip:
    sip_server: IPAddress
    sip_domain: str | None = None
    transports: tuple[str, ...] = ("udp", "tcp", "tls")
    sip_port: int = 5060
    tls_port: int = 5061
    rtp_ports: tuple[int, int] = (10000, 20000)
    media: tuple[IPNetwork, ...] = ()

    @property
    def media_networks(self) -> tuple[IPNetwork, ...]:
        return self.media or (ipaddress.ip_network(self.sip_server),)


@dataclass(frozen=True)
class Target:
    name: str
    host: str | IPAddress
    port: int | None = None
    kind: str = "tcp"  # tcp | ssh | ping


@dataclass(frozen=True)
class Diagnose:
    responder: tuple[str | IPAddress, int] | None = None
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class Profile:
    id: str
    directory: Path
    company: str
    gateway: Gateway
    network: Network
    dns: Dns = field(default_factory=Dns)
    dedicated: tuple[AccessRule, ...] = ()
    agency: tuple[AccessRule, ...] = ()
    agency_expires: timedelta = timedelta(days=30)
    portals: tuple[Portal, ...] = ()
    voip: Voip | None = None
    diagnose: Diagnose = field(default_factory=Diagnose)
    contact: str | None = None

    @property
    def peers_dir(self) -> Path:
        return self.directory / "peers"

    @property
    def profile_file(self) -> Path:
        return self.directory / "profile.toml"

    def access_for(self, mode: str) -> tuple[AccessRule, ...]:
        if mode == "dedicated":
            return self.dedicated
        return self.agency or tuple(p.as_rule() for p in self.portals)


@dataclass(frozen=True)
class Peer:
    name: str
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

    def is_expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def is_active(self, now: datetime) -> bool:
        return self.status == "active" and not self.is_expired(now)

    def state(self, now: datetime) -> str:
        if self.status == "revoked":
            return "revoked"
        return "expired" if self.is_expired(now) else "active"
