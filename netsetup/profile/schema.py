"""The strict schema of `profile.toml` and `peers/<name>.toml`.

Parsing never stops at the first mistake: it collects `SchemaIssue`s (a key path, a code, a
message) so `validate` can report all of them, while `load_profile` raises the first one. Unknown
keys come with a "did you mean".
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from netsetup.keys import key_error
from netsetup.profile import values as v
from netsetup.profile.model import (
    MODES,
    PEER_STATUSES,
    AccessRule,
    Diagnose,
    Dns,
    Gateway,
    Network,
    Peer,
    Portal,
    Profile,
    Target,
    Voip,
)
from netsetup.profile.tomlpos import KeyPath

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


@dataclass(frozen=True)
class SchemaIssue:
    path: KeyPath
    code: str
    message: str
    line: int | None = None  # known directly for syntax errors
    column: int | None = None


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
            raise ValueError(f"{what} {value} is outside {low}-{high}")
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
    network = v.parse_network(network_text)
    if len(parts) == 1:
        return AccessRule(network)
    proto, _, ports = parts[1].partition("/")
    if proto not in ("tcp", "udp"):
        raise ValueError(f"access rule {text!r}: protocol must be tcp or udp")
    return AccessRule(network, proto, v.parse_port_ranges(ports) if ports else ())


def _host_cidr(host: str) -> str:
    address = v.parse_address(host)
    return f"{address}/{address.max_prefixlen}"


PROFILE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PROFILE_KEYS = ("company", "gateway", "network", "dns", "access", "portal", "voip", "diagnose")


def parse_profile_data(
    data: dict[str, Any], profile_dir: Path
) -> tuple[Profile | None, list[SchemaIssue]]:
    r = _Reader()
    if not PROFILE_ID_RE.fullmatch(profile_dir.name):
        r.issue(
            (), BAD_VALUE, f"profile folder name {profile_dir.name!r} must be 1-64 of [a-z0-9._-]"
        )
    r.table(data, (), PROFILE_KEYS, ("company", "gateway", "network"))

    company = r.table(data.get("company", {}), ("company",), ("name", "contact"), ("name",))
    company_name = r.get(company, ("company",), "name", str, lambda s: v.check_text(s, "name"))
    contact = r.get(company, ("company",), "contact", str, lambda s: v.check_text(s, "contact"))

    gw = r.table(
        data.get("gateway", {}),
        ("gateway",),
        ("endpoint", "public_key", "interface", "listen_port"),
        ("endpoint", "public_key"),
    )
    endpoint = r.get(gw, ("gateway",), "endpoint", str, v.parse_endpoint, BAD_ENDPOINT)
    gw_key = r.get(gw, ("gateway",), "public_key", str, _key, BAD_KEY)
    gw_iface = r.get(gw, ("gateway",), "interface", str, v.parse_interface) or "wg0"
    listen = r.get(gw, ("gateway",), "listen_port", int, _range(1, 65535, "port"))

    net = r.table(
        data.get("network", {}),
        ("network",),
        (
            "tunnel_v4",
            "tunnel_v6",
            "gateway_v4",
            "gateway_v6",
            "mtu",
            "keepalive",
            "quarantine_days",
            "client_interface",
        ),
        ("tunnel_v4",),
    )
    p = ("network",)
    tunnel_v4 = r.get(net, p, "tunnel_v4", str, _family(v.parse_network, 4), BAD_CIDR)
    tunnel_v6 = r.get(net, p, "tunnel_v6", str, _family(v.parse_network, 6), BAD_CIDR)
    gateway_v4 = r.get(net, p, "gateway_v4", str, _family(v.parse_address, 4), BAD_CIDR)
    gateway_v6 = r.get(net, p, "gateway_v6", str, _family(v.parse_address, 6), BAD_CIDR)
    mtu = r.get(net, p, "mtu", int, _range(576, 9000, "MTU"))
    keepalive = r.get(net, p, "keepalive", int, _range(0, 65535, "keepalive"))
    quarantine = r.get(net, p, "quarantine_days", int, _range(0, 3650, "quarantine"))
    client_iface = r.get(net, p, "client_interface", str, v.parse_interface)
    for key, tunnel, longest in (("tunnel_v4", tunnel_v4, 30), ("tunnel_v6", tunnel_v6, 126)):
        if tunnel is not None and tunnel.prefixlen > longest:
            r.issue(
                (*p, key),
                BAD_VALUE,
                f"network.{key} {tunnel} leaves no address for peers beside the gateway "
                f"(use /{longest} or shorter)",
            )
    if gateway_v4 is not None and tunnel_v4 is not None and gateway_v4 not in tunnel_v4:
        r.issue(
            (*p, "gateway_v4"), BAD_VALUE, f"network.gateway_v4 {gateway_v4} is not in {tunnel_v4}"
        )
    if gateway_v6 is not None and tunnel_v6 is not None and gateway_v6 not in tunnel_v6:
        r.issue(
            (*p, "gateway_v6"), BAD_VALUE, f"network.gateway_v6 {gateway_v6} is not in {tunnel_v6}"
        )

    dns_t = r.table(data.get("dns", {}), ("dns",), ("servers", "search", "records"))
    servers = r.items(dns_t, ("dns",), "servers", v.parse_address, BAD_CIDR)
    search = r.items(dns_t, ("dns",), "search", v.parse_hostname, BAD_VALUE)
    records: list[tuple[str, v.IPAddress]] = []
    rec_t = r.table(
        dns_t.get("records", {}), ("dns", "records"), tuple(dns_t.get("records", {}) or ())
    )
    for name, address in rec_t.items():
        where = ("dns", "records", name)
        try:
            if not isinstance(address, str):
                raise ValueError("must be an address string")
            records.append((v.parse_hostname(name), v.parse_address(address)))
        except ValueError as exc:
            r.issue(where, BAD_VALUE, f"dns.records.{name}: {exc}")

    acc = r.table(data.get("access", {}), ("access",), ("dedicated", "agency", "agency_expires"))
    dedicated = r.items(acc, ("access",), "dedicated", parse_access_rule, BAD_CIDR)
    agency = r.items(acc, ("access",), "agency", parse_access_rule, BAD_CIDR)
    agency_expires = r.get(acc, ("access",), "agency_expires", str, v.parse_duration)

    portals: list[Portal] = []
    raw_portals = data.get("portal", [])
    if not isinstance(raw_portals, list):
        r.issue(("portal",), WRONG_TYPE, "portal must be an array of tables: [[portal]]")
        raw_portals = []
    for index, raw in enumerate(raw_portals):
        pp = ("portal", index)
        t = r.table(raw, pp, ("name", "host", "proto", "port"), ("name", "host", "port"))
        portal_name = r.get(t, pp, "name", str, v.parse_name)
        portal_host = r.get(t, pp, "host", str, v.parse_address, BAD_CIDR)
        proto = r.get(t, pp, "proto", str, _choice(("tcp", "udp"), "proto")) or "tcp"
        port = r.get(t, pp, "port", int, _range(1, 65535, "port"))
        if portal_name and portal_host and port:
            portals.append(Portal(portal_name, portal_host, proto, port))

    voip: Voip | None = None
    if "voip" in data:
        vt = r.table(
            data["voip"],
            ("voip",),
            (
                "sip_server",
                "sip_domain",
                "transports",
                "sip_port",
                "tls_port",
                "rtp_ports",
                "media",
            ),
            ("sip_server",),
        )
        pv = ("voip",)
        sip_server = r.get(vt, pv, "sip_server", str, v.parse_address, BAD_CIDR)
        sip_domain = r.get(vt, pv, "sip_domain", str, v.parse_hostname)
        transports = r.items(
            vt, pv, "transports", _choice(("udp", "tcp", "tls"), "transport"), BAD_VALUE
        )
        sip_port = r.get(vt, pv, "sip_port", int, _range(1, 65535, "port"))
        tls_port = r.get(vt, pv, "tls_port", int, _range(1, 65535, "port"))
        rtp = r.get(vt, pv, "rtp_ports", str, _single_range)
        media = r.items(vt, pv, "media", v.parse_network, BAD_CIDR)
        if sip_server is not None:
            voip = Voip(
                sip_server=sip_server,
                sip_domain=sip_domain,
                transports=tuple(transports) or ("udp", "tcp", "tls"),
                sip_port=sip_port or 5060,
                tls_port=tls_port or 5061,
                rtp_ports=rtp or (10000, 20000),
                media=tuple(media),
            )

    diagnose = Diagnose()
    if "diagnose" in data:
        dt = r.table(data["diagnose"], ("diagnose",), ("responder", "targets"))
        responder = r.get(dt, ("diagnose",), "responder", str, v.parse_endpoint, BAD_ENDPOINT)
        targets: list[Target] = []
        raw_targets = dt.get("targets", [])
        if not isinstance(raw_targets, list):
            r.issue(
                ("diagnose", "targets"), WRONG_TYPE, "diagnose.targets must be [[diagnose.targets]]"
            )
            raw_targets = []
        for index, raw in enumerate(raw_targets):
            tp = ("diagnose", "targets", index)
            t = r.table(raw, tp, ("name", "host", "port", "kind"), ("name", "host"))
            target_name = r.get(t, tp, "name", str, v.parse_name)
            target_host = r.get(t, tp, "host", str, v.parse_host)
            port = r.get(t, tp, "port", int, _range(1, 65535, "port"))
            kind = r.get(t, tp, "kind", str, _choice(("tcp", "ssh", "ping"), "kind")) or "tcp"
            if kind in ("tcp", "ssh") and port is None and "port" not in t and kind == "tcp":
                r.issue(tp, MISSING_KEY, f"diagnose.targets[{index}] of kind tcp needs a port")
            if target_name and target_host is not None:
                targets.append(
                    Target(target_name, target_host, port or (22 if kind == "ssh" else None), kind)
                )
        diagnose = Diagnose(responder, tuple(targets))

    if company_name is None or endpoint is None or gw_key is None or tunnel_v4 is None:
        return None, r.issues
    assert isinstance(tunnel_v4, ipaddress.IPv4Network)
    profile = Profile(
        id=profile_dir.name,
        directory=profile_dir,
        company=company_name,
        contact=contact,
        gateway=Gateway(endpoint[0], endpoint[1], gw_key, gw_iface, listen or endpoint[1]),
        network=Network(
            tunnel_v4=tunnel_v4,
            tunnel_v6=tunnel_v6,  # type: ignore[arg-type]
            gateway_v4=gateway_v4,  # type: ignore[arg-type]
            gateway_v6=gateway_v6,  # type: ignore[arg-type]
            mtu=mtu or 1380,
            keepalive=25 if keepalive is None else keepalive,
            quarantine_days=30 if quarantine is None else quarantine,
            client_interface=client_iface or _default_client_interface(profile_dir.name),
        ),
        dns=Dns(tuple(servers), tuple(search), tuple(records)),
        dedicated=tuple(dedicated),
        agency=tuple(agency),
        agency_expires=agency_expires or timedelta(days=30),
        portals=tuple(portals),
        voip=voip,
        diagnose=diagnose,
    )
    return profile, r.issues


def _default_client_interface(profile_id: str) -> str:
    return ("wg-" + profile_id)[:15].rstrip("-.")


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
