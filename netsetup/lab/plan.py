"""Which address goes where: the lab's topology computed from a profile, before anything is built.

Every address is a documentation or benchmarking address (RFC 5737, RFC 2544, RFC 3849). The
company's own hosts get exactly the addresses the profile names; the lab's links (the internet,
the assistant's home) get free /24s that overlap nothing the profile uses.

    home ── router (NAT) ── internet ── gateway ── office
    (assistant)                         (wg, nft)  (SIP, SSH, DNS, files)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netsetup.errors import InputError
from netsetup.profile.model import Profile
from netsetup.profile.values import IPAddress, IPNetwork

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network

# public-looking ranges first (the internet links), then the benchmarking range in /24s
_PUBLIC_CANDIDATES = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24")]
_BENCH_CANDIDATES = [IPv4Net(f"198.19.{i}.0/24") for i in range(1, 255)]
_V6_TRANSIT = [IPv6Net(f"2001:db8:fff{i:x}::/64") for i in range(16)]

ROLES = ("internet", "gateway", "office", "router", "home")


@dataclass(frozen=True)
class LinkEnd:
    role: str
    ifname: str
    v4: ipaddress.IPv4Interface
    v6: ipaddress.IPv6Interface | None = None


@dataclass(frozen=True)
class Link:
    a: LinkEnd
    b: LinkEnd


@dataclass(frozen=True)
class OfficeService:
    """A TCP port that answers in the office (the file server, a portal, an SSH target)."""

    name: str
    host: IPAddress
    port: int


@dataclass
class LabPlan:
    """The addresses of one lab. Serialisable, so `down` and `status` work from another process."""

    gateway_wan: LinkEnd
    internet_gw: LinkEnd
    internet_router: LinkEnd
    router_wan: LinkEnd
    router_lan: LinkEnd
    home_lan: LinkEnd
    gateway_lan: LinkEnd
    office_lan: LinkEnd
    office_hosts: list[IPAddress]
    company_networks: list[IPNetwork]
    endpoint_name: str | None
    endpoint_port: int
    listen_port: int
    dns_records: list[tuple[str, IPAddress]]
    sip_server: IPAddress | None
    dns_servers: list[IPAddress] = field(default_factory=list)
    tcp_services: list[OfficeService] = field(default_factory=list)
    ssh_ports: list[int] = field(default_factory=lambda: [22])
    spare_v4: list[IPv4Net] = field(default_factory=list)

    @property
    def endpoint_address(self) -> ipaddress.IPv4Address:
        return self.gateway_wan.v4.ip

    @property
    def links(self) -> list[Link]:
        return [
            Link(self.internet_gw, self.gateway_wan),
            Link(self.internet_router, self.router_wan),
            Link(self.router_lan, self.home_lan),
            Link(self.gateway_lan, self.office_lan),
        ]

    def to_dict(self) -> dict[str, Any]:
        def end(e: LinkEnd) -> dict[str, Any]:
            return {
                "role": e.role,
                "ifname": e.ifname,
                "v4": str(e.v4),
                "v6": str(e.v6) if e.v6 else None,
            }

        return {
            "gateway_wan": end(self.gateway_wan),
            "internet_gw": end(self.internet_gw),
            "internet_router": end(self.internet_router),
            "router_wan": end(self.router_wan),
            "router_lan": end(self.router_lan),
            "home_lan": end(self.home_lan),
            "gateway_lan": end(self.gateway_lan),
            "office_lan": end(self.office_lan),
            "office_hosts": [str(a) for a in self.office_hosts],
            "company_networks": [str(n) for n in self.company_networks],
            "endpoint_name": self.endpoint_name,
            "endpoint_port": self.endpoint_port,
            "listen_port": self.listen_port,
            "dns_records": [[n, str(a)] for n, a in self.dns_records],
            "sip_server": str(self.sip_server) if self.sip_server else None,
            "dns_servers": [str(a) for a in self.dns_servers],
            "tcp_services": [[s.name, str(s.host), s.port] for s in self.tcp_services],
            "ssh_ports": self.ssh_ports,
            "spare_v4": [str(n) for n in self.spare_v4],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabPlan:
        def end(d: dict[str, Any]) -> LinkEnd:
            return LinkEnd(
                d["role"],
                d["ifname"],
                ipaddress.IPv4Interface(d["v4"]),
                ipaddress.IPv6Interface(d["v6"]) if d["v6"] else None,
            )

        return cls(
            gateway_wan=end(data["gateway_wan"]),
            internet_gw=end(data["internet_gw"]),
            internet_router=end(data["internet_router"]),
            router_wan=end(data["router_wan"]),
            router_lan=end(data["router_lan"]),
            home_lan=end(data["home_lan"]),
            gateway_lan=end(data["gateway_lan"]),
            office_lan=end(data["office_lan"]),
            office_hosts=[ipaddress.ip_address(a) for a in data["office_hosts"]],
            company_networks=[ipaddress.ip_network(n) for n in data["company_networks"]],
            endpoint_name=data["endpoint_name"],
            endpoint_port=data["endpoint_port"],
            listen_port=data["listen_port"],
            dns_records=[(n, ipaddress.ip_address(a)) for n, a in data["dns_records"]],
            sip_server=ipaddress.ip_address(data["sip_server"]) if data["sip_server"] else None,
            dns_servers=[ipaddress.ip_address(a) for a in data["dns_servers"]],
            tcp_services=[
                OfficeService(n, ipaddress.ip_address(h), p) for n, h, p in data["tcp_services"]
            ],
            ssh_ports=list(data["ssh_ports"]),
            spare_v4=[IPv4Net(n) for n in data["spare_v4"]],
        )


def _host_of(profile: Profile, host: str | IPAddress) -> IPAddress | None:
    if not isinstance(host, str):
        return host
    for name, address in profile.dns.records:
        if name == host:
            return address
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def company_hosts(profile: Profile) -> list[IPAddress]:
    """Every company address the profile names: these answer in the lab's office."""
    hosts: list[IPAddress] = [*profile.dns.servers, *(a for _, a in profile.dns.records)]
    if profile.voip is not None:
        hosts.append(profile.voip.sip_server)
    hosts.extend(p.host for p in profile.portals)
    if profile.diagnose.responder is not None:
        responder = _host_of(profile, profile.diagnose.responder[0])
        if responder is not None:
            hosts.append(responder)
    for target in profile.diagnose.targets:
        address = _host_of(profile, target.host)
        if address is not None:
            hosts.append(address)
    # a v6 destination network with no named host still gets one host, so v6 is testable
    for rule in (*profile.dedicated, *profile.agency):
        if rule.network.version == 6 and rule.network.num_addresses > 1:
            hosts.append(rule.network.network_address + 1)
    tunnels: list[IPNetwork] = [profile.network.tunnel_v4]
    if profile.network.tunnel_v6 is not None:
        tunnels.append(profile.network.tunnel_v6)
    unique: list[IPAddress] = []
    for host in hosts:
        if host not in unique and not any(host in t for t in tunnels):
            unique.append(host)
    return sorted(unique, key=lambda a: (a.version, int(a)))


def company_networks(profile: Profile, hosts: list[IPAddress]) -> list[IPNetwork]:
    networks: list[IPNetwork] = [r.network for r in (*profile.dedicated, *profile.agency)]
    networks.extend(p.as_rule().network for p in profile.portals)
    if profile.voip is not None:
        networks.extend(profile.voip.media_networks)
    networks.extend(ipaddress.ip_network(h) for h in hosts)
    v4 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, IPv4Net))
    v6 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, IPv6Net))
    return [*v4, *v6]


def _overlaps(candidate: IPNetwork, used: list[IPNetwork]) -> bool:
    return any(candidate.version == u.version and candidate.overlaps(u) for u in used)


def _take(candidates: list[IPv4Net], used: list[IPNetwork], what: str) -> IPv4Net:
    for candidate in candidates:
        if not _overlaps(candidate, used):
            used.append(candidate)
            return candidate
    raise InputError(f"no free documentation /24 left for the lab's {what}")


def _v4(net: IPv4Net, host: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{net.network_address + host}/{net.prefixlen}")


def _gateway_wan(
    profile: Profile, used: list[IPNetwork]
) -> tuple[IPv4Net, ipaddress.IPv4Address, str | None]:
    """The gateway's internet /24, its address there, and the endpoint's name (if it has one)."""
    endpoint = profile.gateway.endpoint_host
    if isinstance(endpoint, str):
        wan_net = _take([*_PUBLIC_CANDIDATES, *_BENCH_CANDIDATES], used, "gateway WAN")  # type: ignore[list-item]
        return wan_net, wan_net.network_address + 10, endpoint
    if not isinstance(endpoint, ipaddress.IPv4Address):
        raise InputError("the lab supports IPv4 gateway endpoints (or a name) only")
    wan_net = IPv4Net(f"{endpoint}/24", strict=False)
    if _overlaps(wan_net, used):
        raise InputError(
            f"the gateway endpoint {endpoint} lies in the company or tunnel network: "
            "the lab can't put the internet there"
        )
    used.append(wan_net)
    return wan_net, endpoint, None


def _office_v6(
    profile: Profile, hosts: list[IPAddress], used: list[IPNetwork]
) -> tuple[ipaddress.IPv6Interface | None, ipaddress.IPv6Interface | None]:
    """The gateway's and the office's v6 addresses on their link, when the company has v6."""
    has_v6 = any(h.version == 6 for h in hosts) or profile.network.tunnel_v6 is not None
    transit6 = next((n for n in _V6_TRANSIT if not _overlaps(n, used)), None)
    if not has_v6 or transit6 is None:
        return None, None
    return (
        ipaddress.IPv6Interface(f"{transit6.network_address + 1}/64"),
        ipaddress.IPv6Interface(f"{transit6.network_address + 2}/64"),
    )


def _target_services(profile: Profile) -> tuple[list[OfficeService], set[int]]:
    """TCP services and SSH ports the profile's diagnose targets expect in the office."""
    tcp_services: list[OfficeService] = []
    ssh_ports = {22}
    for target in profile.diagnose.targets:
        address = _host_of(profile, target.host)
        if address is None or target.port is None:
            continue
        if target.kind == "ssh":
            ssh_ports.add(target.port)
        elif target.kind == "tcp":
            tcp_services.append(OfficeService(target.name, address, target.port))
    return tcp_services, ssh_ports


def _tcp_services(profile: Profile) -> tuple[list[OfficeService], list[int]]:
    """Every TCP port that answers in the office (targets, portals, single agency hosts), and
    the SSH ports."""
    tcp_services, ssh_ports = _target_services(profile)
    for portal in profile.portals:
        if portal.proto == "tcp":
            tcp_services.append(OfficeService(portal.name, portal.host, portal.port))
    for rule in profile.access_for("agency"):
        if rule.proto != "tcp" or rule.network.num_addresses != 1:
            continue
        for low, _ in rule.ports:
            service = OfficeService("agency", rule.network.network_address, low)
            if all((s.host, s.port) != (service.host, service.port) for s in tcp_services):
                tcp_services.append(service)
    return tcp_services, sorted(ssh_ports)


def plan_lab(profile: Profile) -> LabPlan:
    """Lay out the lab for `profile`. Raises InputError when the profile can't be labbed."""
    hosts = company_hosts(profile)
    networks = company_networks(profile, hosts)
    used: list[IPNetwork] = [*networks, profile.network.tunnel_v4]
    if profile.network.tunnel_v6 is not None:
        used.append(profile.network.tunnel_v6)

    wan_net, gateway_ip, endpoint_name = _gateway_wan(profile, used)
    isp_host = 1 if int(gateway_ip) - int(wan_net.network_address) != 1 else 254
    home_wan = _take([*_PUBLIC_CANDIDATES, *_BENCH_CANDIDATES], used, "home WAN")  # type: ignore[list-item]
    home_lan = _take(_BENCH_CANDIDATES, used, "home LAN")
    transit = _take(_BENCH_CANDIDATES, used, "gateway-office link")
    spare = [_take(_BENCH_CANDIDATES, used, "extra home LANs") for _ in range(4)]
    v6_gw, v6_office = _office_v6(profile, hosts, used)
    tcp_services, ssh_ports = _tcp_services(profile)

    return LabPlan(
        gateway_wan=LinkEnd("gateway", "wan", ipaddress.IPv4Interface(f"{gateway_ip}/24")),
        internet_gw=LinkEnd("internet", "to-gateway", _v4(wan_net, isp_host)),
        internet_router=LinkEnd("internet", "to-home", _v4(home_wan, 1)),
        router_wan=LinkEnd("router", "wan", _v4(home_wan, 2)),
        router_lan=LinkEnd("router", "lan", _v4(home_lan, 1)),
        home_lan=LinkEnd("home", "eth0", _v4(home_lan, 100)),
        gateway_lan=LinkEnd("gateway", "lan", _v4(transit, 1), v6_gw),
        office_lan=LinkEnd("office", "lan", _v4(transit, 2), v6_office),
        office_hosts=hosts,
        company_networks=networks,
        endpoint_name=endpoint_name,
        endpoint_port=profile.gateway.endpoint_port,
        listen_port=profile.gateway.listen_port,
        dns_records=list(profile.dns.records),
        sip_server=profile.voip.sip_server if profile.voip else None,
        dns_servers=list(profile.dns.servers),
        tcp_services=tcp_services,
        ssh_ports=ssh_ports,
        spare_v4=spare,
    )
