"""The assistant's WireGuard config, and what diagnose needs to know beyond it.

`provision` writes what diagnose needs into the client config as comment lines, so the assistant
needs only that one file (wg-quick and the WireGuard apps ignore comments):

    # netsetup-diagnose: v=1 profile=acme-dental company=Acme_Dental_Practice
    # netsetup-diagnose: gateway=198.18.10.1 gateway6=2001:db8:10::1 witness=51821
    # netsetup-diagnose: dns-name=files.acme-dental.example
    # netsetup-diagnose: target=office-ssh kind=ssh host=192.0.2.31 port=22 host-key=SHA256:...
    # netsetup-diagnose: responder=192.0.2.50:4789 responder-key=<this peer's key, base64>
    # netsetup-diagnose: sip=192.0.2.40 transports=udp,tcp,tls sip-port=5060 ... codec=g711 plc=1

The gateway line carries `sip-mirror=1` when the witness mirrors SIP on 5060.

Each line is `key=value` pairs; its first key names what it describes. Values never hold spaces
(a space in the company name or contact is written as `_`... see `_encode`). Unknown keys and
lines are ignored, so an older diagnose reads a newer config; a line that cannot be read is a
problem `tunnel.config` reports with its line number, never a crash. `--profile DIR` builds the
same `DiagnoseInfo` from the profile instead (`DiagnoseInfo.from_profile`).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from netsetup.errors import InputError
from netsetup.keys import SecretKey, is_valid_key
from netsetup.profile.model import DEFAULTS, TARGET_KINDS, VOICE_CODECS, Profile, Target
from netsetup.profile.values import (
    IPAddress,
    IPNetwork,
    check_text,
    parse_endpoint,
    parse_host,
    parse_host_key,
    parse_hostname,
    parse_name,
)

MARK = "# netsetup-diagnose:"
MAX_CONFIG_BYTES = 1 << 20
VERSION = 1


# -- the metadata ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SipInfo:
    """The company's phone system as the client needs it (VoIP checks, issue 9)."""

    server: IPAddress
    domain: str | None
    transports: tuple[str, ...]
    sip_port: int
    tls_port: int
    rtp_ports: tuple[int, int]


@dataclass(frozen=True)
class DiagnoseInfo:
    """What diagnose knows beyond WireGuard's own keys: from the config's comment lines or from
    a profile. Every field may be missing (an older config): checks that need one skip."""

    profile_id: str | None = None
    company: str | None = None
    contact: str | None = None  # whom the assistant calls: "it@acme-dental.example"
    gateway_v4: ipaddress.IPv4Address | None = None  # the gateway's tunnel address
    gateway_v6: ipaddress.IPv6Address | None = None
    witness_port: int | None = None  # the gateway witness's UDP port (None: no witness)
    listen_port: int | None = None  # the port WireGuard listens on at the gateway
    dns_names: tuple[str, ...] = ()  # company names that must resolve through the tunnel
    targets: tuple[Target, ...] = ()
    responder: tuple[str | IPAddress, int] | None = None  # the office responder (issue 9)
    sip: SipInfo | None = None
    # issue 9 (filled by provision's lines or the profile; defaults for older configs)
    responder_key: SecretKey | None = None  # this peer's key for the office responder
    codec: str = "g711"  # [voip] codec: the E-model's Ie and Bpl
    plc: bool = True  # [voip] plc: the phones conceal lost packets
    sip_mirror: bool = False  # the gateway witness mirrors SIP on UDP/TCP 5060 outside the tunnel
    problems: tuple[tuple[int, str], ...] = ()  # (line, what) for lines that could not be read

    @classmethod
    def from_profile(cls, profile: Profile) -> DiagnoseInfo:
        net = profile.network
        voip = profile.voip
        sip = None
        if voip is not None:
            sip = SipInfo(
                voip.sip_server,
                voip.sip_domain,
                voip.transports,
                voip.sip_port,
                voip.tls_port,
                voip.rtp_ports,
            )
        return cls(
            profile_id=str(profile.id),
            company=profile.company,
            contact=profile.contact,
            gateway_v4=net.gateway_address_v4,
            gateway_v6=net.gateway_address_v6,
            witness_port=profile.gateway.witness_port or None,
            listen_port=profile.gateway.listen_port,
            dns_names=tuple(name for name, _ in profile.dns.records),
            targets=profile.diagnose.targets,
            responder=profile.diagnose.responder,
            sip=sip,
            codec=voip.codec if voip is not None else DEFAULTS.codec,
            plc=voip.plc if voip is not None else DEFAULTS.plc,
            sip_mirror=profile.mirrors_sip,
        )

    @property
    def gateway_addresses(self) -> list[IPAddress]:
        return [a for a in (self.gateway_v4, self.gateway_v6) if a is not None]


def _encode(value: object) -> str:
    """A value without spaces or line breaks: percent-encoded where needed (a company name)."""
    return urllib.parse.quote(str(value), safe=":/.,@[]+-_=")


def _pairs(**values: object) -> str:
    return " ".join(
        f"{k.replace('_', '-')}={_encode(v)}" for k, v in values.items() if v is not None
    )


def render_info_lines(info: DiagnoseInfo) -> list[str]:
    """The comment lines for a client config (each starts with MARK)."""
    lines = [
        _pairs(v=VERSION, profile=info.profile_id, company=info.company, contact=info.contact),
        _pairs(
            gateway=info.gateway_v4,
            gateway6=info.gateway_v6,
            witness=info.witness_port,
            listen_port=info.listen_port,
            sip_mirror=1 if info.sip_mirror else None,
        ),
    ]
    lines += [_pairs(dns_name=name) for name in info.dns_names]
    for t in info.targets:
        lines.append(
            _pairs(target=t.name, kind=t.kind, host=t.host, port=t.port, host_key=t.host_key)
        )
    if info.responder is not None:
        host, port = info.responder
        shown = f"[{host}]" if isinstance(host, ipaddress.IPv6Address) else str(host)
        key = info.responder_key.reveal() if info.responder_key is not None else None
        lines.append(_pairs(responder=f"{shown}:{port}", responder_key=key))
    if info.sip is not None:
        s = info.sip
        lines.append(
            _pairs(
                sip=s.server,
                domain=s.domain,
                transports=",".join(s.transports),
                sip_port=s.sip_port,
                tls_port=s.tls_port,
                rtp=f"{s.rtp_ports[0]}-{s.rtp_ports[1]}",
                codec=info.codec,
                plc=1 if info.plc else 0,
            )
        )
    return [f"{MARK} {line}" for line in lines if line]


class _InfoReader:
    """Reads the MARK lines one by one into the fields of a DiagnoseInfo."""

    def __init__(self) -> None:
        self.fields: dict[str, object] = {}
        self.dns_names: list[str] = []
        self.targets: list[Target] = []
        self.problems: list[tuple[int, str]] = []

    def line(self, number: int, text: str) -> None:
        pairs: dict[str, str] = {}
        try:
            for item in text.split():
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{item!r} is not key=value")
                # percent-decoding can make any character: a control one (an escape sequence, a
                # line break) is refused, as in a profile, before it reaches a screen or a report
                pairs[key] = check_text(urllib.parse.unquote(value), f"the value of {key!r}")
            if pairs:
                self._record(next(iter(pairs)), pairs)
        except ValueError as exc:
            self.problems.append((number, f"netsetup-diagnose line: {exc}"))
        except KeyError as exc:
            self.problems.append((number, f"netsetup-diagnose line: it has no {exc.args[0]}="))

    def _record(self, first: str, p: dict[str, str]) -> None:
        if first == "v":
            self.fields.update(profile_id=p.get("profile"), company=p.get("company"))
            self.fields["contact"] = p.get("contact")
        elif first == "gateway":
            self._gateway(p)
        elif first == "dns-name":
            self.dns_names.append(parse_hostname(p["dns-name"]))
        elif first == "target":
            self.targets.append(_target(p))
        elif first == "responder":
            self._responder(p)
        elif first == "sip":
            self._sip(p)

    def _responder(self, p: dict[str, str]) -> None:
        self.fields["responder"] = parse_endpoint(p["responder"])
        if "responder-key" in p:
            if not is_valid_key(p["responder-key"]):
                raise ValueError("responder-key is not a key (base64 of 32 bytes)")
            self.fields["responder_key"] = SecretKey(p["responder-key"])

    def _sip(self, p: dict[str, str]) -> None:
        self.fields["sip"] = _sip(p)
        codec = p.get("codec", DEFAULTS.codec)
        if codec not in VOICE_CODECS:
            raise ValueError(f"codec {codec!r} is not one of {', '.join(VOICE_CODECS)}")
        self.fields["codec"] = codec
        self.fields["plc"] = _flag(p.get("plc", "1" if DEFAULTS.plc else "0"), "plc")

    def _gateway(self, p: dict[str, str]) -> None:
        self.fields["gateway_v4"] = ipaddress.IPv4Address(p["gateway"])
        if "gateway6" in p:
            self.fields["gateway_v6"] = ipaddress.IPv6Address(p["gateway6"])
        if "witness" in p:
            self.fields["witness_port"] = _port(p["witness"])
        if "listen-port" in p:
            self.fields["listen_port"] = _port(p["listen-port"])
        if "sip-mirror" in p:
            self.fields["sip_mirror"] = _flag(p["sip-mirror"], "sip-mirror")

    def info(self) -> DiagnoseInfo:
        return DiagnoseInfo(
            dns_names=tuple(self.dns_names),
            targets=tuple(self.targets),
            problems=tuple(self.problems),
            **self.fields,  # type: ignore[arg-type]
        )


def _flag(text: str, what: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"{what} is {text!r}, not 0 or 1")
    return text == "1"


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {text} is outside 1-65535")
    return port


def _target(p: dict[str, str]) -> Target:
    kind = p.get("kind", "tcp")
    if kind not in TARGET_KINDS:
        raise ValueError(f"target kind {kind!r} is not one of {', '.join(TARGET_KINDS)}")
    port = _port(p["port"]) if "port" in p else None
    host_key = p.get("host-key")
    return Target(
        parse_name(p["target"], "target name"),
        parse_host(p["host"]),
        port,
        kind,
        parse_host_key(host_key) if host_key is not None else None,
    )


def _sip(p: dict[str, str]) -> SipInfo:
    low, _, high = p.get("rtp", "10000-20000").partition("-")
    return SipInfo(
        ipaddress.ip_address(p["sip"]),
        p.get("domain"),
        tuple(t for t in p.get("transports", "udp").split(",") if t),
        _port(p.get("sip-port", "5060")),
        _port(p.get("tls-port", "5061")),
        (_port(low), _port(high or low)),
    )


# -- the WireGuard config -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One `Key = value` line of the config, with its line number (for findings)."""

    value: str
    line: int


@dataclass(frozen=True)
class ClientConfig:
    """A wg-quick client config as diagnose reads it. The private and preshared keys are kept as
    SecretKey (never shown); everything else as written, with line numbers."""

    path: Path | None
    interface: dict[str, Setting]  # key (lowercased) -> setting; Address and DNS joined by ", "
    peers: tuple[dict[str, Setting], ...]
    info: DiagnoseInfo
    private_key: SecretKey | None = field(default=None, repr=False)
    preshared_key: SecretKey | None = field(default=None, repr=False)

    # -- reading ---------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: Path) -> ClientConfig:
        from netsetup.validate.reading import Unreadable, read_regular

        try:
            data = read_regular(path, MAX_CONFIG_BYTES)
        except Unreadable as exc:
            raise InputError(f"cannot read the WireGuard config: {exc}", where=str(path)) from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("the WireGuard config is not UTF-8 text", where=str(path)) from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Path | None = None) -> ClientConfig:
        where = str(path) if path else "config"
        interface: dict[str, Setting] = {}
        peers: list[dict[str, Setting]] = []
        section: dict[str, Setting] | None = None
        info = _InfoReader()
        secrets: dict[str, SecretKey] = {}
        more: dict[tuple[int, str], list[str]] = {}  # list keys given again on later lines
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if line.startswith(MARK):
                info.line(number, line[len(MARK) :])
                continue
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.lower() in ("[interface]", "[peer]"):
                section = interface if line.lower() == "[interface]" else {}
                if section is not interface:
                    peers.append(section)
                continue
            key, sep, value = line.partition("=")
            if not sep or section is None:
                raise InputError(
                    "not a WireGuard config: expected [Interface], [Peer] or Key = value",
                    where=f"{where}:{number}",
                )
            _store(section, key.strip().lower(), value.strip(), number, secrets, more)
        if not interface and not peers:
            raise InputError("not a WireGuard config: no [Interface] section", where=where)
        _join_more([interface, *peers], more)
        return cls(
            path,
            interface,
            tuple(peers),
            info.info(),
            secrets.get("privatekey"),
            secrets.get("presharedkey"),
        )

    # -- what the checks use ---------------------------------------------------------------------

    @property
    def peer(self) -> dict[str, Setting]:
        """The gateway's [Peer] section (a netsetup config has exactly one)."""
        return self.peers[0] if self.peers else {}

    def get(self, key: str) -> str | None:
        setting = self.interface.get(key.lower()) or self.peer.get(key.lower())
        return setting.value if setting else None

    @property
    def addresses(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        return [ipaddress.ip_interface(a) for a in _split(self.interface.get("address"))]

    @cached_property
    def allowed_ips(self) -> tuple[IPNetwork, ...]:
        """Parsed once: a config may route thousands of networks, and every check asks."""
        return tuple(
            ipaddress.ip_network(a, strict=False) for a in _split(self.peer.get("allowedips"))
        )

    @property
    def dns_servers(self) -> list[IPAddress]:
        out: list[IPAddress] = []
        for item in _split(self.interface.get("dns")):
            try:
                out.append(ipaddress.ip_address(item))
            except ValueError:
                continue  # a search domain
        return out

    @property
    def search_domains(self) -> list[str]:
        return [i for i in _split(self.interface.get("dns")) if not _is_address(i)]

    @property
    def gateway_public_key(self) -> str | None:
        return self.get("publickey")

    @property
    def endpoint(self) -> tuple[str | IPAddress, int] | None:
        text = self.get("endpoint")
        return parse_endpoint(text) if text else None

    @property
    def mtu(self) -> int | None:
        text = self.get("mtu")
        return int(text) if text and text.isdigit() else None

    @property
    def keepalive(self) -> int | None:
        text = self.get("persistentkeepalive")
        if text is None or text.lower() == "off":
            return None
        return int(text) if text.isdigit() else None

    def client_public_key(self) -> str | None:
        from netsetup.keys import public_from_private

        return public_from_private(self.private_key) if self.private_key else None

    @property
    def name(self) -> str:
        """The config's name as the assistant knows it (the file name), never its contents."""
        return self.path.name if self.path else "config"

    def with_info(self, info: DiagnoseInfo) -> ClientConfig:
        from dataclasses import replace

        return replace(self, info=info)


_SECRET_KEYS = ("privatekey", "presharedkey")
_LIST_KEYS = ("address", "dns", "allowedips")


def _store(
    section: dict[str, Setting],
    key: str,
    value: str,
    line: int,
    secrets: dict[str, SecretKey],
    more: dict[tuple[int, str], list[str]],
) -> None:
    if key in _SECRET_KEYS:
        if is_valid_key(value):
            secrets[key] = SecretKey(value)
        section[key] = Setting("(hidden)" if is_valid_key(value) else "(not a valid key)", line)
        return
    if key in _LIST_KEYS and key in section:
        # wg-quick allows the key on several lines: the values are joined once the config is
        # read (joining here, line by line, took seconds for tens of thousands of lines)
        more.setdefault((id(section), key), []).append(value)
        return
    section[key] = Setting(value, line)


def _join_more(
    sections: Iterable[dict[str, Setting]], more: dict[tuple[int, str], list[str]]
) -> None:
    for section in sections:
        for key, setting in section.items():
            extra = more.get((id(section), key))
            if extra:
                section[key] = Setting(", ".join([setting.value, *extra]), setting.line)


def _split(setting: Setting | None) -> list[str]:
    if setting is None:
        return []
    return [item.strip() for item in setting.value.split(",") if item.strip()]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def candidate_configs(folders: Iterable[Path]) -> list[Path]:
    """`*.conf` files in `folders` that carry netsetup's diagnose lines (for finding the active
    tunnel when no --config is given); unreadable files are passed over, and so is anything that
    is not a regular file (a FIFO named `x.conf` in the current folder would block `open()`)."""
    from netsetup.validate.reading import Unreadable, read_regular

    found: list[Path] = []
    for folder in folders:
        try:
            entries = sorted(folder.glob("*.conf"))
        except OSError:
            continue
        for path in entries:
            try:
                data = read_regular(path, MAX_CONFIG_BYTES)
            except Unreadable:
                continue
            if MARK.encode() in data:
                found.append(path)
    return found
