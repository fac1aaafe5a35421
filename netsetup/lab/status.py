"""What a lab looks like right now: hosts, gateway, services, tunnels and faults.

`lab_status` looks (namespaces, interfaces, processes); the result is data that the CLI renders
as text or as the `netsetup.lab.status/1` document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netsetup.errors import NetsetupError
from netsetup.lab import topology, wireguard

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab


@dataclass(frozen=True)
class GatewayStatus:
    endpoint: str  # what clients dial: name (or address) and port
    address: str  # the gateway's address on the lab's internet
    interface: str
    up: bool
    tunnel_address: str | None  # the gateway in the tunnel (None: the lab has no profile yet)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "address": self.address,
            "interface": self.interface,
            "up": self.up,
            "tunnel_address": self.tunnel_address,
        }


@dataclass(frozen=True)
class ServiceStatus:
    host: str
    running: bool
    pid: int

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "running": self.running, "pid": self.pid}


@dataclass(frozen=True)
class TunnelStatus:
    interface: str
    peer: str | None
    up: bool
    latest_handshake: int  # unix time, 0: never

    def to_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "peer": self.peer,
            "up": self.up,
            "latest_handshake": self.latest_handshake,
        }


@dataclass(frozen=True)
class FaultStatus:
    id: str
    kind: str
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "what": self.what}


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    run_dir: str
    profile: str  # the profile the lab was built from
    lab_profile: str  # the lab's own copy
    state_dir: str
    ready: bool
    hosts: dict[str, bool]  # host -> its namespace exists
    gateway: GatewayStatus
    services: dict[str, ServiceStatus] = field(default_factory=dict)
    tunnels: dict[str, TunnelStatus] = field(default_factory=dict)
    faults: list[FaultStatus] = field(default_factory=list)
    addresses: dict[str, Any] = field(default_factory=dict)  # the lab's plan

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "run_dir": self.run_dir,
            "profile": self.profile,
            "lab_profile": self.lab_profile,
            "state_dir": self.state_dir,
            "ready": self.ready,
            "hosts": dict(self.hosts),
            "gateway": self.gateway.to_dict(),
            "services": {k: v.to_dict() for k, v in self.services.items()},
            "tunnels": {k: v.to_dict() for k, v in self.tunnels.items()},
            "faults": [f.to_dict() for f in self.faults],
            "addresses": self.addresses,
        }


def lab_status(lab: Lab) -> LabStatus:
    namespaces = set(topology.existing_namespaces())
    hosts = {h: lab.ns(h) in namespaces for h in lab.hosts()}
    record = lab.record
    return LabStatus(
        prefix=lab.prefix,
        run_dir=str(lab.run_dir),
        profile=record.source_profile,
        lab_profile=str(lab.profile_dir),
        state_dir=str(lab.state_dir),
        ready=record.ready,
        hosts=hosts,
        gateway=_gateway(lab, hosts["gateway"]),
        services={
            name: ServiceStatus(s.namespace.removeprefix(lab.prefix + "-"), s.running, s.pid)
            for name, s in record.services.items()
        },
        tunnels={role: _tunnel(lab, role, hosts.get(role, False)) for role in record.clients},
        faults=[FaultStatus(f.id, f.kind, f.describe()) for f in record.faults],
        addresses=lab.plan.to_dict(),
    )


def _gateway(lab: Lab, namespace_exists: bool) -> GatewayStatus:
    plan = lab.plan
    interface = lab.gateway_interface
    return GatewayStatus(
        endpoint=f"{plan.endpoint_name or plan.endpoint_address}:{plan.endpoint_port}",
        address=str(plan.endpoint_address),
        interface=interface,
        up=namespace_exists and wireguard.interface_exists(lab.ns("gateway"), interface),
        tunnel_address=_tunnel_address(lab),
    )


def _tunnel_address(lab: Lab) -> str | None:
    try:
        return str(lab.profile().network.gateway_address_v4)
    except NetsetupError:  # a lab still (or only half) being built has no profile copy yet
        return None


def _tunnel(lab: Lab, role: str, namespace_exists: bool) -> TunnelStatus:
    client = lab.record.clients[role]
    configured = bool(client.config)
    up = configured and namespace_exists
    up = up and wireguard.interface_exists(lab.ns(role), client.interface)
    handshake = lab.latest_handshake(role) if configured else 0
    return TunnelStatus(client.interface, client.peer, up, handshake)
