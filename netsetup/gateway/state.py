"""The gateway's live state, as the gateway agent's `read` reports it: what `plan` compares the
profile with.

Three views of one tunnel, each parsed here:
- `wg show <iface> dump`: what WireGuard runs now (peers, their preshared keys, AllowedIPs);
- the wg-quick config file `/etc/wireguard/<iface>.conf`: what comes back after a reboot, with
  the comment lines above each `[Peer]` (the only place a peer's name can be on the gateway);
- `nft list table inet <table>`: the ruleset as loaded, normalised (`normalise_listing`) so that
  what the kernel changes by itself (timed set elements, counters) is not mistaken for a hand edit.

Keys arrive here because the agent's `read` answers the admin alone, over SSH. Private and
preshared keys become `SecretKey`s at once (their repr hides them) and the raw texts that hold
them are kept out of every repr.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netsetup.errors import RemoteError
from netsetup.keys import SecretKey, fingerprint, is_valid_key

# -- wg show <iface> dump --------------------------------------------------------------------


@dataclass(frozen=True)
class LiveInterface:
    """The first line of `wg show <iface> dump`: the interface's keys and port."""

    private_key: SecretKey | None
    public_key: str | None
    listen_port: int | None
    fwmark: int | None


@dataclass(frozen=True)
class LivePeer:
    """One peer as WireGuard runs it (or as the config file writes it)."""

    public_key: str
    preshared_key: SecretKey | None
    allowed_ips: tuple[str, ...]
    keepalive: int | None
    endpoint: str | None = None
    latest_handshake: int = 0  # unix seconds; 0: never

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def networks(self) -> frozenset[str]:
        """AllowedIPs as a set of normalised networks (order and spelling do not matter)."""
        return normalise_allowed_ips(self.allowed_ips)


class StateFormatError(ValueError):
    """What the gateway reported cannot be read (never holds the offending text: it may be a
    key)."""


def normalise_allowed_ips(values: tuple[str, ...] | list[str]) -> frozenset[str]:
    out = set()
    for value in values:
        try:
            out.add(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise StateFormatError(f"not an address range: {value.strip()[:60]!r}") from None
    return frozenset(out)


def _key_or_none(text: str, what: str) -> str | None:
    if text == "(none)":
        return None
    if not is_valid_key(text):
        raise StateFormatError(f"{what} is not a WireGuard key")
    return text


def _secret_or_none(text: str, what: str) -> SecretKey | None:
    value = _key_or_none(text, what)
    return SecretKey(value) if value is not None else None


def _number_or_none(text: str, what: str) -> int | None:
    """A number of the dump or the config file; None for `off` and `(none)`."""
    if text in ("off", "(none)"):
        return None
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise StateFormatError(f"{what} is not a number: {text[:20]!r}") from None


def _allowed_ips(text: str) -> tuple[str, ...]:
    if text in ("(none)", ""):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Dump:
    """`wg show <iface> dump`, parsed."""

    interface: LiveInterface
    peers: dict[str, LivePeer]


def parse_dump(text: str) -> Dump:
    """Parse `wg show <iface> dump`: tab-separated; the first line is the interface (private key,
    public key, listen port, fwmark), each further line a peer (public key, preshared key,
    endpoint, allowed ips, latest handshake, rx, tx, persistent keepalive). `(none)` and `off`
    mean unset."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise StateFormatError("wg show dump is empty")
    first = lines[0].split("\t")
    if len(first) != 4:
        raise StateFormatError(f"wg show dump: the interface line has {len(first)} fields, not 4")
    interface = LiveInterface(
        private_key=_secret_or_none(first[0], "the interface's private key"),
        public_key=_key_or_none(first[1], "the interface's public key"),
        listen_port=_number_or_none(first[2], "the listen port"),
        fwmark=_number_or_none(first[3], "the fwmark"),
    )
    peers: dict[str, LivePeer] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields_ = line.split("\t")
        if len(fields_) != 8:
            raise StateFormatError(
                f"wg show dump line {number} has {len(fields_)} fields, not 8 (a peer)"
            )
        public = _key_or_none(fields_[0], f"the public key on line {number}")
        if public is None:
            raise StateFormatError(f"wg show dump line {number} has no public key")
        peers[public] = LivePeer(
            public_key=public,
            preshared_key=_secret_or_none(fields_[1], f"the preshared key on line {number}"),
            endpoint=None if fields_[2] == "(none)" else fields_[2],
            allowed_ips=_allowed_ips(fields_[3]),
            latest_handshake=_number_or_none(fields_[4], "the latest handshake") or 0,
            # 0 and `off` both mean no keepalive
            keepalive=_number_or_none(fields_[7], "the persistent keepalive") or None,
        )
    return Dump(interface, peers)


# -- the wg-quick config file -----------------------------------------------------------------


@dataclass(frozen=True)
class ConfPeer:
    """One `[Peer]` of the config file, with the comment lines just above it (its name, for the
    admin tools that wrote it: `# anna (dedicated)`, `# Client: anna`, `### begin anna ###`)."""

    peer: LivePeer
    comments: tuple[str, ...]
    line: int  # of its `[Peer]` header


@dataclass(frozen=True)
class ConfFile:
    """The gateway's `/etc/wireguard/<iface>.conf`, parsed. `text` holds its secrets: kept out of
    the repr, used only to compare."""

    addresses: tuple[str, ...]
    listen_port: int | None
    private_key: SecretKey | None
    peers: tuple[ConfPeer, ...]
    other: tuple[tuple[str, str], ...]  # other [Interface] keys (DNS, MTU, PostUp, ...), as written
    text: str = field(repr=False, default="")

    def peer(self, public_key: str) -> ConfPeer | None:
        for entry in self.peers:
            if entry.peer.public_key == public_key:
                return entry
        return None


_SECTION = re.compile(r"^\s*\[(?P<name>[A-Za-z]+)\]\s*$")
_ASSIGNMENT = re.compile(r"^\s*(?P<key>[A-Za-z]+)\s*=\s*(?P<value>.*?)\s*$")


@dataclass
class _Section:
    name: str
    line: int
    comments: tuple[str, ...]
    values: dict[str, str] = field(default_factory=dict)


def _sections(text: str) -> Iterator[_Section]:
    """The sections of a wg-quick file in order (keys lowercased, as wg-quick compares them; a
    `#` starts a comment anywhere on a line, as in wg-quick)."""
    current: _Section | None = None
    comments: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        line = raw.split("#", 1)[0]
        if not line.strip():
            comments = []  # a blank line ends the comment block above the next section
            continue
        header = _SECTION.match(line)
        if header:
            if current is not None:
                yield current
            current = _Section(header.group("name").lower(), number, tuple(comments))
            comments = []
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment is None or current is None:
            raise StateFormatError(f"line {number} is neither a section nor `Key = value`")
        comments = []
        key = assignment.group("key").lower()
        value = assignment.group("value")
        # AllowedIPs and Address may repeat: wg-quick joins them
        if key in current.values and key in ("allowedips", "address"):
            value = current.values[key] + "," + value
        current.values[key] = value
    if current is not None:
        yield current


_INTERFACE_KNOWN = {"address", "listenport", "privatekey"}


def _conf_peer(section: _Section) -> ConfPeer:
    values = section.values
    where = f"the [Peer] on line {section.line}"
    public = values.get("publickey")
    if public is None or not is_valid_key(public):
        raise StateFormatError(f"{where} has no valid PublicKey")
    psk = values.get("presharedkey")
    keepalive = values.get("persistentkeepalive")
    peer = LivePeer(
        public_key=public,
        preshared_key=_secret_or_none(psk, f"the PresharedKey of {where}") if psk else None,
        allowed_ips=_allowed_ips(values.get("allowedips", "")),
        keepalive=(_number_or_none(keepalive, f"the PersistentKeepalive of {where}") or None)
        if keepalive
        else None,
        endpoint=values.get("endpoint"),
    )
    return ConfPeer(peer, section.comments, section.line)


def parse_conf(text: str) -> ConfFile:
    """Parse a wg-quick config file (the gateway's `<iface>.conf`)."""
    interface: _Section | None = None
    peers: list[ConfPeer] = []
    for section in _sections(text):
        if section.name == "interface":
            if interface is not None:
                raise StateFormatError(f"a second [Interface] on line {section.line}")
            interface = section
        elif section.name == "peer":
            peers.append(_conf_peer(section))
        else:
            raise StateFormatError(f"unknown section [{section.name}] on line {section.line}")
    if interface is None:
        raise StateFormatError("no [Interface] section")
    values = interface.values
    private = values.get("privatekey")
    port = values.get("listenport")
    return ConfFile(
        addresses=_allowed_ips(values.get("address", "")),
        listen_port=_number_or_none(port, "ListenPort") if port else None,
        private_key=_secret_or_none(private, "the PrivateKey") if private else None,
        peers=tuple(peers),
        other=tuple((k, v) for k, v in values.items() if k not in _INTERFACE_KNOWN),
        text=text,
    )


# -- nft list table ---------------------------------------------------------------------------

_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_QUOTA_USED = re.compile(r"\bused \d+ (bytes|kbytes|mbytes)")
_BLOCK_START = re.compile(r"^\s*(set|map)\s+\S+\s*\{\s*$")


def _element_lines(lines: list[str], start: int) -> int:
    """The index just past an `elements = { ... }` clause that begins at `lines[start]` (nft
    wraps long element lists over several lines)."""
    depth = 0
    for index in range(start, len(lines)):
        depth += lines[index].count("{") - lines[index].count("}")
        if depth <= 0:
            return index + 1
    return len(lines)


def _is_timed(block: list[str]) -> bool:
    for line in block:
        stripped = line.strip()
        if stripped.startswith("flags ") and "timeout" in stripped:
            return True
        if " expires " in line:
            return True
    return False


def _normalise_block(block: list[str]) -> list[str]:
    """A set or map block without its elements when its elements come and go by themselves."""
    if not _is_timed(block):
        return block
    out: list[str] = []
    index = 0
    while index < len(block):
        if block[index].strip().startswith("elements = {"):
            index = _element_lines(block, index)
            continue
        out.append(block[index])
        index += 1
    return out


def normalise_listing(text: str) -> str:
    """`nft list table` output without what changes by itself: the elements of timed sets (the
    witness's `wg_seen_*`, filled by packets and expiring) and the values of counters and
    quotas. Two listings equal after this differ in no rule, chain, map or static set."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _BLOCK_START.match(line):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "}":
                end += 1
            out.extend(_normalise_block(lines[index : end + 1]))
            index = end + 1
            continue
        out.append(line)
        index += 1
    normalised = "\n".join(out)
    normalised = _COUNTER.sub("counter", normalised)
    normalised = _QUOTA_USED.sub("used", normalised)
    return normalised.rstrip("\n") + "\n" if normalised.strip() else ""


# -- the agent's `read` ------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedRecord:
    """What the agent recorded when it last loaded netsetup's ruleset."""

    source_sha256: str
    listing: str
    at: str


@dataclass(frozen=True)
class LiveState:
    """Everything `read` reports about one gateway tunnel."""

    interface: str
    up: bool
    dump: Dump | None  # None: the interface is down (or missing)
    conf: ConfFile | None  # None: no config file
    ruleset_file: str | None  # the ruleset source netsetup installed; None: none yet
    listing: str | None  # `nft list table inet <table>`; None: no such table
    tables: tuple[str, ...]
    applied: AppliedRecord | None
    pending: Mapping[str, Any] | None  # an armed revert (another apply awaits its confirmation)
    forwarding: Mapping[str, bool]
    tools: Mapping[str, bool] = field(default_factory=dict)  # wg, wg-quick, nft: installed?
    # the last revert the gateway's timer made by itself (None: none recorded); its `restored`
    # says whether the restore itself went through
    reverted: Mapping[str, Any] | None = None

    @property
    def revert_restored(self) -> bool | None:
        """Whether the gateway's own revert restored its backup (None: not recorded)."""
        if self.reverted is None or "restored" not in self.reverted:
            return None
        return self.reverted.get("restored") is True

    @property
    def peers(self) -> dict[str, LivePeer]:
        """The peers WireGuard runs now (none while the interface is down)."""
        return dict(self.dump.peers) if self.dump else {}

    @property
    def interface_facts(self) -> LiveInterface | None:
        return self.dump.interface if self.dump else None

    @property
    def conf_peers(self) -> dict[str, ConfPeer]:
        return {entry.peer.public_key: entry for entry in self.conf.peers} if self.conf else {}

    @property
    def normalised_listing(self) -> str | None:
        return normalise_listing(self.listing) if self.listing is not None else None


def _text_or_none(answer: Mapping[str, Any], key: str) -> str | None:
    value = answer.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateFormatError(f"{key!r} is not text")
    return value


def _applied(value: object) -> AppliedRecord | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateFormatError("'applied' is not an object")
    source, listing, at = value.get("source_sha256"), value.get("listing"), value.get("at")
    if not isinstance(source, str) or not isinstance(listing, str):
        raise StateFormatError("'applied' lacks source_sha256 or listing")
    return AppliedRecord(source, listing, str(at or ""))


def _parse_part(what: str, parse: Any, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse(text)
    except StateFormatError as exc:
        raise StateFormatError(f"{what}: {exc}") from None


def parse_read(answer: Mapping[str, Any], *, where: str) -> LiveState:
    """The agent's `read` answer as a LiveState; a RemoteError naming `where` (the gateway) when
    the agent refused or its answer cannot be read."""
    if answer.get("ok") is not True:
        step = answer.get("step", "read")
        raise RemoteError(
            f"the gateway agent could not read the gateway ({step}): {answer.get('error')}",
            where=where,
        )
    try:
        tables = answer.get("tables") or []
        forwarding = answer.get("forwarding") or {}
        tools = answer.get("tools") or {}
        if not isinstance(tables, list) or not isinstance(forwarding, dict):
            raise StateFormatError("'tables' or 'forwarding' has the wrong type")
        if not isinstance(tools, dict):
            raise StateFormatError("'tools' has the wrong type")
        pending = answer.get("pending")
        reverted = answer.get("reverted")
        return LiveState(
            interface=str(answer.get("interface", "")),
            up=bool(answer.get("up")),
            dump=_parse_part("wg show dump", parse_dump, _text_or_none(answer, "dump")),
            conf=_parse_part("the config file", parse_conf, _text_or_none(answer, "conf")),
            ruleset_file=_text_or_none(answer, "ruleset_file"),
            listing=_text_or_none(answer, "listing"),
            tables=tuple(str(t) for t in tables),
            applied=_applied(answer.get("applied")),
            pending=pending if isinstance(pending, dict) else None,
            forwarding={str(k): bool(v) for k, v in forwarding.items()},
            tools={str(k): bool(v) for k, v in tools.items()},
            reverted=reverted if isinstance(reverted, dict) else None,
        )
    except StateFormatError as exc:
        raise RemoteError(f"cannot read the gateway agent's answer: {exc}", where=where) from None
