"""`netsetup import`: adopt the peers of an existing WireGuard server into a profile without
re-keying anyone.

A wg-quick server config (or what a gateway runs, `wg show <iface> dump`) becomes peer files: the
public keys are kept, the addresses are the peers' AllowedIPs, the preshared keys go into the
admin's state folder (so `render` and `apply` can write them back), and the names come from the
comments the common managers write above or inside each `[Peer]`:

    ### begin maria ###            PiVPN (and `### end maria ###` after the section)
    # Client: maria (9b1c...)      wg-easy
    # Name = maria                 hand-kept configs, wg-meta style
    # friendly_name = maria        prometheus_wireguard_exporter's convention
    # maria (dedicated)            netsetup's own rendered config (the mode is taken from it)
    # maria                        a lone comment line right above `[Peer]`

A name is cut down to a netsetup peer name (lowercase, anything else `-`, at most 32
characters, unique with `-2`, `-3`); a peer without one gets `peer-<n>`.

Nothing is written until every peer has been checked: one peer with AllowedIPs that are not one
/32 (and at most one /128) inside the tunnel subnets stops the whole import, with every such
problem named by peer and line. Each peer is then written as one change through the provisioning
journal (its preshared key first, its peer file as the commit point), so a crash leaves whole
peers only, and running the import again skips those already in (same public key). A failure
in the middle takes back the peers this run wrote.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.errors import ConflictError, InputError
from netsetup.fsutil import remove_file
from netsetup.keys import SecretKey, fingerprint, key_error, public_from_private
from netsetup.profile.model import MODES, Peer, Profile
from netsetup.profile.store import (
    RETIRED_RE,
    peer_path,
    peer_to_toml,
    read_regular_bytes,
    readable_peers,
    write_peer_text,
)
from netsetup.profile.values import PeerName, ProfileId, format_time, tunnel_address_problem
from netsetup.state import StateDir

MAX_CONFIG_BYTES = 64 << 20  # a 10,000-peer server config is about 2 MB
MAX_NAME = 32
GENERATED_PREFIX = "peer"

# A mode for each peer: one for all, or asked per peer (the CLI asks on a terminal). The
# chooser gets the name the peer will have and the imported peer (its comments, its addresses).
ModeChooser = Callable[[str, "ImportedPeer"], str]


# -- what a config holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedPeer:
    """One peer found on an existing server: public facts, its preshared key (a SecretKey, never
    shown) and the comments around its section, from which its name comes."""

    public_key: str
    preshared_key: SecretKey | None
    allowed_ips: tuple[str, ...]
    source: str  # the file it came from, or "live" (only in `wg show dump`)
    line: int = 0  # the line of its `[Peer]` (0: live only)
    comments_above: tuple[str, ...] = ()  # comment texts between the previous section and it
    comments_inside: tuple[str, ...] = ()  # comment texts inside its section
    adjacent_comment: str | None = None  # a lone comment line right above `[Peer]`
    keepalive: int | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


def imported_peer(
    public_key: str,
    preshared_key: SecretKey | None,
    allowed_ips: Sequence[str],
    comments: Sequence[str] = (),
    *,
    source: str = "live",
    line: int = 0,
    keepalive: int | None = None,
) -> ImportedPeer:
    """An ImportedPeer from a peer found elsewhere (`apply --adopt`'s drift peers): `comments`
    are the comment lines right above its `[Peer]` in the gateway's config file, if any."""
    above = tuple(c.strip() for c in comments)
    adjacent = above[-1].lstrip("#").strip() if above else None
    return ImportedPeer(
        public_key,
        preshared_key,
        tuple(allowed_ips),
        source,
        line,
        comments_above=above,
        adjacent_comment=adjacent,
        keepalive=keepalive,
    )


@dataclass(frozen=True)
class ImportedInterface:
    """The `[Interface]` of a server config, as far as netsetup uses it."""

    private_key: SecretKey | None
    addresses: tuple[str, ...]
    listen_port: int | None
    line: int


@dataclass(frozen=True)
class WgConfig:
    """A parsed wg-quick server config (or a gateway's live state turned into one)."""

    source: str
    interface: ImportedInterface | None
    peers: tuple[ImportedPeer, ...]


_SECTION = re.compile(r"^\[\s*([A-Za-z]+)\s*\]$")
_PEER_KEYS = {"publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"}


def read_wg_conf(path: Path) -> WgConfig:
    """Read and parse a wg-quick config file; an unreadable or malformed one is an InputError
    naming the file (and the line), never its contents."""
    try:
        raw = read_regular_bytes(path)
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    if isinstance(raw, str):
        raise InputError(raw, where=str(path))
    if len(raw) > MAX_CONFIG_BYTES:
        raise InputError("far too large for a WireGuard config", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None
    return parse_wg_conf(text, str(path))


@dataclass
class _Section:
    kind: str
    line: int
    above: list[str]
    adjacent: str | None
    values: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    inside: list[str] = field(default_factory=list)


def parse_wg_conf(text: str, source: str) -> WgConfig:
    """Parse wg-quick's format as `wg` reads it: `[Interface]` and `[Peer]` sections, `Key =
    value` lines (keys in any case, whitespace ignored, `#` starts a comment), AllowedIPs that may
    repeat. The comments are kept for the names."""
    sections: list[_Section] = []
    pending: list[str] = []  # comment texts since the last key or section line
    run: list[str] = []  # the comment lines just before this one, without a blank line between
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            run = []
            continue
        if line.startswith("#"):
            pending.append(line)
            if not _PIVPN_END.match(line):  # closes the section before; says nothing of the next
                run.append(line.lstrip("#").strip())
            continue
        header = _SECTION.fullmatch(line)
        if header:
            kind = header.group(1).lower()
            if kind not in ("interface", "peer"):
                raise InputError.at(f"unknown section [{header.group(1)}]", source, number)
            # a lone comment line right above the header may be its name; a block may not
            lone = run[0] if len(run) == 1 else None
            sections.append(_Section(kind, number, pending, lone))
            pending, run = [], []
            continue
        if not sections:
            raise InputError.at("a setting before any [Interface] or [Peer]", source, number)
        key, value = _key_value(line, source, number)
        section = sections[-1]
        section.inside.extend(pending)
        pending, run = [], []
        section.values.setdefault(key, []).append((number, value))
    if sections:
        sections[-1].inside.extend(pending)
    interfaces = [s for s in sections if s.kind == "interface"]
    if len(interfaces) > 1:
        raise InputError.at("a second [Interface] section", source, interfaces[1].line)
    interface = _interface(interfaces[0], source) if interfaces else None
    peers = tuple(_peer(s, source) for s in sections if s.kind == "peer")
    return WgConfig(source, interface, peers)


def _key_value(line: str, source: str, number: int) -> tuple[str, str]:
    content = line.split("#", 1)[0]  # wg: a comment may follow a value
    key, sep, value = content.partition("=")
    if not sep:
        raise InputError.at("a line that is neither `Key = value` nor a section", source, number)
    # wg removes every space and tab of a line before it reads it
    return key.strip().lower(), "".join(value.split())


def _single(section: _Section, key: str, source: str) -> tuple[int, str] | None:
    found = section.values.get(key, [])
    if len(found) > 1:
        raise InputError.at(f"{key} given twice in one section", source, found[1][0])
    return found[0] if found else None


def _secret(section: _Section, key: str, source: str, what: str) -> SecretKey | None:
    found = _single(section, key, source)
    if found is None:
        return None
    try:
        return SecretKey(found[1])
    except ValueError:  # the value is a secret: never part of the message
        raise InputError.at(f"{what} is not a WireGuard key", source, found[0]) from None


def _interface(section: _Section, source: str) -> ImportedInterface:
    port = _single(section, "listenport", source)
    listen_port = None
    if port is not None:
        if not port[1].isdigit() or not 0 < int(port[1]) < 65536:
            raise InputError.at(f"ListenPort {port[1]!r} is not a port", source, port[0])
        listen_port = int(port[1])
    addresses = tuple(
        part for _, value in section.values.get("address", []) for part in value.split(",") if part
    )
    private = _secret(section, "privatekey", source, "PrivateKey")
    return ImportedInterface(private, addresses, listen_port, section.line)


def _peer(section: _Section, source: str) -> ImportedPeer:
    for key, found in section.values.items():
        if key not in _PEER_KEYS:
            raise InputError.at(f"unknown setting {key!r} in a [Peer] section", source, found[0][0])
    public = _single(section, "publickey", source)
    if public is None:
        raise InputError.at("a [Peer] without PublicKey", source, section.line)
    problem = key_error(public[1])
    if problem:
        raise InputError.at(f"PublicKey is not a WireGuard key ({problem})", source, public[0])
    allowed = tuple(
        part
        for _, value in section.values.get("allowedips", [])
        for part in value.split(",")
        if part
    )
    keepalive = _single(section, "persistentkeepalive", source)
    seconds = None
    if keepalive is not None and keepalive[1] != "off":
        if not keepalive[1].isdigit() or int(keepalive[1]) > 65535:
            raise InputError.at(
                f"PersistentKeepalive {keepalive[1]!r} is not a number of seconds",
                source,
                keepalive[0],
            )
        seconds = int(keepalive[1]) or None
    return ImportedPeer(
        public_key=public[1],
        preshared_key=_secret(section, "presharedkey", source, "PresharedKey"),
        allowed_ips=allowed,
        source=source,
        line=section.line,
        comments_above=tuple(_comment_text(c) for c in section.above),
        comments_inside=tuple(_comment_text(c) for c in section.inside),
        adjacent_comment=section.adjacent,
        keepalive=seconds,
    )


def _comment_text(line: str) -> str:
    return line.strip()


# -- a gateway's live state ------------------------------------------------------------------


def parse_dump(text: str, source: str = "live") -> tuple[SecretKey | None, list[ImportedPeer]]:
    """`wg show <iface> dump`: the interface line (private key, public key, port, fwmark), then
    one line per peer (public key, preshared key, endpoint, allowed ips, latest handshake, rx,
    tx, keepalive), tab-separated, `(none)` and `off` for nothing."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None, []
    head = lines[0].split("\t")
    private = None
    if head and head[0] not in ("(none)", ""):
        try:
            private = SecretKey(head[0])
        except ValueError:
            raise InputError(
                "the live interface's private key is not a key", where=source
            ) from None
    peers = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) < 8 or key_error(cells[0]):
            raise InputError(f"line {number} of `wg show dump` is not a peer line", where=source)
        psk = None
        if cells[1] != "(none)":
            try:
                psk = SecretKey(cells[1])
            except ValueError:
                raise InputError(
                    f"line {number} of `wg show dump`: the preshared key is not a key",
                    where=source,
                ) from None
        allowed = () if cells[3] == "(none)" else tuple(p for p in cells[3].split(",") if p)
        if cells[7] != "off" and not cells[7].isdigit():
            raise InputError(f"line {number} of `wg show dump` is not a peer line", where=source)
        keepalive = None if cells[7] in ("off", "0") else int(cells[7])
        peers.append(ImportedPeer(cells[0], psk, allowed, source, keepalive=keepalive))
    return private, peers


def merge_live(config: WgConfig | None, live: Sequence[ImportedPeer]) -> WgConfig:
    """The conf file's peers with what the gateway runs: a peer in both takes the live preshared
    key and AllowedIPs (what its assistant uses now) and keeps the file's comments (its name);
    peers only live come after, without a name of their own."""
    by_key = {peer.public_key: peer for peer in live}
    peers: list[ImportedPeer] = []
    for peer in config.peers if config else ():
        running = by_key.pop(peer.public_key, None)
        if running is not None:
            peer = replace(
                peer, preshared_key=running.preshared_key, allowed_ips=running.allowed_ips
            )
        peers.append(peer)
    peers.extend(by_key.values())
    source = config.source if config else "live"
    return WgConfig(source, config.interface if config else None, tuple(peers))


# -- names ------------------------------------------------------------------------------------

_PIVPN = re.compile(r"^###\s*begin\s+(.+?)\s*###$", re.IGNORECASE)
_PIVPN_END = re.compile(r"^###\s*end\s+.*###$", re.IGNORECASE)
_WG_EASY = re.compile(r"^#\s*Client:\s*(.+?)(?:\s+\([^()]*\))?$", re.IGNORECASE)
_NAME_KEY = re.compile(r"^#+\s*(?:friendly_name|name)\s*[=:]\s*(.+)$", re.IGNORECASE)
# what netsetup's gateway render writes above a peer: "# maria (dedicated, expires ...)"
_NETSETUP = re.compile(r"^#\s*([a-z0-9][a-z0-9-]{0,31})\s+\((dedicated|agency)(?:,[^()]*)?\)$")


def name_from_comments(peer: ImportedPeer) -> tuple[str | None, str | None]:
    """The name (as written, not yet cut down) and the mode the comments give a peer."""
    for comment in reversed(peer.comments_above):
        match = _PIVPN.match(comment)
        if match:
            return match.group(1), None
    for comment in reversed(peer.comments_above):
        match = _WG_EASY.match(comment)
        if match:
            return match.group(1), None
    for comment in (*peer.comments_inside, *reversed(peer.comments_above)):
        match = _NAME_KEY.match(comment)
        if match:
            return match.group(1).strip().strip("\"'"), None
    adjacent = peer.adjacent_comment
    if adjacent is not None:
        match = _NETSETUP.match(f"# {adjacent}")
        if match:
            return match.group(1), match.group(2)
        return adjacent, None
    return None, None


def sanitise_name(raw: str) -> str | None:
    """`raw` cut down to a peer name: accents dropped, lowercase, every other character `-`,
    runs of `-` joined, no `-` at either end, at most 32 characters. None when nothing is left."""
    decomposed = unicodedata.normalize("NFKD", raw)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    dashed = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")
    cut = dashed[:MAX_NAME].strip("-")
    return cut or None


def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    for n in range(2, 100_000):
        suffix = f"-{n}"
        candidate = base[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise ConflictError(f"no free name for {base!r}")  # pragma: no cover (100,000 peers)


def _generated(taken: set[str], start: int) -> tuple[str, int]:
    n = start
    while f"{GENERATED_PREFIX}-{n}" in taken:
        n += 1
    return f"{GENERATED_PREFIX}-{n}", n + 1


def taken_names(profile: Profile) -> set[str]:
    """Every name a peer file holds, retired records' too (a quarantined name stays taken)."""
    try:
        stems = [n[:-5] for n in os.listdir(profile.peers_dir) if n.endswith(".toml")]
    except (FileNotFoundError, NotADirectoryError):
        return set()
    names = set()
    for stem in stems:
        retired = RETIRED_RE.fullmatch(stem)
        names.add(retired.group(1) if retired else stem)
    return names


# -- checking the peers against the profile ---------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    """Why one peer cannot be imported as it is."""

    peer: str  # the name it would have had, or its key's fingerprint
    where: str  # file:line
    what: str

    def __str__(self) -> str:
        return f"{self.where}: peer {self.peer!r}: {self.what}"


class ImportRefused(InputError):
    """One or more peers cannot be imported; nothing was written. `problems` lists them all."""

    def __init__(self, problems: Sequence[ImportProblem]) -> None:
        first = problems[0]
        more = (
            f" (and {len(problems) - 1} more problem(s), listed above)" if len(problems) > 1 else ""
        )
        super().__init__(
            f"peer {first.peer!r}: {first.what}; nothing was imported{more}", where=first.where
        )
        self.problems = list(problems)


def _addresses(
    profile: Profile, peer: ImportedPeer
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None, str | None]:
    """The peer's tunnel addresses from its AllowedIPs, or why they are not usable."""
    network = profile.network
    v4: list[ipaddress.IPv4Address] = []
    v6: list[ipaddress.IPv6Address] = []
    for text in peer.allowed_ips:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            return None, None, f"AllowedIPs {text!r} is not a network"
        if net.num_addresses != 1:
            return (
                None,
                None,
                (
                    f"AllowedIPs {text} is a network, not one address: netsetup gives each "
                    "assistant one /32 (and one /128); route networks behind an assistant by hand"
                ),
            )
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net.network_address)
        else:
            v6.append(net.network_address)
    if len(v4) != 1 or len(v6) > 1:
        found = ", ".join(peer.allowed_ips) or "none"
        return None, None, f"AllowedIPs must be one /32 and at most one /128 (found: {found})"
    subnets: list[tuple[Any, Any, Any]] = [(v4[0], network.tunnel_v4, network.gateway_address_v4)]
    if v6:
        if network.tunnel_v6 is None:
            return None, None, f"AllowedIPs {v6[0]}/128 but the profile has no tunnel_v6"
        subnets.append((v6[0], network.tunnel_v6, network.gateway_address_v6))
    for address, subnet, gateway in subnets:
        problem = tunnel_address_problem(address, subnet, gateway)
        if problem:
            return None, None, f"AllowedIPs {address}/{address.max_prefixlen} {problem}"
    return v4[0], (v6[0] if v6 else None), None


@dataclass(frozen=True)
class PlannedPeer:
    """An imported peer with the name, mode and peer file it gets."""

    imported: ImportedPeer
    peer: Peer
    name_source: str  # "comment" or "generated"


@dataclass(frozen=True)
class SkippedPeer:
    """A peer already in the profile (the same public key): left as it is."""

    name: str
    fingerprint: str
    status: str


@dataclass(frozen=True)
class AdoptionPlan:
    """What an import would write, checked before anything is."""

    planned: tuple[PlannedPeer, ...]
    skipped: tuple[SkippedPeer, ...]


def _site_name(profile: Profile) -> str | None:
    """The `gateway` a peer file of this site carries: None for the first site."""
    first = profile.gateways[0].name
    return None if profile.gateway.name == first else profile.gateway.name


def _existing_holders(profile: Profile, now: datetime) -> tuple[dict[str, Peer], dict[Any, str]]:
    """The profile's peers by public key, and the addresses held (active or in quarantine)."""
    from datetime import timedelta

    quarantine = timedelta(days=profile.network.quarantine_days)
    by_key: dict[str, Peer] = {}
    held: dict[Any, str] = {}
    for peer in readable_peers(profile):
        by_key.setdefault(peer.public_key, peer)
        released = (peer.revoked or peer.created) + quarantine
        if peer.status == "revoked" and released <= now:
            continue
        for address in (peer.address_v4, peer.address_v6):
            if address is not None:
                held.setdefault(address, peer.name)
    return by_key, held


@dataclass(eq=False)
class _Chosen:
    """A peer that passed the checks: its name (and where it came from) and addresses."""

    imported: ImportedPeer
    name: str
    name_source: str
    mode_hint: str | None
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address | None


@dataclass(eq=False)
class _Planner:
    """The checks of `plan_adoption`, peer by peer, gathering every problem."""

    profile: Profile
    by_key: dict[str, Peer]
    held: dict[Any, str]
    taken: set[str]
    problems: list[ImportProblem] = field(default_factory=list)
    skipped: list[SkippedPeer] = field(default_factory=list)
    seen_keys: dict[str, ImportedPeer] = field(default_factory=dict)
    claimed: dict[Any, str] = field(default_factory=dict)
    counter: int = 1

    def take(self, peer: ImportedPeer) -> _Chosen | None:
        label = fingerprint(peer.public_key)
        known = self.by_key.get(peer.public_key)
        if known is not None:
            self.skipped.append(SkippedPeer(known.name, label, known.status))
            return None
        first = self.seen_keys.setdefault(peer.public_key, peer)
        if first is not peer:
            self.refuse(label, peer, f"the same PublicKey as the peer at {first.where}")
            return None
        if peer.public_key == self.profile.gateway.public_key:
            self.refuse(label, peer, "its PublicKey is the gateway's own")
            return None
        name, source, hint = self.name(peer)
        v4, v6, problem = _addresses(self.profile, peer)
        problem = problem or self.claim(name, (v4, v6))
        if problem is not None or v4 is None:
            self.refuse(name, peer, problem or "no IPv4 address")
            return None
        return _Chosen(peer, name, source, hint, v4, v6)

    def refuse(self, label: str, peer: ImportedPeer, what: str) -> None:
        self.problems.append(ImportProblem(label, peer.where, what))

    def name(self, peer: ImportedPeer) -> tuple[str, str, str | None]:
        raw, hint = name_from_comments(peer)
        base = sanitise_name(raw) if raw else None
        if base is None:
            name, self.counter = _generated(self.taken, self.counter)
            source = "generated"
        else:
            name, source = _unique(base, self.taken), "comment"
        self.taken.add(name)
        return name, source, hint

    def claim(self, name: str, addresses: tuple[Any, Any]) -> str | None:
        for address in addresses:
            if address is None:
                continue
            holder = self.held.get(address) or self.claimed.get(address)
            if holder is not None:
                return f"its address {address} is already held by peer {holder!r}"
            self.claimed[address] = name
        return None


def plan_adoption(
    profile: Profile,
    peers: Sequence[ImportedPeer],
    *,
    mode: str | ModeChooser,
    now: datetime,
) -> AdoptionPlan:
    """Names, modes and addresses for `peers` (`profile` is the view of the gateway they are on,
    `Profile.site`). ImportRefused lists every peer that cannot be taken as it is; the modes are
    asked (a chooser) only once every peer has passed."""
    by_key, held = _existing_holders(profile, now)
    planner = _Planner(profile, by_key, held, taken_names(profile))
    chosen = [c for c in (planner.take(peer) for peer in peers) if c is not None]
    if planner.problems:
        raise ImportRefused(planner.problems)
    planned = []
    for item in chosen:
        peer_mode = _mode_for(mode, item.mode_hint, item.name, item.imported)
        expires = now + profile.agency_expires if peer_mode == "agency" else None
        record = Peer(
            name=PeerName(item.name),
            mode=peer_mode,
            public_key=item.imported.public_key,
            address_v4=item.v4,
            address_v6=item.v6,
            created=now,
            expires=expires,
            key_origin="client",  # the assistant holds the private key; netsetup never had it
            gateway=_site_name(profile),
        )
        planned.append(PlannedPeer(item.imported, record, item.name_source))
    return AdoptionPlan(tuple(planned), tuple(planner.skipped))


def _mode_for(mode: str | ModeChooser, hint: str | None, name: str, peer: ImportedPeer) -> str:
    if isinstance(mode, str):
        chosen = mode
    elif hint is not None:
        chosen = hint  # netsetup's own config said which
    else:
        chosen = mode(name, peer)
    if chosen not in MODES:
        raise InputError(f"mode {chosen!r} must be one of {', '.join(MODES)}")
    return chosen


# -- writing ----------------------------------------------------------------------------------


def _check_site_field(profile: Profile) -> None:
    """A peer of a site other than the first must say so in its file (`gateway = "..."`)."""
    from netsetup.profile.schema import PEER_KEYS

    if _site_name(profile) is not None and "gateway" not in PEER_KEYS:
        raise InputError(
            "peer files cannot name their gateway yet (no `gateway` key in this version), so "
            f"peers of site {profile.gateway.name!r} cannot be imported",
            where=str(profile.profile_file),
        )


def adopt_peers(
    profile: Profile,
    peers: Sequence[ImportedPeer],
    *,
    mode: str | ModeChooser,
    now: datetime,
    state: StateDir | None = None,
    action: str = "import",
) -> list[Path]:
    """Write `peers` into `profile` (the view of their gateway, `Profile.site`) as peer files;
    returns the files written. Peers already in the profile are left alone. With `state`, each
    peer's preshared key is saved there (so this admin can render it). Holds the profile lock;
    all or nothing (see the module docstring)."""
    plan, _ = adopt(profile, peers, mode=mode, now=now, state=state, action=action)
    return [peer_path(profile, PeerName(p.peer.name)) for p in plan.planned]


def adopt(
    profile: Profile,
    peers: Sequence[ImportedPeer],
    *,
    mode: str | ModeChooser,
    now: datetime,
    state: StateDir | None,
    action: str = "import",
    before: Callable[[], Callable[[], None] | None] | None = None,
) -> tuple[AdoptionPlan, Callable[[], None] | None]:
    """`adopt_peers` returning its plan. `before` runs under the lock once the plan is checked
    and before any peer is written (the gateway key); it returns how to take itself back."""
    from netsetup.provision.journal import recover
    from netsetup.provision.service import _lock, _prepare

    _check_site_field(profile)
    state = state or StateDir()  # the admin's: where `render` and `apply` look
    pid = _prepare(profile, state)
    with _lock(profile):
        recover(profile, pid, state)
        plan = plan_adoption(profile, peers, mode=mode, now=now)
        undo_before = before() if before is not None else None
        written: list[PlannedPeer] = []
        try:
            for planned in plan.planned:
                _write_one(profile, pid, state, planned, now, action)
                written.append(planned)
        except BaseException:
            for planned in reversed(written):
                _take_back(profile, pid, state, planned, now, action)
            if undo_before is not None:
                undo_before()
            raise
    return plan, undo_before


def _write_one(
    profile: Profile,
    pid: ProfileId,
    state: StateDir,
    planned: PlannedPeer,
    now: datetime,
    action: str,
) -> None:
    """One peer as one journaled change: its preshared key, then its peer file (the commit)."""
    from netsetup.provision.journal import Journal, begin, finish, missing_dirs, text_hash, undo

    peer, psk = planned.peer, planned.imported.preshared_key
    name = PeerName(peer.name)
    text = peer_to_toml(peer)
    addresses = [str(a) for a in (peer.address_v4, peer.address_v6) if a is not None]
    audit = state.audit_line(
        action,
        now,
        profile=pid,
        peer=name,
        mode=peer.mode,
        fingerprint=fingerprint(peer.public_key),
        addresses=addresses,
        key_origin=peer.key_origin,
        preshared_key="kept" if psk is not None else "none",
    )
    journal = Journal(name, text_hash(text), audit=audit)
    psk_file = state.psk_path(pid, name, peer.public_key)
    if psk is not None:
        journal.undo.append(str(psk_file))
        journal.undo_dirs.extend(str(p) for p in missing_dirs(psk_file.parent))
    path = begin(state, pid, journal)
    try:
        if psk is not None:
            state.save_psk(pid, name, peer.public_key, psk)
        write_peer_text(profile, name, text)
    except BaseException:
        undo(path, journal, profile)
        raise
    finish(state, path, journal, profile)


def _take_back(
    profile: Profile,
    pid: ProfileId,
    state: StateDir,
    planned: PlannedPeer,
    now: datetime,
    action: str,
) -> None:
    """Remove a peer this run imported (a later one failed): its file and preshared key."""
    name = PeerName(planned.peer.name)
    remove_file(peer_path(profile, name))
    remove_file(state.psk_path(pid, name, planned.peer.public_key))
    state.audit(
        f"{action}-undone",
        now,
        profile=pid,
        peer=name,
        fingerprint=fingerprint(planned.peer.public_key),
    )


# -- the gateway's own key --------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayKeyOutcome:
    """What the import did with the `[Interface]` private key."""

    action: str  # "none" (no key in the config), "kept" (already stored), "stored", "taken"
    public_key: str | None = None
    previous_public_key: str | None = None


def _gateway_key_plan(
    profile: Profile, config: WgConfig, state: StateDir, take: bool
) -> tuple[GatewayKeyOutcome, SecretKey | None]:
    """Decide (and refuse) before anything is written."""
    interface = config.interface
    if interface is None or interface.private_key is None:
        return GatewayKeyOutcome("none"), None
    private = interface.private_key
    public = public_from_private(private)
    current = profile.gateway.public_key
    if public != current:
        if not take:
            raise ConflictError(
                f"the config's [Interface] key (public key {fingerprint(public)}) is not the "
                f"gateway's key in the profile ({fingerprint(current)}): peers keep working only "
                "with the key they know; pass --take-gateway-key to make the config's key the "
                "profile's (public_key in profile.toml is rewritten)",
                where=f"{config.source}:{interface.line}" if interface.line else config.source,
            )
        return GatewayKeyOutcome("taken", public, current), private
    stored = state.load_gateway_key(ProfileId(profile.id))
    if stored == private:
        return GatewayKeyOutcome("kept", public), None
    return GatewayKeyOutcome("stored", public), private


def _site_index(profile: Profile) -> int | None:
    """Which `[[gateway]]` table the site is (None: the single `[gateway]` form)."""
    if not profile.sites:
        return None
    return [g.name for g in profile.sites].index(profile.gateway.name)


def set_gateway_public_key(text: str, site: int | None, public_key: str) -> str:
    """profile.toml's text with `public_key` of `[gateway]` (or of the `site`-th `[[gateway]]`)
    replaced, every other line and comment kept, and the comment after the value too."""
    header = re.compile(
        r"^\s*\[\[\s*gateway\s*\]\]" if site is not None else r"^\s*\[\s*gateway\s*\]"
    )
    any_table = re.compile(r"^\s*\[")
    key_line = re.compile(r'^(\s*public_key\s*=\s*)"[^"]*"(.*)$')
    lines = text.splitlines(keepends=True)
    seen, inside = -1, False
    for index, line in enumerate(lines):
        if any_table.match(line):
            inside = False
            if header.match(line):
                seen += 1
                inside = site is None or seen == site
            continue
        match = key_line.match(line) if inside else None
        if match:
            ending = "\n" if line.endswith("\n") else ""
            rest = match.group(2).rstrip("\r\n")
            lines[index] = f'{match.group(1)}"{public_key}"{rest}{ending}'
            return "".join(lines)
    raise InputError("no public_key line found in the gateway's table", where="profile.toml")


def _rewritten_profile(profile: Profile, old_text: str, public_key: str) -> str:
    """profile.toml with the site's public_key replaced, checked to read back as meant."""
    from netsetup.profile.schema import parse_profile_data, parse_toml

    new_text = set_gateway_public_key(old_text, _site_index(profile), public_key)
    data, _ = parse_toml(new_text)
    reread, issues = parse_profile_data(data, profile.directory) if data else (None, [])
    if (
        reread is None
        or issues
        or reread.site(profile.gateway.name).gateway.public_key != public_key
    ):
        raise InputError(
            "cannot rewrite the gateway's public_key in profile.toml (write it by hand: "
            f'public_key = "{public_key}")',
            where=str(profile.profile_file),
        )
    return new_text


def _apply_gateway_key(
    profile: Profile, state: StateDir, outcome: GatewayKeyOutcome, private: SecretKey | None
) -> Callable[[], None] | None:
    """Store the key (and with --take-gateway-key rewrite profile.toml); returns the undo. A
    failure half-way takes back what it wrote."""
    from netsetup.fsutil import atomic_write, write_secret

    if private is None:
        return None
    pid = ProfileId(profile.id)
    key_file = state.gateway_key_path(pid)
    old_key = key_file.read_bytes() if key_file.is_file() else None
    old_text = profile.profile_file.read_text(encoding="utf-8")
    mode = profile.profile_file.stat().st_mode & 0o777  # kept as it was (a 0600 file stays so)
    new_text = None
    if outcome.action == "taken":
        assert outcome.public_key is not None
        new_text = _rewritten_profile(profile, old_text, outcome.public_key)

    def undo() -> None:
        if new_text is not None:
            atomic_write(profile.profile_file, old_text, mode=mode)
        if old_key is None:
            remove_file(key_file)
        else:
            write_secret(key_file, old_key)

    try:
        state.save_gateway_key(pid, private)
        if new_text is not None:
            atomic_write(profile.profile_file, new_text, mode=mode)
    except BaseException:
        undo()
        raise
    return undo


# -- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What `import` did: the peers written (never a secret), those skipped, the gateway key."""

    profile: str
    gateway: str  # the site's name ("gateway" in the single [gateway] form)
    interface: str
    source: str
    imported: tuple[PlannedPeer, ...]
    skipped: tuple[SkippedPeer, ...]
    gateway_key: GatewayKeyOutcome
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "gateway": self.gateway,
            "interface": self.interface,
            "source": self.source,
            "imported": [
                {
                    "name": p.peer.name,
                    "name_from": p.name_source,
                    "mode": p.peer.mode,
                    "fingerprint": fingerprint(p.peer.public_key),
                    "addresses": [
                        str(a) for a in (p.peer.address_v4, p.peer.address_v6) if a is not None
                    ],
                    "expires": format_time(p.peer.expires) if p.peer.expires else None,
                    "preshared_key": p.imported.preshared_key is not None,
                    "line": p.imported.line or None,
                }
                for p in self.imported
            ],
            "skipped": [
                {"name": s.name, "fingerprint": s.fingerprint, "status": s.status}
                for s in self.skipped
            ],
            "gateway_key": {
                "action": self.gateway_key.action,
                "public_key": self.gateway_key.public_key,
                "previous_public_key": self.gateway_key.previous_public_key,
            },
            "warnings": list(self.warnings),
        }


def _interface_warnings(profile: Profile, config: WgConfig) -> list[str]:
    from netsetup.gateway.render import gateway_addresses

    warnings = []
    interface = config.interface
    if interface is not None:
        if (
            interface.listen_port is not None
            and interface.listen_port != profile.gateway.listen_port
        ):
            warnings.append(
                f"the config listens on port {interface.listen_port}, the profile says "
                f"{profile.gateway.listen_port}: `plan` will show the change"
            )
        wanted = set(gateway_addresses(profile))
        if interface.addresses and set(interface.addresses) != wanted:
            warnings.append(
                f"the config's Address is {', '.join(interface.addresses)}, the profile's "
                f"{', '.join(sorted(wanted))}: `plan` will show the change"
            )
    for peer in config.peers:
        if peer.keepalive is not None:
            warnings.append(
                f"{peer.where}: PersistentKeepalive on the gateway's side is not kept (netsetup "
                "sets keepalive in the assistant's config)"
            )
    return warnings


def _unkeyed_warnings(plan: AdoptionPlan, profile_id: str) -> list[str]:
    return [
        f"peer {p.peer.name!r} has no preshared key on the server: netsetup needs one; run "
        f"`netsetup rotate {profile_id} {p.peer.name}` (new keys for that assistant)"
        for p in plan.planned
        if p.imported.preshared_key is None
    ]


def import_config(
    profile: Profile,
    config: WgConfig,
    *,
    state: StateDir,
    mode: str | ModeChooser,
    gateway: str | None = None,
    take_gateway_key: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> ImportResult:
    """Import the peers of `config` into `profile`, for its gateway `gateway` (None: the first).
    Nothing is written when a peer, or the `[Interface]` key, is refused."""
    now = clock.now()
    try:
        site = profile.site(gateway)
    except KeyError:
        raise InputError(
            f"no gateway named {gateway!r} in the profile", where=str(profile.profile_file)
        ) from None
    outcome, private = _gateway_key_plan(site, config, state, take_gateway_key)

    def before() -> Callable[[], None] | None:
        return _apply_gateway_key(site, state, outcome, private)

    plan, _ = adopt(site, config.peers, mode=mode, now=now, state=state, before=before)
    warnings = _interface_warnings(site, config) + _unkeyed_warnings(plan, profile.id)
    return ImportResult(
        profile.id,
        site.gateway.name,
        site.gateway.interface,
        config.source,
        plan.planned,
        plan.skipped,
        outcome,
        tuple(warnings),
    )


def read_from_gateway(profile: Profile, gateway: str | None, identity: Path | None) -> WgConfig:
    """The gateway's conf file and live peers, read through its agent over SSH."""
    from netsetup.errors import RemoteError
    from netsetup.gateway.firewall import table_name
    from netsetup.gateway.remote import GatewaySession

    try:
        site = profile.gateway_named(gateway)
    except KeyError:
        raise InputError(
            f"no gateway named {gateway!r} in the profile", where=str(profile.profile_file)
        ) from None
    if site.ssh is None:
        raise InputError(
            f'gateway {site.name!r} has no `ssh = "user@host:port"`: netsetup cannot reach it',
            where=str(profile.profile_file),
        )
    iface = site.interface
    with GatewaySession(site.ssh, host_key=site.host_key, identity=identity) as session:
        answer = session.agent("read", "--interface", iface, "--table", table_name(iface))
    if not answer.get("ok"):
        reason = answer.get("error", "no reason given")
        raise RemoteError(
            f"the gateway agent could not read the gateway: {reason}",
            where=str(site.ssh),
        )
    source = f"{site.ssh.host}:/etc/wireguard/{iface}.conf"
    conf_text = answer.get("conf")
    config = parse_wg_conf(conf_text, source) if isinstance(conf_text, str) else None
    dump = answer.get("dump")
    live: list[ImportedPeer] = []
    private = None
    if isinstance(dump, str):
        private, live = parse_dump(dump, f"{site.ssh.host}: wg show {iface} dump")
    merged = merge_live(config, live)
    if merged.interface is None and private is not None:
        merged = replace(merged, interface=ImportedInterface(private, (), None, 0))
    return merged
