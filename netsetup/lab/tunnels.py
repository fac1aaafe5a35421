"""The assistants' machines and their tunnels: extra client hosts, `wg-quick up/down` of the
configs netsetup wrote, handshakes, and `lab connect` (provision if needed, tunnel up, wait).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.lab import topology, wireguard
from netsetup.lab.admin import peer_name
from netsetup.lab.proc import LabError, in_ns
from netsetup.lab.record import ClientHost

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

CONNECT_TIMEOUT = 15.0  # seconds: wireguard-go's first handshake takes well under one


@dataclass(frozen=True)
class ConnectResult:
    """What `lab connect` did: which config went up where, and how long the handshake took."""

    name: str
    host: str
    interface: str
    config: Path
    provisioned: bool  # False: the peer's config from an earlier connect was reused
    handshake_s: float | None  # None: no handshake within `timeout` seconds
    timeout: float

    @property
    def ok(self) -> bool:
        return self.handshake_s is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "interface": self.interface,
            "config": str(self.config),
            "provisioned": self.provisioned,
            "handshake_s": round(self.handshake_s, 3) if self.handshake_s is not None else None,
        }


def client_config(lab: Lab, name: str) -> Path | None:
    """The client config an earlier `provision` in this lab wrote for peer `name`, if any."""
    directory = lab.run_dir / "clients" / peer_name(name)
    configs = sorted(directory.glob("*.conf")) if directory.is_dir() else []
    return configs[0] if configs else None


def connect(
    lab: Lab,
    name: str,
    mode: str = "dedicated",
    host: str = "home",
    *,
    allowed_ips: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> ConnectResult:
    """Bring peer `name`'s tunnel up on `host` (made if needed), provisioning the peer first
    unless this lab already did; then wait for the handshake."""
    peer_name(name)  # checked before a client host is added for it
    if host not in lab.record.clients:
        add_client_host(lab, host)
    config = client_config(lab, name)
    provisioned = config is None
    if config is None:
        config = lab.provision(name, mode)
    interface = tunnel_up(lab, config, host, allowed_ips=allowed_ips)
    seconds = wait_handshake(lab, host, timeout=timeout)
    return ConnectResult(name, host, interface, config, provisioned, seconds, timeout)


def add_client_host(lab: Lab, role: str) -> ClientHost:
    """Another assistant's machine behind the home router (its own LAN). Its interfaces are
    named by its index, not its (arbitrarily long) name."""
    record = lab.record
    if role in record.clients:
        return record.clients[role]
    topology.check_client_role(role)
    if record.spare_used >= len(lab.plan.spare_v4):
        raise LabError("no spare LAN left for another client host")
    index = 1 + max((c.index for c in record.clients.values()), default=0)
    client = ClientHost(role, lab.names.client_wg(index), index=index)
    check_interface_names(lab, client)
    lan = lab.plan.spare_v4[record.spare_used]
    record.spare_used += 1
    lab.save()
    # a half-built host is not recorded; `down` still removes its namespace by prefix
    topology.add_client_host(lab.names, lab.plan, role, index, lan, lab.run_dir)
    record.clients[role] = client
    lab.save()
    return client


def interface_names(lab: Lab, extra: ClientHost | None = None) -> list[tuple[str, str]]:
    """(namespace role, interface) for every interface the lab names; WireGuard ones under
    the role "wireguard" (their control sockets share one host-wide directory)."""
    clients = [*lab.record.clients.values(), *([extra] if extra else [])]
    names = [(end.role, end.ifname) for link in lab.plan.links for end in (link.a, link.b)]
    names += [("router", lab.names.client_lan(c.index)) for c in clients if c.index > 0]
    names += [(c.role, "eth0") for c in clients if c.index > 0]
    names += [("wireguard", lab.gateway_interface)]
    names += [("wireguard", c.interface) for c in clients]
    return names


def check_interface_names(lab: Lab, extra: ClientHost | None = None) -> None:
    """Two interfaces of the same name would silently share one (a WireGuard control socket,
    a veth end): refuse instead."""
    seen: set[tuple[str, str]] = set()
    for entry in interface_names(lab, extra):
        if entry in seen:
            raise LabError(f"lab {lab.prefix}: interface name {entry[1]!r} used twice")
        if len(entry[1]) > topology.IFNAME_MAX:
            raise LabError(f"lab {lab.prefix}: interface name {entry[1]!r} is too long")
        seen.add(entry)


def tunnel_up(lab: Lab, config: Path, host: str = "home", *, allowed_ips: str | None = None) -> str:
    """`wg-quick up` the config netsetup wrote, on `host`. Returns the interface name."""
    client = lab.record.clients[host]
    if client.config:
        tunnel_down(lab, host)
    installed = wireguard.install_config(config, lab.run_dir / "hosts" / host, client.interface)
    if allowed_ips is not None:
        wireguard.set_allowed_ips(installed, allowed_ips)
    client.config, client.peer = str(installed), config.parent.name
    lab.save()
    wireguard.up(lab.ns(host), installed)
    return client.interface


def tunnel_down(lab: Lab, host: str = "home") -> None:
    client = lab.record.clients[host]
    if client.config:
        wireguard.down(lab.ns(host), Path(client.config))
        Path(client.config).unlink(missing_ok=True)
    client.config = client.peer = None
    lab.save()


def latest_handshake(lab: Lab, host: str = "home") -> int:
    return wireguard.latest_handshake(lab.ns(host), lab.record.clients[host].interface)


def wait_handshake(
    lab: Lab, host: str = "home", timeout: float = 10.0, after: int = 0
) -> float | None:
    """Seconds until the tunnel on `host` completes a handshake (None: it did not)."""
    client = lab.record.clients[host]
    # a packet into the tunnel makes wireguard-go start the handshake at once
    gateway = str(lab.profile().network.gateway_address_v4)
    ping = ["ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W", "1", gateway]
    pinger = subprocess.Popen(
        in_ns(lab.ns(host), ping), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        return wireguard.wait_handshake(lab.ns(host), client.interface, timeout, after)
    finally:
        pinger.kill()
        pinger.wait()
