"""Sockets and interfaces where the operating systems differ: the Don't Fragment bit, and which
local interface and address carry traffic to a destination.

Everything here is plain Python sockets plus psutil, so it runs on Linux, macOS and Windows. A
platform that cannot do something says why (`DontFragmentUnsupported`), and the check that needed
it ends `skip` with that reason.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The option numbers where Python's socket module does not name them (they are fixed by each OS's
# headers): Linux <linux/in.h>, <linux/in6.h>; macOS <netinet/in.h>; Windows <ws2ipdef.h>.
_LINUX_IP_MTU_DISCOVER = 10
_LINUX_IP_PMTUDISC_DO = 2
_LINUX_IPV6_MTU_DISCOVER = 23
_LINUX_IPV6_PMTUDISC_DO = 2
_LINUX_IP_MTU = 14
_MACOS_IP_DONTFRAG = 28
_MACOS_IPV6_DONTFRAG = 62
_WINDOWS_IP_DONTFRAGMENT = 14
_WINDOWS_IPV6_DONTFRAG = 14

# IPv4 header + UDP header, IPv6 header + UDP header: a probe of `size` bytes on the wire carries
# size - overhead bytes of UDP payload.
UDP_OVERHEAD = {4: 28, 6: 48}


class DontFragmentUnsupported(Exception):
    """This platform (or this socket) cannot send with Don't Fragment set: the reason, in words."""


def _df_options(family: int, platform: str) -> list[tuple[int, int, int]]:
    """The setsockopt calls that set DF on a UDP socket of `family` on `platform`."""
    v6 = family == socket.AF_INET6
    if platform.startswith("linux"):
        if v6:
            return [(socket.IPPROTO_IPV6, _LINUX_IPV6_MTU_DISCOVER, _LINUX_IPV6_PMTUDISC_DO)]
        return [(socket.IPPROTO_IP, _LINUX_IP_MTU_DISCOVER, _LINUX_IP_PMTUDISC_DO)]
    if platform == "darwin":
        if v6:
            return [(socket.IPPROTO_IPV6, _MACOS_IPV6_DONTFRAG, 1)]
        return [(socket.IPPROTO_IP, _MACOS_IP_DONTFRAG, 1)]
    if platform in ("win32", "cygwin"):
        if v6:
            return [(socket.IPPROTO_IPV6, _WINDOWS_IPV6_DONTFRAG, 1)]
        return [(socket.IPPROTO_IP, _WINDOWS_IP_DONTFRAGMENT, 1)]
    raise DontFragmentUnsupported(f"no known way to set Don't Fragment on {platform}")


def set_dont_fragment(sock: socket.socket, platform: str = sys.platform) -> None:
    """Set Don't Fragment on a UDP socket (and, on Linux, never fragment locally either: a datagram
    larger than the known path MTU fails with EMSGSIZE instead)."""
    for level, option, value in _df_options(sock.family, platform):
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            raise DontFragmentUnsupported(
                f"this system refused to set Don't Fragment ({exc.strerror or exc})"
            ) from None


def dont_fragment_setup(platform: str = sys.platform) -> Callable[[socket.socket], None]:
    """A `sock_setup` callback for the witness client's `probe`: sets DF on its socket."""

    def setup(sock: socket.socket) -> None:
        set_dont_fragment(sock, platform)

    return setup


def dont_fragment_reason(family: int = socket.AF_INET, platform: str = sys.platform) -> str | None:
    """None when DF can be set on a UDP socket of `family` here, else why not (for `skip`)."""
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        return f"no UDP socket for this address family here ({exc.strerror or exc})"
    try:
        set_dont_fragment(sock, platform)
    except DontFragmentUnsupported as exc:
        return str(exc)
    finally:
        sock.close()
    return None


def is_too_big(exc: OSError) -> bool:
    """The send failed because the datagram exceeds the MTU this machine knows (DF set)."""
    return exc.errno == errno.EMSGSIZE or getattr(exc, "winerror", None) == 10040


def known_path_mtu(sock: socket.socket) -> int | None:
    """The path MTU the kernel knows for a connected socket (Linux only; None elsewhere)."""
    if not sys.platform.startswith("linux") or sock.family != socket.AF_INET:
        return None
    try:
        return int(sock.getsockopt(socket.IPPROTO_IP, _LINUX_IP_MTU))
    except OSError:
        return None


# -- which interface carries a destination -------------------------------------------------------


def route_source(destination: IPAddress, port: int = 9) -> IPAddress | None:
    """The local address this machine would send from to `destination` (a UDP connect() sends
    nothing: it only asks the routing table). None when there is no route."""
    family = socket.AF_INET6 if destination.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(destination), port))
            address = sock.getsockname()[0]
    except OSError:
        return None
    try:
        return ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class LocalInterface:
    """A network interface of this machine as the checks need it."""

    name: str
    addresses: tuple[IPAddress, ...]
    up: bool
    mtu: int | None


def local_interfaces() -> list[LocalInterface]:
    """Every interface with its addresses, state and MTU (psutil)."""
    import psutil

    stats = psutil.net_if_stats()
    found: list[LocalInterface] = []
    for name, addrs in psutil.net_if_addrs().items():
        addresses: list[IPAddress] = []
        for a in addrs:
            with contextlib.suppress(ValueError):
                addresses.append(ipaddress.ip_address(a.address.split("%", 1)[0]))
        stat = stats.get(name)
        up = bool(stat.isup) if stat is not None else False
        mtu = int(stat.mtu) if stat is not None and stat.mtu else None
        found.append(LocalInterface(name, tuple(addresses), up, mtu))
    return found


def interface_holding(addresses: Iterable[IPAddress]) -> LocalInterface | None:
    """The interface that holds one of `addresses` (the tunnel's Address), preferring one that
    is up."""
    wanted = set(addresses)
    holders = [i for i in local_interfaces() if wanted & set(i.addresses)]
    holders.sort(key=lambda i: not i.up)
    return holders[0] if holders else None


def interface_for(destination: IPAddress) -> LocalInterface | None:
    """The interface that carries traffic to `destination` (by the route's source address)."""
    source = route_source(destination)
    return interface_holding([source]) if source is not None else None
