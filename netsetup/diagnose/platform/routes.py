"""The home router: the next hop this machine sends through toward a destination (the tunnel's
Endpoint), read without command-line tools.

- Linux: the main routing table in /proc/net/route and /proc/net/ipv6_route (longest prefix; the
  tunnel's own routes live in wg-quick's table, so the main table still names the home router);
- Windows: GetBestRoute (iphlpapi) through ctypes, IPv4;
- macOS: the routing table's gateway routes from sysctl (NET_RT_FLAGS, RTF_GATEWAY) through
  ctypes, IPv4 (the messages of <net/route.h>: rt_msghdr, then the sockaddrs it announces);
- elsewhere: not known, and the check that asked says so.

Every function returns None with a reason rather than raising: a missing first hop makes
`lan.gateway` end `unknown` or `skip`, never fail.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PROC_ROUTE = Path("/proc/net/route")
PROC_ROUTE6 = Path("/proc/net/ipv6_route")
_RTF_UP = 0x1
_RTF_GATEWAY = 0x2


@dataclass(frozen=True)
class NextHop:
    """The first router toward a destination, or None with the reason it is not known."""

    router: IPAddress | None
    reason: str = ""


@dataclass(frozen=True)
class _Route:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: IPAddress | None  # None: directly connected
    metric: int


def parse_proc_route(text: str) -> list[_Route]:
    """/proc/net/route: hexadecimal little-endian IPv4 addresses, one route a line."""
    routes: list[_Route] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest, gateway, flags = (int(fields[i], 16) for i in (1, 2, 3))
            metric, mask = int(fields[6]), int(fields[7], 16)
        except ValueError:
            continue
        if not flags & _RTF_UP:
            continue
        as_ip = ipaddress.IPv4Address
        network = ipaddress.IPv4Network(
            (as_ip(struct.pack("<I", dest)), str(as_ip(struct.pack("<I", mask)))), strict=False
        )
        hop = as_ip(struct.pack("<I", gateway)) if flags & _RTF_GATEWAY else None
        routes.append(_Route(network, hop, metric))
    return routes


def parse_proc_route6(text: str) -> list[_Route]:
    """/proc/net/ipv6_route: dest plen src splen nexthop metric ref use flags dev (hex)."""
    routes: list[_Route] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            plen, flags = int(fields[1], 16), int(fields[8], 16)
            hop = ipaddress.IPv6Address(bytes.fromhex(fields[4]))
            metric = int(fields[5], 16)
        except ValueError:
            continue
        if not flags & _RTF_UP or fields[9] == "lo":
            continue
        gateway = hop if flags & _RTF_GATEWAY and not hop.is_unspecified else None
        routes.append(_Route(ipaddress.IPv6Network((dest, plen), strict=False), gateway, metric))
    return routes


def best_route(routes: list[_Route], destination: IPAddress) -> _Route | None:
    """The longest prefix holding `destination`, the lowest metric among equals."""
    holding = [r for r in routes if r.network.version == destination.version]
    holding = [r for r in holding if destination in r.network]
    if not holding:
        return None
    return min(holding, key=lambda r: (-r.network.prefixlen, r.metric))


def _linux(destination: IPAddress) -> NextHop:
    source = PROC_ROUTE if destination.version == 4 else PROC_ROUTE6
    parse = parse_proc_route if destination.version == 4 else parse_proc_route6
    try:
        text = source.read_text()
    except OSError as exc:
        return NextHop(None, f"the routing table is not readable ({exc.strerror or exc})")
    return _judge(best_route(parse(text), destination), destination)


def _judge(route: _Route | None, destination: IPAddress) -> NextHop:
    if route is None:
        return NextHop(None, f"this machine has no route to {destination}")
    if route.gateway is None:
        return NextHop(None, f"{destination} is on this machine's own network: no router between")
    return NextHop(route.gateway)


def _windows(destination: IPAddress) -> NextHop:  # pragma: no cover - Windows only
    import ctypes

    if destination.version != 4:
        return NextHop(None, "the router toward an IPv6 endpoint is not looked up on Windows")
    row = (ctypes.c_uint32 * 14)()  # MIB_IPFORWARDROW: 14 DWORDs, the next hop is the 4th
    dest = struct.unpack("=I", destination.packed)[0]  # network byte order, as in memory
    try:
        iphlpapi = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined]
        error = iphlpapi.GetBestRoute(ctypes.c_uint32(dest), ctypes.c_uint32(0), ctypes.byref(row))
    except (OSError, AttributeError) as exc:
        return NextHop(None, f"GetBestRoute is not available ({exc})")
    if error:
        return NextHop(None, f"this machine has no route to {destination} (error {error})")
    hop = ipaddress.IPv4Address(struct.pack("=I", row[3]))
    if hop.is_unspecified or hop == destination:
        return NextHop(None, f"{destination} is on this machine's own network: no router between")
    return NextHop(hop)


# macOS <net/route.h>, <sys/socket.h>, <sys/sysctl.h>
_RT_MSGHDR = struct.Struct("=HBBHxxiiiiiiI56x")  # up to rtm_rmx (14 x u_int32), 92 bytes
_RTA_DST, _RTA_GATEWAY, _RTA_NETMASK = 0x1, 0x2, 0x4
_RTF_HOST = 0x4
_RTAX_MAX = 8
_MACOS_AF_INET = 2
_MACOS_MIB = (4, 17, 0, _MACOS_AF_INET, 2, _RTF_GATEWAY)  # CTL_NET PF_ROUTE 0 AF NET_RT_FLAGS


def _sockaddrs(data: bytes, offset: int, end: int, present: int) -> dict[int, bytes]:
    """The sockaddrs after a route message's header, by RTA_* bit; each padded to 4 bytes."""
    found: dict[int, bytes] = {}
    for index in range(_RTAX_MAX):
        bit = 1 << index
        if not present & bit:
            continue
        if offset >= end:
            break
        length = data[offset]
        found[bit] = data[offset : offset + length]
        offset += (1 + ((length - 1) | 3)) if length > 0 else 4
    return found


def _v4(sockaddr: bytes | None, mask: bool = False) -> ipaddress.IPv4Address | None:
    """The IPv4 address in a sockaddr_in (a netmask's may be cut short: the rest is zeros)."""
    if sockaddr is None or (not mask and (len(sockaddr) < 8 or sockaddr[1] != _MACOS_AF_INET)):
        return None
    return ipaddress.IPv4Address(sockaddr[4:8].ljust(4, b"\0"))


def _prefix(flags: int, addrs: dict[int, bytes]) -> str:
    """A host route's /32, else its netmask (none at all, or an empty one: the default)."""
    if flags & _RTF_HOST:
        return "32"
    mask = _v4(addrs.get(_RTA_NETMASK), mask=True)
    return str(mask) if mask is not None else "0.0.0.0"


def parse_route_messages(data: bytes) -> list[_Route]:
    """IPv4 gateway routes from a macOS sysctl routing dump (rt_msghdr messages)."""
    routes: list[_Route] = []
    offset = 0
    while offset + _RT_MSGHDR.size <= len(data):
        length, _, _, _, flags, present, *_ = _RT_MSGHDR.unpack_from(data, offset)
        if length < _RT_MSGHDR.size:
            break
        addrs = _sockaddrs(data, offset + _RT_MSGHDR.size, offset + length, present)
        offset += length
        dest, gateway = _v4(addrs.get(_RTA_DST)), _v4(addrs.get(_RTA_GATEWAY))
        if dest is None or gateway is None or not flags & _RTF_GATEWAY:
            continue
        network = ipaddress.IPv4Network(f"{dest}/{_prefix(flags, addrs)}", strict=False)
        routes.append(_Route(network, gateway, 0))
    return routes


def _macos(destination: IPAddress) -> NextHop:  # pragma: no cover - macOS only
    import ctypes
    import ctypes.util

    if destination.version != 4:
        return NextHop(None, "the router toward an IPv6 endpoint is not looked up on macOS")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        mib = (ctypes.c_int * len(_MACOS_MIB))(*_MACOS_MIB)
        size = ctypes.c_size_t(0)
        if libc.sysctl(mib, len(_MACOS_MIB), None, ctypes.byref(size), None, 0) != 0:
            return NextHop(None, "the routing table is not readable (sysctl)")
        buffer = ctypes.create_string_buffer(size.value + 4096)
        size = ctypes.c_size_t(len(buffer))
        if libc.sysctl(mib, len(_MACOS_MIB), buffer, ctypes.byref(size), None, 0) != 0:
            return NextHop(None, "the routing table is not readable (sysctl)")
        routes = parse_route_messages(buffer.raw[: size.value])
    except (OSError, AttributeError, TypeError, ValueError, struct.error) as exc:
        return NextHop(None, f"the routing table could not be read ({exc})")
    route = best_route(routes, destination)
    if route is None:
        return NextHop(None, f"no router found toward {destination}")
    return _judge(route, destination)


def next_hop(destination: IPAddress, platform: str = sys.platform) -> NextHop:
    """The router this machine sends through toward `destination` (the first hop)."""
    if destination.is_loopback:
        return NextHop(None, f"{destination} is this computer itself: no router between")
    if platform.startswith("linux"):
        return _linux(destination)
    if platform in ("win32", "cygwin"):
        return _windows(destination)
    if platform == "darwin":
        return _macos(destination)
    return NextHop(None, f"looking up the home router is not supported on {platform} yet")


def resolve_endpoint(host: str | IPAddress) -> IPAddress | None:
    """The Endpoint's address (the first one a name resolves to), or None."""
    if not isinstance(host, str):
        return host
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        try:
            return ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        except ValueError:
            continue
    return None
