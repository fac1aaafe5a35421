"""What the rules look at (the loaded tree) and where they put what they find (the context)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from netsetup.errors import one_line
from netsetup.profile.model import AccessRule, Gateway, Network, Peer, Profile
from netsetup.profile.store import ParsedFile
from netsetup.profile.tomlpos import KeyPath
from netsetup.profile.values import IPNetwork
from netsetup.validate.findings import Finding, Severity
from netsetup.validate.registry import RULES


def display(path: Path) -> str:
    text = path.as_posix()
    if text.isprintable():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # a file name that is not UTF-8 (its bytes are kept as surrogates): show those bytes as
        # \xff so that every output format can be written and read
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return one_line(text)  # a line break in a name must not split a finding's line


@dataclass
class PeerEntry:
    peer: Peer | None  # None when the file breaks the schema (already reported)
    file: ParsedFile

    @property
    def name(self) -> str:
        return self.file.path.stem


@dataclass
class ProfileEntry:
    id: str
    directory: Path
    profile: Profile | None  # None when profile.toml breaks the schema (already reported)
    data: dict[str, Any] | None  # the raw TOML, for "was this key written at all?"
    file: ParsedFile
    peers: list[PeerEntry] = field(default_factory=list)

    def valid_peers(self) -> list[tuple[PeerEntry, Peer]]:
        return [(entry, entry.peer) for entry in self.peers if entry.peer is not None]


@dataclass
class OtherFile:
    """A file under a validated path that is neither profile.toml nor a peer: secret scan only."""

    path: Path
    text: str


@dataclass
class Tree:
    profiles: list[ProfileEntry]
    others: list[OtherFile]

    def file_count(self) -> int:
        return len(self.others) + sum(1 + len(entry.peers) for entry in self.profiles)

    def files(self) -> list[tuple[Path, str]]:
        """Every file read, with its text: profile files, peer files and the others."""
        out: list[tuple[Path, str]] = []
        for entry in self.profiles:
            out.append((entry.file.path, entry.file.text))
            out.extend((p.file.path, p.file.text) for p in entry.peers)
        out.extend((o.path, o.text) for o in self.others)
        return out


class Context:
    """Collects findings; positions are looked up only here, when something is found."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.findings: list[Finding] = []

    def report(
        self,
        file: ParsedFile,
        keypath: KeyPath,
        code: str,
        message: str,
        severity: Severity | None = None,
    ) -> None:
        line, column = file.locate(keypath)
        self.report_at(display(file.path), line, column, code, message, severity)

    def report_at(
        self,
        path: str,
        line: int,
        column: int,
        code: str,
        message: str,
        severity: Severity | None = None,
    ) -> None:
        rule = RULES[code]
        self.findings.append(
            Finding(path, line, column, code, rule.name, severity or rule.severity, message)
        )

    def where(self, file: ParsedFile, keypath: KeyPath) -> str:
        """`path:line` of a key, for messages that point at the other half of a clash."""
        line, _ = file.locate(keypath)
        return f"{display(file.path)}:{line}"


def quarantine_end(profile: Profile, peer: Peer) -> datetime | None:
    if peer.status != "revoked" or peer.revoked is None:
        return None
    try:
        return peer.revoked + timedelta(days=profile.network.quarantine_days)
    except OverflowError:  # revoked late in year 9999: quarantined for as long as dates go
        return datetime.max.replace(tzinfo=UTC)


def gateway_addresses(network: Network) -> tuple[IPv4Address | None, IPv6Address | None]:
    """The gateway's tunnel addresses; None where the tunnel has no room for one (a /32 at the
    top of the address space, already an NS009 finding of the schema)."""
    try:
        v4: IPv4Address | None = network.gateway_address_v4
    except ValueError:
        v4 = None
    try:
        v6 = network.gateway_address_v6
    except ValueError:
        v6 = None
    return v4, v6


def site_tables(profile: Profile) -> list[tuple[Gateway, KeyPath]]:
    """Every gateway of the profile with the key path of its table: `[gateway]`, or each
    `[[gateway]]` site."""
    if not profile.sites:
        return [(profile.gateway, ("gateway",))]
    return [(site, ("gateway", index)) for index, site in enumerate(profile.sites)]


def tunnel_subnets(profile: Profile) -> list[tuple[IPNetwork, KeyPath, str]]:
    """The tunnel subnets the gateways use, each with its key path and how a message names it
    (`network.tunnel_v4`, or `gateway[1].tunnel_v4` for a site's own)."""
    out: list[tuple[IPNetwork, KeyPath, str]] = []
    for site, path in site_tables(profile):
        if site.tunnel_v4 is None:
            if path == ("gateway",) or path == ("gateway", 0):  # the first site: [network]'s
                network = profile.network
                out.append((network.tunnel_v4, ("network", "tunnel_v4"), "network.tunnel_v4"))
                if network.tunnel_v6 is not None:
                    out.append((network.tunnel_v6, ("network", "tunnel_v6"), "network.tunnel_v6"))
            continue
        where = f"gateway[{path[1]}]"
        out.append((site.tunnel_v4, (*path, "tunnel_v4"), f"{where}.tunnel_v4"))
        if site.tunnel_v6 is not None:
            out.append((site.tunnel_v6, (*path, "tunnel_v6"), f"{where}.tunnel_v6"))
    return out


def raw_list(entry: ProfileEntry, table: str, key: str) -> list[tuple[int, str]]:
    """The string elements of a list as written, with their index in the file."""
    section = (entry.data or {}).get(table)
    values = section.get(key) if isinstance(section, dict) else None
    if not isinstance(values, list):
        return []
    return [(index, value) for index, value in enumerate(values) if isinstance(value, str)]


def indexed_rules(entry: ProfileEntry, mode: str) -> list[tuple[int, AccessRule]]:
    """`access.<mode>` rules with their index in the file (bad elements are skipped: NS0xx)."""
    from netsetup.profile.schema import parse_access_rule

    out: list[tuple[int, AccessRule]] = []
    for index, text in raw_list(entry, "access", mode):
        try:
            out.append((index, parse_access_rule(text)))
        except ValueError:
            continue
    return out


def indexed_networks(entry: ProfileEntry, table: str, key: str) -> list[tuple[int, IPNetwork]]:
    """Networks or addresses (as host networks) of a list, with their index in the file."""
    out: list[tuple[int, IPNetwork]] = []
    for index, text in raw_list(entry, table, key):
        try:
            out.append((index, ipaddress.ip_network(text)))
        except ValueError:
            continue
    return out
