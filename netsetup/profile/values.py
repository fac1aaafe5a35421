"""Parsers for the small value languages inside profiles: endpoints, CIDRs, ports, names, expiries.

Each parser raises `ValueError` with a message fit to show the user; the schema layer adds where.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A leading '-' would read as an option on every command line that names the peer.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_IFACE = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")
_DURATION = re.compile(r"^(\d{1,5})([hdw])$")


def check_text(value: str, what: str = "text") -> str:
    """Reject any character that could end a line or hide in a config (control, line separators)."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            raise ValueError(f"{what} contains a control or invisible character {ch!r}")
    return value


def parse_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-32 characters of a-z, 0-9 and '-', not starting with '-'"
        )
    return value


class PeerName(str):
    """A peer name that has been checked: 1-32 of a-z, 0-9 and '-', not starting with '-'.

    The only way to make one is through this constructor, which validates, so a value of this
    type can go into a path (`peers/<name>.toml`, the state folder) without further checks.
    Service functions and `StateDir` path builders take `PeerName`, and mypy finds any caller
    that passes a plain `str`.
    """

    __slots__ = ()

    def __new__(cls, value: str, what: str = "peer name") -> PeerName:
        if isinstance(value, PeerName):
            return value
        return super().__new__(cls, parse_name(value, what))


# A profile id is its folder's name: no '/', and never '.' or '..' (the first character is a-z0-9).
PROFILE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ProfileId(str):
    """A profile id (its folder's name) that has been checked: 1-64 of a-z, 0-9, '.', '_' and
    '-', starting with a letter or digit, so it is safe as one path component."""

    __slots__ = ()

    def __new__(cls, value: str, what: str = "profile id") -> ProfileId:
        if isinstance(value, ProfileId):
            return value
        if not isinstance(value, str) or not PROFILE_ID_RE.fullmatch(value):
            raise ValueError(f"{what} {value!r} must be 1-64 of [a-z0-9._-], starting with a-z0-9")
        return super().__new__(cls, value)


def parse_hostname(value: str) -> str:
    check_text(value, "host name")
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError(f"{value!r} is not a valid host name")
    return name.lower()


_HOST_KEY = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def parse_host_key(value: str) -> str:
    """An SSH host key fingerprint as OpenSSH prints it: `SHA256:` and 43 base64 characters."""
    if not _HOST_KEY.fullmatch(value):
        raise ValueError(
            f"host_key {value!r} must be an SSH fingerprint, SHA256: and 43 characters "
            "(as `ssh-keygen -lf` prints it)"
        )
    return value


def parse_host(value: str) -> str | IPAddress:
    """An IP address or a DNS name."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    if ":" in value:
        raise ValueError(f"{value!r} is not a valid IPv6 address")
    if re.fullmatch(r"[\d.]+", value):
        raise ValueError(f"{value!r} is not a valid IPv4 address")
    return parse_hostname(value)


def parse_endpoint(value: str) -> tuple[str | IPAddress, int]:
    """`host:port`, `[v6]:port` or `v4:port`; port 1-65535."""
    check_text(value, "endpoint")
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})", value)
        if not match:
            raise ValueError(f"endpoint {value!r} must be [IPv6]:port")
        try:
            host: str | IPAddress = ipaddress.IPv6Address(match.group(1))
        except ValueError:
            raise ValueError(f"endpoint {value!r}: {match.group(1)!r} is not IPv6") from None
        port_text = match.group(2)
    else:
        if value.count(":") != 1:
            hint = " (put an IPv6 address in brackets: [2001:db8::1]:51820)" if ":" in value else ""
            raise ValueError(f"endpoint {value!r} must be host:port{hint}")
        host_text, port_text = value.split(":")
        if not port_text.isdigit() or len(port_text) > 5:
            raise ValueError(f"endpoint {value!r}: port {port_text!r} is not a number")
        host = parse_host(host_text)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"endpoint {value!r}: port {port} is outside 1-65535")
    return host, port


SSH_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def parse_ssh_target(value: str) -> tuple[str, str | IPAddress, int]:
    """`user@host:port`, `user@host` (port 22) or `user@[v6]:port`: how netsetup logs in to a
    gateway. The user is a POSIX login name (it goes into an SSH login, never into a shell)."""
    check_text(value, "ssh")
    user, at, rest = value.partition("@")
    if not at or not rest:
        raise ValueError(f"ssh {value!r} must be user@host:port (e.g. admin@gw.example:22)")
    if not SSH_USER.match(user):
        raise ValueError(f"ssh user {user!r}: use a login name (lower-case letters, digits, _.-)")
    bracketed = rest.startswith("[")
    if (bracketed and rest.endswith("]")) or (not bracketed and ":" not in rest):
        rest += ":22"  # no port given
    try:
        host, port = parse_endpoint(rest)
    except ValueError as exc:
        raise ValueError(str(exc).replace("endpoint", "ssh", 1)) from None
    return user, host, port


def parse_network(value: str, *, strict: bool = True) -> IPNetwork:
    """A CIDR such as 192.0.2.0/24. Host bits set is an error unless strict=False."""
    check_text(value, "CIDR")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            if not strict:
                return ipaddress.ip_network(value, strict=False)
            fixed = ipaddress.ip_network(value, strict=False)
            raise HostBitsError(f"{value!r} has host bits set (did you mean {fixed}?)") from None
        raise ValueError(f"{value!r} is not a valid CIDR") from None


class HostBitsError(ValueError):
    pass


def parse_address(value: str) -> IPAddress:
    check_text(value, "address")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


# Ranges nothing can be reached at through a tunnel: a route or an address inside one of them is a
# mistake (255.255.255.255 is the limited broadcast, inside 240.0.0.0/4). IPv6 `::/8` also holds
# the IPv4-mapped and -compatible forms, whose small numbers read back as IPv4 addresses.
_UNUSABLE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "'this host on this network' (0.0.0.0/8)"),
        ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
        ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
        ("240.0.0.0/4", "reserved or broadcast (240.0.0.0/4, with 255.255.255.255)"),
        ("::/8", "reserved (::/8: unspecified, loopback, IPv4-mapped)"),
        ("ff00::/8", "multicast (ff00::/8)"),
    )
)


def unusable_range(network: IPNetwork) -> str | None:
    """What `network` lies inside when nothing there can be routed to (loopback, multicast...)."""
    for special, what in _UNUSABLE:
        # two CIDR blocks are nested or disjoint: overlapping and no wider means inside
        inside = network.prefixlen >= special.prefixlen and network.overlaps(special)
        if special.version == network.version and inside:
            return what
    return None


def parse_destination(value: str) -> IPNetwork:
    """A network the tunnel routes to: any CIDR, `0.0.0.0/0` included, but none of `_UNUSABLE`."""
    network = parse_network(value)
    what = unusable_range(network) if network.prefixlen else None
    if what is not None:
        raise ValueError(f"{value!r} is {what}: nothing there is reachable through the tunnel")
    return network


def parse_service_address(value: str) -> IPAddress:
    """The address of a server reached through the tunnel (DNS, SIP, a portal)."""
    address = parse_address(value)
    what = unusable_range(ipaddress.ip_network(address))
    if what is not None:
        raise ValueError(f"{value!r} is {what}, not the address of a server")
    return address


def parse_tunnel(value: str) -> IPNetwork:
    """The tunnel's own subnet: neither everything (/0) nor touching an unusable range."""
    network = parse_network(value)
    if network.prefixlen == 0:
        raise ValueError(f"{value!r} is every address; the tunnel needs its own subnet")
    for special, what in _UNUSABLE:
        if special.version == network.version and network.overlaps(special):
            raise ValueError(f"{value!r} overlaps {what}; peers cannot have addresses there")
    return network


def parse_port_ranges(value: str) -> tuple[tuple[int, int], ...]:
    """`443`, `80,443`, `10000-20000` -> ((443, 443),) ..."""
    ranges: list[tuple[int, int]] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part.strip())
        if not match:
            raise ValueError(f"port {part!r} is not a port or a range like 10000-20000")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not (1 <= low <= high <= 65535):
            raise ValueError(f"port range {part!r} must be within 1-65535, low to high")
        ranges.append((low, high))
    return tuple(ranges)


def parse_interface(value: str) -> str:
    if not _IFACE.fullmatch(value):
        raise ValueError(f"interface name {value!r} must be 1-15 characters of [a-zA-Z0-9_=+.-]")
    return value


def parse_duration(value: str) -> timedelta:
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(f"duration {value!r} must look like 12h, 30d or 2w")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise ValueError(f"duration {value!r} must be longer than zero")
    return {
        "h": timedelta(hours=amount),
        "d": timedelta(days=amount),
        "w": timedelta(weeks=amount),
    }[unit]


def parse_expiry(value: str, now: datetime) -> datetime:
    """`30d` (from now), `2026-12-31` (end of that day, UTC) or an ISO datetime."""
    value = value.strip()
    try:
        moment = _expiry_moment(value, now)
        if moment.astimezone(UTC).year >= 9999:
            raise OverflowError
    except OverflowError:
        raise ValueError(f"expiry {value!r} is too far in the future") from None
    return moment


def _expiry_moment(value: str, now: datetime) -> datetime:
    if _DURATION.fullmatch(value):
        return now + parse_duration(value)
    try:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expiry {value!r} must be a duration (30d) or a date (2026-12-31)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def format_duration(span: timedelta) -> str:
    """The shortest of `2w`, `30d`, `12h` that `parse_duration` reads back as `span`."""
    hours, rest = divmod(span, timedelta(hours=1))
    if rest or hours <= 0:
        raise ValueError(f"{span} is not a whole number of hours")
    if hours % (24 * 7) == 0:
        return f"{hours // (24 * 7)}w"
    if hours % 24 == 0:
        return f"{hours // 24}d"
    return f"{hours}h"


def tunnel_address_problem(
    address: IPAddress, subnet: IPNetwork, gateway: IPAddress | None
) -> str | None:
    """Why `address` cannot be a peer's tunnel address in `subnet`, or None when it can: the one
    rule `render` (before it routes an address into the tunnel) and `validate` (NS1xx) share."""
    if address.version != subnet.version or address not in subnet:
        return f"is outside the tunnel subnet {subnet}"
    if address == gateway:
        return "is the gateway's own tunnel address"
    if subnet.num_addresses > 2 and address == subnet.network_address:
        return f"is the network address of {subnet}"
    if subnet.version == 4 and subnet.num_addresses > 2 and address == subnet.broadcast_address:
        return f"is the broadcast address of {subnet}"
    return None


# ipaddress parses text in pure Python (about 4 us an address), a large share of reading 10,000
# peer files. The C library's parser is used instead only when the text is exactly what the C
# library itself prints for the address it read: such text is a plain address that ipaddress reads
# to the same value. Any other text (leading zeros, upper case, another spelling, not an address
# at all) goes to ipaddress, which decides.


def parse_ipv4_fast(text: str) -> ipaddress.IPv4Address:
    """`ipaddress.IPv4Address(text)`, faster for the canonical spelling."""
    import socket

    try:
        packed = socket.inet_aton(text)
        if socket.inet_ntoa(packed) == text:
            return ipaddress.IPv4Address(packed)
    except (OSError, ValueError):
        pass
    return ipaddress.IPv4Address(text)


def parse_ipv6_fast(text: str) -> ipaddress.IPv6Address:
    """`ipaddress.IPv6Address(text)`, faster for the canonical spelling."""
    import socket

    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
        if socket.inet_ntop(socket.AF_INET6, packed) == text:
            return ipaddress.IPv6Address(packed)
    except (OSError, ValueError):
        pass
    return ipaddress.IPv6Address(text)
