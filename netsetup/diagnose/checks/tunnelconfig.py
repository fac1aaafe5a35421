"""`tunnel.config`: the client config is sane, without touching the network.

Keys valid, addresses present, AllowedIPs cover what the assistant needs through the tunnel (the
gateway's tunnel address, the DNS servers, the diagnose targets), the MTU within what a home line
carries, DNS set, the keepalive VoIP needs, and the netsetup-diagnose lines that could not be read.
The ranges are the profile rules' (NS110 mtu, NS111 keepalive) where the two agree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.profile.values import IPAddress, IPNetwork

MTU_MIN = 1280  # IPv6's minimum; the profile rule NS110's lower bound too
MTU_MAX = 1500  # an Ethernet line
OVERHEAD = {4: 60, 6: 80}  # WireGuard over IPv4 / IPv6: IP + UDP + WireGuard's 32 bytes
VOIP_KEEPALIVE_MAX = 25  # home NATs forget an idle UDP binding after 30 s or more


@dataclass(frozen=True)
class Finding:
    status: Status
    what: str
    fix: str
    owner: Owner
    line: int | None = None


Rule = Callable[[ClientConfig], list[Finding]]


def judge_config(config: ClientConfig) -> Outcome:
    findings = [f for rule in RULES for f in rule(config)]
    facts = _facts(config)
    if not findings:
        return Outcome.passed(
            f"the config looks right ({_routed_words(config)} go through the tunnel)", **facts
        )
    findings.sort(key=lambda f: -f.status.rank)
    worst = findings[0]
    summary = "; ".join(_with_line(f) for f in findings)
    fixes = " ".join(dict.fromkeys(f.fix for f in findings))
    problems = [{"line": f.line, "what": f.what, "status": str(f.status)} for f in findings]
    return Outcome.problem(worst.status, summary, fixes, worst.owner, problems=problems, **facts)


SHOWN_ROUTES = 4  # a summary names this many of AllowedIPs, then counts the rest


def _routed_words(config: ClientConfig) -> str:
    routed = [str(n) for n in _safe(lambda: config.allowed_ips)]
    if len(routed) <= SHOWN_ROUTES:
        return ", ".join(routed)
    rest = len(routed) - SHOWN_ROUTES
    return f"{', '.join(routed[:SHOWN_ROUTES])} and {rest} more networks"


def _with_line(f: Finding) -> str:
    return f"{f.what} (line {f.line})" if f.line else f.what


def _facts(config: ClientConfig) -> dict[str, str | int | None]:
    return {
        "addresses": ", ".join(str(a) for a in _safe(lambda: config.addresses)),
        "allowed_ips": ", ".join(str(n) for n in _safe(lambda: config.allowed_ips)),
        "mtu": config.mtu,
        "keepalive_s": config.keepalive,
    }


def _safe(get: Callable[[], Sequence[object]]) -> Sequence[object]:
    try:
        return get()
    except ValueError:
        return []


def _line(config: ClientConfig, key: str) -> int | None:
    setting = config.interface.get(key) or config.peer.get(key)
    return setting.line if setting else None


def _new_config(config: ClientConfig) -> str:
    who = f"IT ({config.info.contact})" if config.info.contact else "your company's IT"
    return f"Ask {who} for a new config file."


# -- the rules --------------------------------------------------------------------------------


def keys(config: ClientConfig) -> list[Finding]:
    from netsetup.keys import is_valid_key

    out = []
    if config.private_key is None:
        out.append(_broken(config, "privatekey", "the PrivateKey is missing or damaged"))
    gateway = config.gateway_public_key
    if not config.peers:
        out.append(_broken(config, "publickey", "the config has no [Peer] section"))
    elif gateway is None or not is_valid_key(gateway):
        out.append(_broken(config, "publickey", "the gateway's PublicKey is missing or damaged"))
    shared = config.peer.get("presharedkey")
    if shared is not None and config.preshared_key is None:
        out.append(_broken(config, "presharedkey", "the PresharedKey is damaged"))
    return out


def _broken(config: ClientConfig, key: str, what: str) -> Finding:
    return Finding(Status.fail, what, _new_config(config), Owner.it, _line(config, key))


def addresses(config: ClientConfig) -> list[Finding]:
    try:
        found = config.addresses
    except ValueError as exc:
        return [_broken(config, "address", f"an Address is not valid ({exc})")]
    if not found:
        return [_broken(config, "address", "the config has no Address")]
    return []


def endpoint(config: ClientConfig) -> list[Finding]:
    if config.peers and config.get("endpoint") is None:
        return [_broken(config, "publickey", "the [Peer] has no Endpoint (where the gateway is)")]
    try:
        config.endpoint  # noqa: B018 - parsing is the check
    except ValueError as exc:
        return [_broken(config, "endpoint", f"the Endpoint is not valid ({exc})")]
    return []


def allowed_ips(config: ClientConfig) -> list[Finding]:
    try:
        routed = config.allowed_ips
    except ValueError as exc:
        return [_broken(config, "allowedips", f"AllowedIPs is not valid ({exc})")]
    needed: list[tuple[IPAddress, str, Status]] = []
    needed += [(a, "the gateway's tunnel address", Status.fail) for a in _gateways(config)]
    needed += [(a, "the DNS server", Status.fail) for a in config.dns_servers]
    for t in config.info.targets:
        if isinstance(t.host, ipaddress.IPv4Address | ipaddress.IPv6Address):
            needed.append((t.host, f"the {t.name} target", Status.warn))
    missing = [(a, why, st) for a, why, st in needed if not _covered(a, routed)]
    return [
        Finding(
            status,
            f"AllowedIPs does not include {address} ({why}): its traffic does not go "
            "through the tunnel",
            f"{_new_config(config)} Its AllowedIPs must include {address}.",
            Owner.it,
            _line(config, "allowedips"),
        )
        for address, why, status in missing
    ]


def _gateways(config: ClientConfig) -> list[IPAddress]:
    """The gateway's tunnel addresses, of the families the tunnel has addresses in."""
    families = {a.version for a in _safe_addresses(config)}
    return [a for a in config.info.gateway_addresses if a.version in families]


def _safe_addresses(
    config: ClientConfig,
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    try:
        return config.addresses
    except ValueError:
        return []


def _covered(address: IPAddress, routed: Sequence[IPNetwork]) -> bool:
    return any(address in net for net in routed if net.version == address.version)


def mtu(config: ClientConfig) -> list[Finding]:
    text = config.get("mtu")
    if text is None:
        return []
    line = _line(config, "mtu")
    value = config.mtu
    family = _endpoint_family(config)
    top = MTU_MAX - OVERHEAD[family]
    fix = f"Set MTU = {top} (or less) in the [Interface] section. {_new_config(config)}"
    if value is None or not MTU_MIN <= value <= MTU_MAX:
        what = f"MTU {text} is outside {MTU_MIN}-{MTU_MAX}"
        return [Finding(Status.fail, what, fix, Owner.it, line)]
    if value > top:
        what = (
            f"MTU {value} is larger than fits through a {MTU_MAX}-byte line over IPv{family} "
            f"({top}): big packets may be lost"
        )
        return [Finding(Status.warn, what, fix, Owner.it, line)]
    return []


def _endpoint_family(config: ClientConfig) -> int:
    try:
        found = config.endpoint
    except ValueError:
        return 4
    host = found[0] if found else None
    return 6 if isinstance(host, ipaddress.IPv6Address) else 4


def dns(config: ClientConfig) -> list[Finding]:
    if config.interface.get("dns") is not None:
        return []
    what = "the config sets no DNS server: company names will not resolve through the tunnel"
    return [Finding(Status.warn, what, _new_config(config), Owner.it, None)]


def keepalive(config: ClientConfig) -> list[Finding]:
    """VoIP through the tunnel needs the home NAT's binding kept open: incoming calls arrive on
    it. Without PersistentKeepalive (or with more than 25 s) they stop ringing."""
    sip = config.info.sip
    try:
        routed = config.allowed_ips
    except ValueError:
        return []
    if sip is None or not _covered(sip.server, routed):
        return []
    value = config.keepalive
    if value is not None and 0 < value <= VOIP_KEEPALIVE_MAX:
        return []
    what = (
        "calls go through the tunnel but PersistentKeepalive is "
        + ("not set" if value is None else f"{value} s")
        + ": incoming calls stop ringing once your home router forgets the connection"
    )
    who = f"IT ({config.info.contact})" if config.info.contact else "your company's IT"
    fix = (
        f"Add the line `PersistentKeepalive = {VOIP_KEEPALIVE_MAX}` to the [Peer] section of "
        f"your config; {who} should set `[network] keepalive = {VOIP_KEEPALIVE_MAX}` in the "
        "profile so every new config has it."
    )
    line = _line(config, "persistentkeepalive")
    return [Finding(Status.fail, what, fix, Owner.it, line)]


def metadata(config: ClientConfig) -> list[Finding]:
    return [
        Finding(
            Status.warn,
            f"a netsetup-diagnose line could not be read: {what}",
            f"{_new_config(config)} (diagnose then knows every check to run)",
            Owner.it,
            line,
        )
        for line, what in config.info.problems
    ]


RULES: tuple[Rule, ...] = (keys, addresses, endpoint, allowed_ips, mtu, dns, keepalive, metadata)
