"""The strict schema of `profile.toml` and `peers/<name>.toml`.

Parsing never stops at the first mistake: it collects `SchemaIssue`s (a key path, a code, a
message) so `validate` can report all of them, while `load_profile` raises the first one. Unknown
keys come with a "did you mean".

`parse_toml` turns any text into data or one syntax issue with a line. `parse_profile_data` hands
each table of `profile.toml` to its reader (`read_company`, `read_gateway`, `read_network`,
`read_dns`, `read_access`, `read_portals`, `read_voip`, `read_diagnose`), which take their defaults
from `model.DEFAULTS`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from netsetup.keys import key_error
from netsetup.profile import values as v
from netsetup.profile.model import (
    DEFAULTS,
    MAX_AGENCY_EXPIRES,
    MODES,
    PEER_STATUSES,
    TARGET_KINDS,
    VOICE_CODECS,
    AccessMode,
    AccessRule,
    Diagnose,
    Dns,
    Gateway,
    Network,
    Peer,
    Portal,
    Profile,
    SshTarget,
    Target,
    Voip,
    default_client_interface,
)
from netsetup.profile.tomlpos import KeyPath, nesting_start_line

T = TypeVar("T")

# NS0xx: syntax and schema. The validate rule registry documents each of these codes.
SYNTAX = "NS001"
UNKNOWN_KEY = "NS002"
MISSING_KEY = "NS003"
WRONG_TYPE = "NS004"
BAD_KEY = "NS005"
BAD_ENDPOINT = "NS006"
BAD_CIDR = "NS007"
HOST_BITS = "NS008"
BAD_VALUE = "NS009"
# found while parsing, documented with the site rules (netsetup.validate.rules.sites)
SITE_OVERLAP = "NS117"


@dataclass(frozen=True)
class SchemaIssue:
    path: KeyPath
    code: str
    message: str
    line: int | None = None  # known directly for syntax errors
    column: int | None = None


def parse_toml(text: str) -> tuple[dict[str, Any] | None, SchemaIssue | None]:
    """tomllib's data for `text`, or the syntax issue with its line. Any text gives one of the two:
    tomllib also fails with RecursionError (deep nesting) and ValueError (a number too long for
    Python), neither of which has a position."""
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        if text.startswith("\ufeff"):
            message = (
                "the file starts with a byte order mark (BOM), which TOML does not allow: "
                "save it as UTF-8 without BOM"
            )
            return None, SchemaIssue((), SYNTAX, message, 1, 1)
        line, column = _toml_error_position(str(exc))
        message = str(exc).split(" (at ")[0]
        both = _both_gateway_forms(text)
        if both is not None:
            return None, both
        return None, SchemaIssue((), SYNTAX, f"TOML syntax error: {message}", line, column)
    except RecursionError:
        message = "arrays or inline tables nested too deeply to read"
        return None, _syntax(message, nesting_start_line(text))
    except ValueError as exc:
        match = _LONG_NUMBER.search(text)
        if match is None:
            return None, _syntax(str(exc), 1)
        line = text.count("\n", 0, match.start()) + 1
        return None, _syntax("a number with too many digits", line)


_GATEWAY_HEADER = re.compile(r"^[ \t]*(\[\[?)[ \t]*gateway[ \t]*\]\]?[ \t]*(?:#.*)?$", re.M)


def _both_gateway_forms(text: str) -> SchemaIssue | None:
    """The one mistake tomllib words worst ("Cannot declare ('gateway',) twice"): a `[gateway]`
    table and `[[gateway]]` tables in one file. The issue points at the second form's header."""
    forms: dict[str, int] = {}
    for match in _GATEWAY_HEADER.finditer(text):
        forms.setdefault(match.group(1), text.count("\n", 0, match.start()) + 1)
    if len(forms) < 2:
        return None
    message = (
        "[gateway] and [[gateway]] in one file: write one gateway as [gateway], or several "
        "as [[gateway]] tables each with a name, not both"
    )
    return _syntax(message, max(forms.values()))


# Python refuses to read integers longer than this many digits (sys.get_int_max_str_digits).
_LONG_NUMBER = re.compile(r"[0-9][0-9_]{4300,}")


def _syntax(message: str, line: int) -> SchemaIssue:
    return SchemaIssue((), SYNTAX, f"TOML syntax error: {message}", line, 1)


def _toml_error_position(message: str) -> tuple[int, int]:
    match = re.search(r"at line (\d+), column (\d+)", message)
    if match:
        return int(match.group(1)), int(match.group(2))
    return 1, 1


class _Reader:
    """Walks one parsed TOML document, converting values and recording issues."""

    def __init__(self) -> None:
        self.issues: list[SchemaIssue] = []

    def issue(self, path: KeyPath, code: str, message: str) -> None:
        self.issues.append(SchemaIssue(path, code, message))

    def table(
        self, data: Any, path: KeyPath, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.issue(path, WRONG_TYPE, f"[{_dotted(path)}] must be a table")
            return {}
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                where = f"[{_dotted(path)}]" if path else "the top level"
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                self.issue((*path, key), UNKNOWN_KEY, f"unknown key {key!r} in {where}{suggestion}")
        for key in required:
            if key not in data:
                where = f"[{_dotted(path)}]" if path else "the top level"
                self.issue(path, MISSING_KEY, f"missing required key {key!r} in {where}")
        return data

    def get(
        self,
        data: dict[str, Any],
        path: KeyPath,
        key: str,
        kind: type | tuple[type, ...],
        convert: Callable[[Any], T] | None = None,
        code: str = BAD_VALUE,
    ) -> T | None:
        if key not in data:
            return None
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.issue((*path, key), WRONG_TYPE, f"{_dotted((*path, key))} must be {names}")
            return None
        if convert is None:
            return value  # type: ignore[return-value]
        try:
            return convert(value)
        except v.HostBitsError as exc:
            self.issue((*path, key), HOST_BITS, f"{_dotted((*path, key))}: {exc}")
        except ValueError as exc:
            self.issue((*path, key), code, f"{_dotted((*path, key))}: {exc}")
        return None

    def items(
        self, data: dict[str, Any], path: KeyPath, key: str, convert: Callable[[Any], T], code: str
    ) -> list[T]:
        """Convert every element of a list of strings; bad elements are reported and dropped."""
        raw = data.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.issue((*path, key), WRONG_TYPE, f"{_dotted((*path, key))} must be a list")
            return []
        out: list[T] = []
        for index, item in enumerate(raw):
            where = (*path, key, index)
            if not isinstance(item, str):
                self.issue(where, WRONG_TYPE, f"{_dotted((*path, key))}[{index}] must be a string")
                continue
            try:
                out.append(convert(item))
            except v.HostBitsError as exc:
                self.issue(where, HOST_BITS, f"{_dotted((*path, key))}: {exc}")
            except ValueError as exc:
                self.issue(where, code, f"{_dotted((*path, key))}: {exc}")
        return out


_TYPE_NAMES = {str: "a string", int: "an integer", datetime: "a date-time", bool: "true or false"}


def _dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def _range(low: int, high: int, what: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            # TOML integers have no size limit; thousands of digits say nothing to the reader
            shown = str(value) if abs(value) < 10**12 else "(a number far too large)"
            raise ValueError(f"{what} {shown} is outside {low}-{high}")
        return value

    return check


def _key(value: str) -> str:
    problem = key_error(value)
    if problem:
        raise ValueError(f"not a WireGuard key ({problem})")
    return value


def parse_access_rule(text: str) -> AccessRule:
    """`192.0.2.0/24`, `192.0.2.20/32 tcp/443`, `192.0.2.20 tcp/443,8443`, `198.51.100.0/24 udp`."""
    v.check_text(text, "access rule")
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"access rule {text!r} must be 'CIDR' or 'CIDR proto/ports'")
    network_text = parts[0] if "/" in parts[0] else _host_cidr(parts[0])
    network = v.parse_destination(network_text)
    if len(parts) == 1:
        return AccessRule(network)
    proto, _, ports = parts[1].partition("/")
    if proto not in ("tcp", "udp"):
        raise ValueError(f"access rule {text!r}: protocol must be tcp or udp")
    return AccessRule(network, proto, v.parse_port_ranges(ports) if ports else ())


def _host_cidr(host: str) -> str:
    address = v.parse_address(host)
    return f"{address}/{address.max_prefixlen}"


PROFILE_KEYS = ("company", "gateway", "network", "dns", "access", "portal", "voip", "diagnose")
REQUIRED_TABLES = ("company", "gateway", "network")
COMPANY_KEYS = ("name", "contact")
GATEWAY_KEYS = (
    "endpoint",
    "public_key",
    "interface",
    "listen_port",
    "witness_port",
    "ssh",
    "host_key",
    "admin_from",
)
# a `[[gateway]]` site: the same keys, its name and its own tunnel subnets
SITE_KEYS = ("name", *GATEWAY_KEYS, "tunnel_v4", "tunnel_v6")
NETWORK_KEYS = (
    "tunnel_v4",
    "tunnel_v6",
    "gateway_v4",
    "gateway_v6",
    "mtu",
    "keepalive",
    "quarantine_days",
    "client_interface",
)
DNS_KEYS = ("servers", "search", "records")
ACCESS_KEYS = (*MODES, "agency_expires")  # one list per access mode
PORTAL_KEYS = ("name", "host", "proto", "port")
VOIP_KEYS = (
    "sip_server",
    "sip_domain",
    "transports",
    "sip_port",
    "tls_port",
    "rtp_ports",
    "media",
    "codec",
    "plc",
)
DIAGNOSE_KEYS = ("responder", "targets", "sip_mirror")
TARGET_KEYS = ("name", "host", "port", "kind", "host_key")
# The longest tunnel prefix that still leaves an address for a peer beside the gateway.
LONGEST_TUNNEL = {4: 30, 6: 126}


@dataclass(frozen=True)
class CompanyTable:
    name: str
    contact: str | None


@dataclass(frozen=True)
class AccessTable:
    dedicated: tuple[AccessRule, ...] = ()
    agency: tuple[AccessRule, ...] = ()
    agency_expires: timedelta = DEFAULTS.agency_expires


def parse_profile_data(
    data: dict[str, Any], profile_dir: Path
) -> tuple[Profile | None, list[SchemaIssue]]:
    """Read every table of a parsed `profile.toml`; the profile is None if a required part is."""
    r = _Reader()
    if not v.PROFILE_ID_RE.fullmatch(profile_dir.name):
        r.issue(
            (), BAD_VALUE, f"profile folder name {profile_dir.name!r} must be 1-64 of [a-z0-9._-]"
        )
    r.table(data, (), PROFILE_KEYS, REQUIRED_TABLES)
    company = read_company(r, data.get("company", {}))
    raw_gateway = data.get("gateway", {})
    network = read_network(r, data.get("network", {}), profile_dir.name)
    if isinstance(raw_gateway, list):
        sites = read_sites(r, raw_gateway, network)
        gateway = sites[0] if sites else None
    else:
        sites, gateway = (), read_gateway(r, raw_gateway)
    dns = read_dns(r, data.get("dns", {}))
    access = read_access(r, data.get("access", {}))
    portals = read_portals(r, data.get("portal", []))
    voip = read_voip(r, data["voip"]) if "voip" in data else None
    diagnose = read_diagnose(r, data["diagnose"]) if "diagnose" in data else Diagnose()
    if company is None or gateway is None or network is None:
        return None, r.issues
    if not v.PROFILE_ID_RE.fullmatch(profile_dir.name):
        return None, r.issues
    profile = Profile(
        id=v.ProfileId(profile_dir.name),
        directory=profile_dir,
        company=company.name,
        contact=company.contact,
        gateway=gateway,
        network=network,
        dns=dns,
        dedicated=access.dedicated,
        agency=access.agency,
        agency_expires=access.agency_expires,
        portals=portals,
        voip=voip,
        diagnose=diagnose,
        sites=sites,
    )
    return profile, r.issues


def read_company(r: _Reader, raw: Any) -> CompanyTable | None:
    """`[company]`: name (required) and contact."""
    p = ("company",)
    table = r.table(raw, p, COMPANY_KEYS, ("name",))
    name = r.get(table, p, "name", str, lambda s: v.check_text(s, "name"))
    contact = r.get(table, p, "contact", str, lambda s: v.check_text(s, "contact"))
    return None if name is None else CompanyTable(name, contact)


def read_gateway(r: _Reader, raw: Any) -> Gateway | None:
    """`[gateway]`: where assistants connect (endpoint, public_key) and the gateway's interface."""
    p = ("gateway",)
    return _read_gateway_table(r, p, r.table(raw, p, GATEWAY_KEYS, ("endpoint", "public_key")))


def read_sites(r: _Reader, raw: list[Any], network: Network | None) -> tuple[Gateway, ...]:
    """`[[gateway]]`: several gateways (sites), each with a unique `name` and, but for the first
    (which may use `[network]`'s), its own `tunnel_v4` (and optionally `tunnel_v6`). The subnets
    of two sites must not overlap: an address would belong to two gateways. Returns () unless
    every site reads cleanly: with one missing, its peers would silently land on another."""
    if not raw:
        r.issue(("gateway",), MISSING_KEY, "[[gateway]] needs at least one gateway table")
        return ()
    sites: list[Gateway] = []
    names: dict[str, int] = {}
    subnets: list[tuple[str, v.IPNetwork]] = []  # (where it is written, subnet) of earlier sites
    for index, item in enumerate(raw):
        site = _read_site(r, index, item)
        if site is not None and site.name in names:
            r.issue(
                ("gateway", index, "name"),
                BAD_VALUE,
                f"gateway[{index}].name {site.name!r} is already the name of "
                f"gateway[{names[site.name]}]; every site needs a name of its own",
            )
        elif site is not None:
            names[site.name] = index
            sites.append(site)
        # read from the raw table, so that a site with another mistake is still checked
        for where, path, subnet in _site_subnets(index, item, network):
            _check_site_overlap(r, path, where, subnet, subnets)
    return tuple(sites) if len(sites) == len(raw) else ()


def _read_site(r: _Reader, index: int, raw: Any) -> Gateway | None:
    p: KeyPath = ("gateway", index)
    required = ("name", "endpoint", "public_key") + (("tunnel_v4",) if index else ())
    table = r.table(raw, p, SITE_KEYS, required)
    name = r.get(table, p, "name", str, lambda s: v.parse_name(s, "gateway name"))
    tunnel_v4 = r.get(table, p, "tunnel_v4", str, _family(v.parse_tunnel, 4), BAD_CIDR)
    tunnel_v6 = r.get(table, p, "tunnel_v6", str, _family(v.parse_tunnel, 6), BAD_CIDR)
    for key, subnet in (("tunnel_v4", tunnel_v4), ("tunnel_v6", tunnel_v6)):
        if subnet is not None and subnet.prefixlen > LONGEST_TUNNEL[subnet.version]:
            longest = LONGEST_TUNNEL[subnet.version]
            r.issue(
                (*p, key),
                BAD_VALUE,
                f"gateway[{index}].{key} {subnet} leaves no address for peers beside the "
                f"gateway (use /{longest} or shorter)",
            )
    if tunnel_v6 is not None and "tunnel_v4" not in table:
        r.issue(
            (*p, "tunnel_v6"),
            MISSING_KEY,
            f"gateway[{index}].tunnel_v6 needs gateway[{index}].tunnel_v4 too: a site's own "
            "subnets replace both of [network]'s",
        )
    gateway = _read_gateway_table(r, p, table)
    if gateway is None or name is None or (index and tunnel_v4 is None):
        return None
    return replace(
        gateway,
        name=name,
        tunnel_v4=tunnel_v4,  # type: ignore[arg-type]  # _family(..., 4) made sure
        tunnel_v6=tunnel_v6 if tunnel_v4 is not None else None,  # type: ignore[arg-type]
    )


def _site_subnets(
    index: int, raw: Any, network: Network | None
) -> list[tuple[str, KeyPath, v.IPNetwork]]:
    """The tunnel subnets of a site, with where each is written: its own, or `[network]`'s for
    a first site that gives none."""
    table = raw if isinstance(raw, dict) else {}
    out: list[tuple[str, KeyPath, v.IPNetwork]] = []
    for key in ("tunnel_v4", "tunnel_v6"):
        if key in table:
            try:
                subnet = v.parse_network(table[key]) if isinstance(table[key], str) else None
            except ValueError:
                subnet = None  # already reported by the site's reader
            if subnet is not None:
                out.append((f"gateway[{index}].{key}", ("gateway", index, key), subnet))
    if index == 0 and "tunnel_v4" not in table and network is not None:
        out.append(("network.tunnel_v4", ("gateway", 0), network.tunnel_v4))
        if network.tunnel_v6 is not None:
            out.append(("network.tunnel_v6", ("gateway", 0), network.tunnel_v6))
    return out


def _check_site_overlap(
    r: _Reader,
    path: KeyPath,
    where: str,
    subnet: v.IPNetwork,
    earlier: list[tuple[str, v.IPNetwork]],
) -> None:
    """Report `subnet` when it overlaps a subnet of an earlier site, then remember it."""
    for other_where, other in earlier:
        if other.version == subnet.version and subnet.overlaps(other):
            r.issue(
                path,
                SITE_OVERLAP,
                f"{where} {subnet} overlaps {other_where} {other}: an address there would "
                "belong to two gateways",
            )
            break
    earlier.append((where, subnet))


def _read_gateway_table(r: _Reader, p: KeyPath, table: dict[str, Any]) -> Gateway | None:
    """The keys `[gateway]` and each `[[gateway]]` table have in common."""
    endpoint = r.get(table, p, "endpoint", str, v.parse_endpoint, BAD_ENDPOINT)
    key = r.get(table, p, "public_key", str, _key, BAD_KEY)
    interface = r.get(table, p, "interface", str, v.parse_interface)
    listen = r.get(table, p, "listen_port", int, _range(1, 65535, "port"))
    witness = r.get(table, p, "witness_port", int, _range(0, 65535, "port"))
    ssh = r.get(table, p, "ssh", str, _ssh_target)
    host_key = r.get(table, p, "host_key", str, v.parse_host_key)
    admin_from = r.items(table, p, "admin_from", v.parse_network, BAD_CIDR)
    if endpoint is None or key is None:
        return None
    host, port = endpoint
    listen_port = port if listen is None else listen
    return Gateway(
        endpoint_host=host,
        endpoint_port=port,
        public_key=key,
        listen_port=listen_port,
        interface=interface or DEFAULTS.interface,
        witness_port=(listen_port % 65535) + 1 if witness is None else witness,
        ssh=ssh,
        host_key=host_key,
        admin_from=tuple(admin_from),
    )


def _ssh_target(value: str) -> SshTarget:
    user, host, port = v.parse_ssh_target(value)
    return SshTarget(user, host, port)


def read_network(r: _Reader, raw: Any, profile_id: str) -> Network | None:
    """`[network]`: the tunnel's subnets and the settings every client config carries."""
    p = ("network",)
    table = r.table(raw, p, NETWORK_KEYS, ("tunnel_v4",))
    tunnel_v4 = r.get(table, p, "tunnel_v4", str, _family(v.parse_tunnel, 4), BAD_CIDR)
    tunnel_v6 = r.get(table, p, "tunnel_v6", str, _family(v.parse_tunnel, 6), BAD_CIDR)
    gateway_v4 = r.get(table, p, "gateway_v4", str, _family(v.parse_address, 4), BAD_CIDR)
    gateway_v6 = r.get(table, p, "gateway_v6", str, _family(v.parse_address, 6), BAD_CIDR)
    mtu = r.get(table, p, "mtu", int, _range(576, 9000, "MTU"))
    keepalive = r.get(table, p, "keepalive", int, _range(0, 65535, "keepalive"))
    quarantine = r.get(table, p, "quarantine_days", int, _range(0, 3650, "quarantine"))
    client_interface = r.get(table, p, "client_interface", str, v.parse_interface)
    _check_tunnel_room(r, "tunnel_v4", tunnel_v4)
    _check_tunnel_room(r, "tunnel_v6", tunnel_v6)
    _check_gateway_inside(r, "gateway_v4", gateway_v4, tunnel_v4)
    _check_gateway_inside(r, "gateway_v6", gateway_v6, tunnel_v6)
    if tunnel_v4 is None:
        return None
    assert isinstance(tunnel_v4, ipaddress.IPv4Network)  # _family(..., 4) made sure
    return Network(
        tunnel_v4=tunnel_v4,
        tunnel_v6=tunnel_v6,  # type: ignore[arg-type]  # _family(..., 6)
        gateway_v4=gateway_v4,  # type: ignore[arg-type]
        gateway_v6=gateway_v6,  # type: ignore[arg-type]
        mtu=DEFAULTS.mtu if mtu is None else mtu,
        keepalive=DEFAULTS.keepalive if keepalive is None else keepalive,
        quarantine_days=DEFAULTS.quarantine_days if quarantine is None else quarantine,
        client_interface=client_interface or default_client_interface(profile_id),
    )


def _check_tunnel_room(r: _Reader, key: str, tunnel: v.IPNetwork | None) -> None:
    if tunnel is None:
        return
    longest = LONGEST_TUNNEL[tunnel.version]
    if tunnel.prefixlen > longest:
        r.issue(
            ("network", key),
            BAD_VALUE,
            f"network.{key} {tunnel} leaves no address for peers beside the gateway "
            f"(use /{longest} or shorter)",
        )


def _check_gateway_inside(
    r: _Reader, key: str, gateway: v.IPAddress | None, tunnel: v.IPNetwork | None
) -> None:
    if gateway is not None and tunnel is not None and gateway not in tunnel:
        r.issue(("network", key), BAD_VALUE, f"network.{key} {gateway} is not in {tunnel}")


def read_dns(r: _Reader, raw: Any) -> Dns:
    """`[dns]`: servers and search domains for the client, `[dns.records]` name = address."""
    p = ("dns",)
    table = r.table(raw, p, DNS_KEYS)
    servers = r.items(table, p, "servers", v.parse_service_address, BAD_CIDR)
    search = r.items(table, p, "search", v.parse_hostname, BAD_VALUE)
    records = _read_records(r, table.get("records", {}))
    return Dns(tuple(servers), tuple(search), tuple(records))


def _read_records(r: _Reader, raw: Any) -> list[tuple[str, v.IPAddress]]:
    # every name is allowed: the table check only reports when records is not a table at all
    table = r.table(raw, ("dns", "records"), tuple(raw) if isinstance(raw, dict) else ())
    records: list[tuple[str, v.IPAddress]] = []
    for name, address in table.items():
        try:
            if not isinstance(address, str):
                raise ValueError("must be an address string")
            records.append((v.parse_hostname(name), v.parse_address(address)))
        except ValueError as exc:
            r.issue(("dns", "records", name), BAD_VALUE, f"dns.records.{name}: {exc}")
    return records


def read_access(r: _Reader, raw: Any) -> AccessTable:
    """`[access]`: what each mode reaches, and how long agency access lasts by default."""
    p = ("access",)
    table = r.table(raw, p, ACCESS_KEYS)
    dedicated = r.items(table, p, AccessMode.dedicated, parse_access_rule, BAD_CIDR)
    agency = r.items(table, p, AccessMode.agency, parse_access_rule, BAD_CIDR)
    expires = r.get(table, p, "agency_expires", str, _agency_duration)
    return AccessTable(
        tuple(dedicated), tuple(agency), DEFAULTS.agency_expires if expires is None else expires
    )


def _agency_duration(text: str) -> timedelta:
    span = v.parse_duration(text)
    if span > MAX_AGENCY_EXPIRES:
        longest = v.format_duration(MAX_AGENCY_EXPIRES)
        raise ValueError(
            f"duration {text!r} is longer than {longest}; agency access is meant to expire "
            "(give a peer a later expiry with provision --expires)"
        )
    return span


def read_portals(r: _Reader, raw: Any) -> tuple[Portal, ...]:
    """`[[portal]]`: the services an agency assistant reaches when access.agency is empty."""
    if not isinstance(raw, list):
        r.issue(("portal",), WRONG_TYPE, "portal must be an array of tables: [[portal]]")
        return ()
    portals: list[Portal] = []
    for index, item in enumerate(raw):
        p = ("portal", index)
        table = r.table(item, p, PORTAL_KEYS, ("name", "host", "port"))
        name = r.get(table, p, "name", str, v.parse_name)
        host = r.get(table, p, "host", str, v.parse_service_address, BAD_CIDR)
        proto = r.get(table, p, "proto", str, _choice(("tcp", "udp"), "proto"))
        port = r.get(table, p, "port", int, _range(1, 65535, "port"))
        if name and host and port:
            portals.append(Portal(name, host, proto or DEFAULTS.portal_proto, port))
    return tuple(portals)


def read_voip(r: _Reader, raw: Any) -> Voip | None:
    """`[voip]`: the SIP server and the media path every mode gets; None without a sip_server."""
    p = ("voip",)
    table = r.table(raw, p, VOIP_KEYS, ("sip_server",))
    sip_server = r.get(table, p, "sip_server", str, v.parse_service_address, BAD_CIDR)
    sip_domain = r.get(table, p, "sip_domain", str, v.parse_hostname)
    transport = _choice(("udp", "tcp", "tls"), "transport")
    transports = r.items(table, p, "transports", transport, BAD_VALUE)
    sip_port = r.get(table, p, "sip_port", int, _range(1, 65535, "port"))
    tls_port = r.get(table, p, "tls_port", int, _range(1, 65535, "port"))
    rtp = r.get(table, p, "rtp_ports", str, _single_range)
    media = r.items(table, p, "media", v.parse_destination, BAD_CIDR)
    codec = r.get(table, p, "codec", str, _voice_codec)
    plc = r.get(table, p, "plc", bool)
    if sip_server is None:
        return None
    return Voip(
        sip_server=sip_server,
        sip_domain=sip_domain,
        transports=tuple(transports) or DEFAULTS.transports,
        sip_port=sip_port or DEFAULTS.sip_port,
        tls_port=tls_port or DEFAULTS.tls_port,
        rtp_ports=rtp or DEFAULTS.rtp_ports,
        media=tuple(media),
        codec=codec or DEFAULTS.codec,
        plc=DEFAULTS.plc if plc is None else plc,
    )


def _voice_codec(text: str) -> str:
    """One of VOICE_CODECS, in any case ("G711"), stored lower-case."""
    if text.lower() not in VOICE_CODECS:
        raise ValueError(
            f"{text!r} is not supported: use {' or '.join(repr(c) for c in VOICE_CODECS)}; the "
            "call-quality estimate needs the codec's published ITU-T G.113 values, which exist "
            "for those only (not for Opus or G.722)"
        )
    return text.lower()


def _responder_address(text: str) -> tuple[str | v.IPAddress, int]:
    """`[diagnose] responder`: ADDR:PORT with an IP address, never a name: the gateway firewall
    and the client's AllowedIPs are written from the address."""
    host, port = v.parse_endpoint(text)
    if isinstance(host, str):
        raise ValueError(
            f"{host!r} is a name; the responder needs an IP address: the gateway firewall and "
            f'the client\'s AllowedIPs need the address (for example "192.0.2.50:{port}")'
        )
    return host, port


def read_diagnose(r: _Reader, raw: Any) -> Diagnose:
    """`[diagnose]`: the office's UDP responder and `[[diagnose.targets]]` to check."""
    p = ("diagnose",)
    table = r.table(raw, p, DIAGNOSE_KEYS)
    responder = r.get(table, p, "responder", str, _responder_address, BAD_ENDPOINT)
    targets = table.get("targets", [])
    if not isinstance(targets, list):
        r.issue((*p, "targets"), WRONG_TYPE, "diagnose.targets must be [[diagnose.targets]]")
        targets = []
    read = (_read_target(r, index, item) for index, item in enumerate(targets))
    mirror = r.get(table, p, "sip_mirror", bool)
    return Diagnose(
        responder,
        tuple(t for t in read if t is not None),
        DEFAULTS.sip_mirror if mirror is None else mirror,
    )


def _read_target(r: _Reader, index: int, raw: Any) -> Target | None:
    p = ("diagnose", "targets", index)
    table = r.table(raw, p, TARGET_KEYS, ("name", "host"))
    name = r.get(table, p, "name", str, v.parse_name)
    host = r.get(table, p, "host", str, v.parse_host)
    port = r.get(table, p, "port", int, _range(1, 65535, "port"))
    kind = r.get(table, p, "kind", str, _choice(TARGET_KINDS, "kind"))
    kind = kind or DEFAULTS.target_kind
    host_key = r.get(table, p, "host_key", str, v.parse_host_key)
    if kind == "tcp" and "port" not in table:
        r.issue(p, MISSING_KEY, f"diagnose.targets[{index}] of kind tcp needs a port")
    if host_key is not None and kind != "ssh":
        r.issue((*p, "host_key"), WRONG_TYPE, "host_key belongs on a target of kind ssh")
    if not name or host is None:
        return None
    if port is None:
        port = _DEFAULT_TARGET_PORTS.get(kind)
    return Target(name, host, port, kind, host_key)


_DEFAULT_TARGET_PORTS = {
    "ssh": DEFAULTS.ssh_port,
    "https": DEFAULTS.https_port,
    "rdp": DEFAULTS.rdp_port,
}


def _family(parse: Callable[[str], T], version: int) -> Callable[[str], T]:
    def check(text: str) -> T:
        value = parse(text)
        if getattr(value, "version", version) != version:
            raise ValueError(f"{text!r} must be IPv{version}")
        return value

    return check


def _choice(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in options:
            raise ValueError(f"{what} {text!r} must be one of {', '.join(options)}")
        return text

    return check


def _single_range(text: str) -> tuple[int, int]:
    ranges = v.parse_port_ranges(text)
    if len(ranges) != 1:
        raise ValueError(f"{text!r} must be one range like 10000-20000")
    return ranges[0]


KEY_ORIGINS = ("generated", "client")


@dataclass(frozen=True)
class PeerField:
    """One key of a peer file. `PEER_FIELDS` is the only list of them: `peer_to_toml` writes them
    in its order, the fast reader's regular expression (profile.store) is built from it, and the
    schema below and validate's fast path read it."""

    key: str
    toml: type  # the TOML type: str or datetime
    required: bool
    check: Callable[[Any], Any]  # converts the TOML value; ValueError words what is wrong
    code: str = BAD_VALUE  # the issue code of a value that `check` refuses
    shape: str = ""  # a string as `peer_to_toml` writes it: characters that need no escaping
    default: str | None = None  # the value when the key is absent


def _aware(moment: datetime) -> datetime:
    """The moment in UTC, as netsetup writes and compares it (no offset means UTC).

    An offset can push a moment past the years datetime knows (0001-01-01T00:00:00+14:00 is in
    year 0 in UTC): that is a bad value here, not an OverflowError later in whatever reads it.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the years 1-9999 in UTC") from None


PEER_FIELDS = (
    PeerField("name", str, True, v.parse_name, shape=r"[a-z0-9-]{1,32}"),
    PeerField("mode", str, True, _choice(MODES, "mode"), shape=r"[a-z]{1,16}"),
    # the `name` of its `[[gateway]]` site (absent: the first); validate checks the site exists
    PeerField(
        "gateway",
        str,
        False,
        lambda s: v.parse_name(s, "gateway"),
        shape=r"[a-z0-9-]{1,32}",
    ),
    PeerField(
        "status",
        str,
        False,
        _choice(PEER_STATUSES, "status"),
        shape=r"[a-z]{1,16}",
        default="active",
    ),
    PeerField("public_key", str, True, _key, BAD_KEY, shape=r"[A-Za-z0-9+/=]{1,64}"),
    PeerField(
        "key_origin",
        str,
        False,
        _choice(KEY_ORIGINS, "key_origin"),
        shape=r"[a-z]{1,16}",
        default="generated",
    ),
    PeerField("address_v4", str, True, _family(v.parse_address, 4), BAD_CIDR, r"[0-9.]{1,15}"),
    PeerField("address_v6", str, False, _family(v.parse_address, 6), BAD_CIDR, r"[0-9a-f:.]{1,45}"),
    PeerField("created", datetime, True, _aware),
    PeerField("expires", datetime, False, _aware),
    PeerField("rotated", datetime, False, _aware),
    PeerField("revoked", datetime, False, _aware),
)
PEER_KEYS = tuple(f.key for f in PEER_FIELDS)
PEER_REQUIRED = tuple(f.key for f in PEER_FIELDS if f.required)


def parse_peer_data(data: dict[str, Any], file_stem: str) -> tuple[Peer | None, list[SchemaIssue]]:
    r = _Reader()
    r.table(data, (), PEER_KEYS, PEER_REQUIRED)
    values: dict[str, Any] = {
        f.key: r.get(data, (), f.key, f.toml, f.check, f.code) for f in PEER_FIELDS
    }
    name = values["name"]
    if name is not None and name != file_stem:
        r.issue(
            ("name",), BAD_VALUE, f"peer name {name!r} does not match its file name {file_stem!r}"
        )
    if any(values[key] is None for key in PEER_REQUIRED):
        return None, r.issues
    for f in PEER_FIELDS:
        if values[f.key] is None and f.default is not None:
            values[f.key] = f.default
    return Peer(**values), r.issues
