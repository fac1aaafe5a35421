"""The gateway's nftables ruleset: what each assistant may reach through the tunnel.

The client's AllowedIPs only decide what the assistant's machine routes into the tunnel; anyone can
edit them. This ruleset is the enforcement, and it is written to be the only ruleset on the
gateway:

- forwarding is dropped unless a packet belongs to an active peer: a flow the peer's mode allows
  (`profile.access_for(mode)`, plus DNS, the office responder's UDP and TCP port and the VoIP
  path), or a call the PBX or a media host
  places to the peer's phone. Nothing else is forwarded, so a host on the WAN side reaches neither
  the office nor the peers. Peers never reach each other.
- every packet of a peer, in both directions, is checked against the peer's *current* state: the
  check comes before anything conntrack knows, so established flows end with the peer's expiry
  and with any access the profile takes away. The mode's rules match the connection's original
  tuple (`ct original ...`), so one rule admits a flow's packets both ways and the ICMP errors
  that belong to it, and nothing of a flow the mode does not allow.
- the gateway itself answers the tunnel only with ping and the witness's UDP port on its tunnel
  addresses, DNS when a DNS server of the profile is one of its own addresses and the VoIP path
  when the PBX or a media host is; what it sends into the tunnel is its answers and calls. Its
  tunnel addresses answer the tunnel only; its other interfaces are not filtered, except that
  the rules record who sends to WireGuard's port (timed sets the witness reads) and accept the
  witness's port (and UDP+TCP 5060 for its SIP mirror when `[diagnose] sip_mirror` is on), and
  that with `gateway.admin_from` the gateway's SSH answers those sources only (`admin_rules`).
- expiry is an absolute time: an expiring peer passes through the chain of its expiry instant,
  which drops it from then on by the kernel's clock (`meta time`, unix seconds). Loading the
  same file again later never gives access back. Revoked and expired peers are not in the maps.

The output is one `nft -f` file that atomically replaces the `netsetup` table of the interface.
Each such table denies all forwarding that is not its own tunnel's, and a drop in any table is
final: one gateway carries one netsetup tunnel (a second one's table would cut the first).
Forwarding is denied by the forward chain's last rule rather than its policy, so that no packet
slips through while a reload runs (see `_hooks`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from netsetup.profile.model import MODES, AccessRule, Peer, Profile
from netsetup.profile.values import IPAddress, IPNetwork, format_time

_SAFE_COMMENT = re.compile(r"[^A-Za-z0-9 ._:/@()+,-]")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9]")

# nft keeps `meta time` in nanoseconds in 64 bits: later instants wrap around silently (checked
# with nft 1.0.6), so an expiry after this one (2262-04-11) is enforced as this one
MAX_NFT_TIME = 9_223_372_036


def table_name(interface: str) -> str:
    """The nftables table that holds the ruleset of one tunnel interface: one table per interface
    name (wg-0 and wg_0 are two tunnels), so every character nft would not take bare, `_`
    included, is written as `_` and its hex code."""
    return "netsetup_" + _SAFE_NAME.sub(lambda m: f"_{ord(m.group()):02x}", interface)


def mode_chain(mode: str) -> str:
    return f"mode_{_SAFE_NAME.sub('_', mode)}"


def expiry_seconds(expires: datetime) -> int:
    """The unix second from which an expiring peer's packets are dropped (never later than its
    expiry: a fraction of a second is cut, not granted)."""
    return min(math.floor(expires.timestamp()), MAX_NFT_TIME)


def expiry_chain(seconds: int) -> str:
    return f"expires_{seconds}"


def render_firewall(profile: Profile, peers: Sequence[Peer], now: datetime) -> str:
    """nftables ruleset for the gateway of `profile`: one chain per access mode, one tiny chain
    per expiry instant, and maps from each active peer's tunnel address to both.

    Rules are written once per mode, not once per peer, so the ruleset grows by map elements (and
    one chain per distinct expiry) and loads in time linear in the inventory. Load it with
    `nft -f FILE`; loading again replaces the previous version atomically.
    """
    iface = profile.gateway.interface
    table = table_name(iface)
    active = [p for p in peers if p.is_active(now)]
    inactive = len(peers) - len(active)
    lines = [
        f"# netsetup: gateway firewall of {_comment(profile.id)} on {_comment(iface)}",
        f"# rendered {format_time(now)}: {len(active)} active peer(s); "
        f"{inactive} revoked or expired peer(s) get nothing",
        "# load with: nft -f FILE (replaces the previous version atomically)",
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
    ]
    for mode in MODES:
        lines.append(
            f"\t# the flows an assistant in {mode} mode may have (checked on every packet)"
        )
        lines.extend(_chain(mode_chain(mode), peer_rules(profile, mode)))
    lines.append(
        "\t# calls to the assistants' phones: the PBX and the media hosts start these flows"
    )
    lines.extend(_chain("calls", call_rules(profile)))
    if profile.voip is not None:
        lines.append("\t# the VoIP path, where the PBX or a media host is the gateway itself")
        lines.extend(_chain("voip", voip_rules(profile)))
    lines.extend(_expiry_chains(active))
    lines.extend(_peer_maps(active))
    lines.extend(witness_sets(profile))
    lines.extend(_hooks(profile))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _chain(
    name: str, rules: Sequence[str], head: Sequence[str] = (), tail: Sequence[str] = ()
) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{r}" for r in (*head, *rules, *tail)), "\t}", ""]


def _expiry_chains(active: Sequence[Peer]) -> list[str]:
    instants = sorted({expiry_seconds(p.expires) for p in active if p.expires is not None})
    if not instants:
        return []
    out = ["\t# one chain per expiry instant: from that second on, by the kernel's clock, drop"]
    for seconds in instants:
        when = format_time(datetime.fromtimestamp(seconds, UTC))
        rule = f'meta time >= {seconds} drop comment "expired at {when}"'
        out.extend(_chain(expiry_chain(seconds), [rule]))
    return out


@dataclass(frozen=True)
class _Entry:
    address: IPAddress
    verdict: str


def _peer_maps(active: Sequence[Peer]) -> list[str]:
    out = ["\t# the active peers, by tunnel address"]
    out.extend(
        f"\t#   {_comment(p.name)} ({p.mode}): {p.address_v4}"
        + (f", {p.address_v6}" if p.address_v6 else "")
        + (f", until {format_time(p.expires)}" if p.expires else "")
        for p in active
    )
    modes: list[_Entry] = []
    expiring: list[_Entry] = []
    for peer in active:
        addresses: list[IPAddress] = [peer.address_v4]
        if peer.address_v6 is not None:
            addresses.append(peer.address_v6)
        for address in addresses:
            modes.append(_Entry(address, f"jump {mode_chain(peer.mode)}"))
            if peer.expires is not None:
                expiring.append(
                    _Entry(address, f"jump {expiry_chain(expiry_seconds(peer.expires))}")
                )
    for name, entries in (("peers", modes), ("expiring", expiring)):
        out.extend(_map(f"{name}_v4", "ipv4_addr", [e for e in entries if e.address.version == 4]))
        out.extend(_map(f"{name}_v6", "ipv6_addr", [e for e in entries if e.address.version == 6]))
    return out


def _map(name: str, kind: str, entries: Sequence[_Entry]) -> list[str]:
    out = [f"\tmap {name} {{", f"\t\ttype {kind} : verdict"]
    if entries:
        out.append("\t\telements = {")
        out.extend(f"\t\t\t{e.address} : {e.verdict}," for e in entries)
        out.append("\t\t}")
    return [*out, "\t}", ""]


def _hooks(profile: Profile) -> list[str]:
    iface = profile.gateway.interface
    out = _chain(
        "input",
        [
            *admin_rules(profile),
            *witness_seen_rules(profile),
            f'iifname "{iface}" jump peer_to_gateway',
            *tunnel_only_rules(profile),
            *witness_outside_rules(profile),
        ],
        head=["type filter hook input priority filter; policy accept;"],
    )
    out += _chain(
        "output",
        [f'oifname "{iface}" jump gateway_to_peer'],
        head=["type filter hook output priority filter; policy accept;"],
    )
    # the forward chain denies by its last rule, not by `policy drop`: a reload deletes the
    # table and creates it again in one transaction, and the kernel (seen on 6.18) hooks a new
    # base chain when the transaction is prepared but sets its drop policy only while
    # committing, after the old chain is unhooked. A forbidden packet in that instant met the new
    # rules, then the accept policy (lab: 2-3 packets in 60 reloads under a flood). A rule is
    # live exactly when the new ruleset is, so the deny has no gap.
    out += _chain(
        "forward",
        [
            f'iifname "{iface}" oifname "{iface}" drop comment "peers never reach each other"',
            f'iifname "{iface}" jump from_peer',
            f'oifname "{iface}" jump to_peer',
        ],
        tail=['drop comment "nothing else is forwarded: not from the WAN, not between the others"'],
        head=[
            "type filter hook forward priority filter; policy accept;",
            "# deny by the last rule: a reloaded chain gets its drop policy late (see firewall.py)",
        ],
    )
    out.append("\t# a packet of a peer that is unknown, revoked or expired goes no further")
    out += _chain(
        "sender_active",
        [
            "ip saddr != @peers_v4 drop",
            "ip6 saddr != @peers_v6 drop",
            "ip saddr vmap @expiring_v4",
            "ip6 saddr vmap @expiring_v6",
        ],
    )
    out += _chain(
        "receiver_active",
        [
            "ip daddr != @peers_v4 drop",
            "ip6 daddr != @peers_v6 drop",
            "ip daddr vmap @expiring_v4",
            "ip6 daddr vmap @expiring_v6",
        ],
    )
    out.append("\t# from a peer: its own flows by its mode, its answers to calls")
    out += _chain(
        "from_peer",
        [
            "jump sender_active",
            "ct direction original ip saddr vmap @peers_v4",
            "ct direction original ip6 saddr vmap @peers_v6",
            "ct direction reply jump calls",
        ],
    )
    # the calls rules trust a source address (the PBX's): strict reverse-path filtering makes
    # sure it came in where the gateway routes that address, not from the WAN side
    out.append("\t# to a peer: answers within its own flows by its mode, and calls")
    out += _chain(
        "to_peer",
        [
            'fib saddr . iif oif missing drop comment "a source that is not routed back there"',
            "jump receiver_active",
            "ct direction reply ip daddr vmap @peers_v4",
            "ct direction reply ip6 daddr vmap @peers_v6",
            "ct direction original jump calls",
        ],
    )
    out.append("\t# the gateway itself, seen from the tunnel")
    out += _chain("peer_to_gateway", ["jump sender_active", *gateway_rules(profile), "drop"])
    # what the gateway itself sends into the tunnel obeys the same rule as what it forwards: a
    # service on the gateway must not reach an assistant's machine that the office cannot
    out.append("\t# the gateway itself, towards the tunnel: its answers, and calls")
    out += _chain(
        "gateway_to_peer",
        [
            "jump receiver_active",
            'ct direction reply accept comment "answers to what the tunnel may ask of it"',
            "ct direction original jump calls",
            "drop",
        ],
    )
    return out


def admin_rules(profile: Profile) -> list[str]:
    """`gateway.admin_from`: the gateway's SSH port (`gateway.ssh`'s, else 22) answers those
    sources only, per family; a family with no source there gets no SSH at all. First in input,
    so no later rule can let another source in. The gateway's own loopback stays open: what
    reaches it there started on the gateway. No admin_from: SSH is left alone (nothing here).

    These rules can cut the admin's own path (an admin_from that misses where apply runs from):
    apply loads them under the gateway's armed revert, which restores the ruleset before then
    unless a fresh SSH connection confirms in time."""
    sources = profile.gateway.admin_from
    if not sources:
        return []
    port = profile.gateway.ssh.port if profile.gateway.ssh is not None else 22
    listed = ", ".join(str(n) for n in sources)
    rules = [f"# SSH (tcp {port}) to the gateway only from gateway.admin_from: {listed}"]
    for family, version in (("ip", 4), ("ip6", 6)):
        mine = _collapsed([n for n in sources if n.version == version])
        if mine:
            match = f"{family} saddr != {{ {', '.join(mine)} }}"
            why = "SSH only from admin_from"
        else:
            match = f"meta nfproto ipv{version}"
            why = f"SSH only from admin_from, which has no IPv{version} source"
        rules.append(f'iifname != "lo" tcp dport {port} {match} drop comment "{why}"')
    return rules


def _collapsed(networks: Sequence[IPNetwork]) -> list[str]:
    """Networks of one family, merged where they overlap or touch: nft refuses an anonymous set
    whose intervals overlap."""
    merged: Iterable[IPNetwork] = ipaddress.collapse_addresses(networks)  # type: ignore[type-var]
    return [str(n) for n in merged]


def tunnel_only_rules(profile: Profile) -> list[str]:
    """The gateway's addresses in the tunnel subnet answer the tunnel (and the gateway itself)
    only: by Linux's weak host model a WAN host that routes the tunnel subnet to the gateway
    would otherwise reach whatever listens there for the peers, such as their DNS."""
    network = profile.network
    subnets: list[IPNetwork] = [network.tunnel_v4]
    if network.tunnel_v6 is not None:
        subnets.append(network.tunnel_v6)
    return [
        f'iifname != "lo" {_family(subnet)} daddr {subnet} drop '
        'comment "the tunnel addresses answer the tunnel only"'
        for subnet in subnets
    ]


def gateway_rules(profile: Profile) -> list[str]:
    """What a peer may ask of the gateway itself: ping on its tunnel addresses, the witness's
    probes there, and DNS where a DNS server of the profile is one of the gateway's own
    addresses (only those reach input)."""
    v4 = profile.network.gateway_address_v4
    rules = [f'ip daddr {v4} icmp type echo-request accept comment "ping"']
    v6 = profile.network.gateway_address_v6
    if v6 is not None:
        rules.append(f'ip6 daddr {v6} icmpv6 type echo-request accept comment "ping"')
    for server in profile.dns.servers:
        rules.append(
            f"{_family(server)} daddr {server} meta l4proto {{ tcp, udp }} th dport 53 "
            'accept comment "DNS on the gateway"'
        )
    witness = profile.gateway.witness_port
    if witness:
        rules += [
            f'{_family(a)} daddr {a} udp dport {witness} accept comment "the witness"'
            for a in (v4, v6)
            if a is not None
        ]
    if profile.voip is not None:
        # a PBX (or media host) on the gateway itself: its SIP and RTP, and answers to its calls
        rules += ["ct direction original jump voip", "ct direction reply jump calls"]
    return rules


# how long the source of a packet to WireGuard's port stays in the witness's sets
SEEN_TIMEOUT = "10m"
SEEN_SETS = (("wg_seen_v4", "ipv4_addr", "ip"), ("wg_seen_v6", "ipv6_addr", "ip6"))


def witness_sets(profile: Profile) -> list[str]:
    """The timed sets in which input records who sent to WireGuard's port, and when: what the
    witness (`netsetup responder --role gateway`) tells an assistant about their own address.
    None when the profile turns the witness off (`gateway.witness_port = 0`)."""
    if not profile.gateway.witness_port:
        return []
    out = ["\t# sources of packets to WireGuard's port, read by the witness (netsetup responder)"]
    for name, kind, _ in SEEN_SETS:
        out += [
            f"\tset {name} {{",
            f"\t\ttype {kind}",
            "\t\tflags dynamic,timeout",
            f"\t\ttimeout {SEEN_TIMEOUT}",
            "\t}",
            "",
        ]
    return out


def witness_seen_rules(profile: Profile) -> list[str]:
    """Input fills the witness's sets from packets to WireGuard's listen port."""
    if not profile.gateway.witness_port:
        return []
    port = profile.gateway.listen_port
    return [
        f"udp dport {port} update @{name} {{ {family} saddr }} "
        'comment "WireGuard seen from there (for the witness)"'
        for name, _, family in SEEN_SETS
    ]


def witness_outside_rules(profile: Profile) -> list[str]:
    """The witness's UDP port, from anywhere outside the tunnel (after the rules that keep the
    tunnel addresses for the tunnel); from the tunnel it is in `gateway_rules`."""
    witness = profile.gateway.witness_port
    if not witness:
        return []
    iface = profile.gateway.interface
    rules = [f'iifname != "{iface}" udp dport {witness} accept comment "the witness"']
    if profile.mirrors_sip:
        rules.append(
            f'iifname != "{iface}" meta l4proto {{ tcp, udp }} th dport {SIP_MIRROR_PORT} '
            'accept comment "SIP mirror of the witness (diagnose.sip_mirror)"'
        )
    return rules


SIP_MIRROR_PORT = 5060  # where a home router's SIP ALG acts: the mirror must be asked there


def peer_rules(profile: Profile, mode: str) -> list[str]:
    """The flows of one mode: its destinations, DNS and the VoIP path, by the connection's
    original tuple (the peer's side is the source)."""
    rules: list[str] = []
    for rule in profile.access_for(mode):
        rules += _flow("daddr", rule, f"{_comment(mode)}: {_comment(str(rule))}")
    for server in profile.dns.servers:
        network = ipaddress.ip_network(server)
        rules += _flow("daddr", AccessRule(network, "udp", ((53, 53),)), "DNS")
        rules += _flow("daddr", AccessRule(network, "tcp", ((53, 53),)), "DNS")
    return rules + responder_rules(profile) + voip_rules(profile)


def responder_rules(profile: Profile) -> list[str]:
    """The office responder (`[diagnose] responder`), in every mode: its UDP port (voice probes)
    and the same TCP port (the speed test) on its host, nothing else there. Its RTP tests use the
    VoIP path (the media hosts' RTP range, and calls to the phone)."""
    responder = profile.diagnose.responder
    if responder is None:
        return []
    try:
        network = ipaddress.ip_network(responder[0])
    except ValueError:  # a host name: nft matches addresses only; the mode's rules decide
        return []
    port = responder[1]
    rules: list[str] = []
    for proto in ("udp", "tcp"):
        rules += _flow("daddr", AccessRule(network, proto, ((port, port),)), "office responder")
    return rules


def voip_rules(profile: Profile) -> list[str]:
    """The VoIP path every peer has: SIP to the PBX, RTP to the media hosts, as flows it opens."""
    return _voip_flows(profile, "daddr", "SIP", "RTP")


def call_rules(profile: Profile) -> list[str]:
    """Flows the PBX (SIP, its ports and transports) and the media hosts (RTP range) open to an
    assistant's phone."""
    return _voip_flows(profile, "saddr", "SIP from the PBX", "RTP to the phone")


def _voip_flows(profile: Profile, end: str, sip_label: str, rtp_label: str) -> list[str]:
    """The PBX's SIP ports and the media hosts' RTP range, matched on the flow's `end`: `daddr`
    for flows a peer opens to them, `saddr` for flows they open to a peer."""
    voip = profile.voip
    if voip is None:
        return []
    rules: list[str] = []
    sip = ipaddress.ip_network(voip.sip_server)
    for proto, port in _sip_ports(profile):
        rules += _flow(end, AccessRule(sip, proto, ((port, port),)), sip_label)
    for network in voip.media_networks:
        rules += _flow(end, AccessRule(network, "udp", (voip.rtp_ports,)), rtp_label)
    return rules


def _sip_ports(profile: Profile) -> list[tuple[str, int]]:
    voip = profile.voip
    if voip is None:
        return []
    ports = {
        ("udp" if t == "udp" else "tcp", voip.tls_port if t == "tls" else voip.sip_port)
        for t in voip.transports
    }
    return sorted(ports, key=lambda p: (p[0] != "udp", p[1]))


def _flow(side: str, rule: AccessRule, comment: str) -> list[str]:
    """Rules admitting the flows of `rule`, where `side` is the end the rule names: `daddr` for
    flows the peer opens, `saddr` for flows opened to the peer. They match the connection's
    original tuple, so a flow's replies and its ICMP errors (`related`) pass with it."""
    family = _family(rule.network)
    match = f"ct original {family} {side} {rule.network}"
    if rule.proto is None:
        return [f'{match} accept comment "{comment}"']
    if not rule.ports:
        return [f'{match} ct protocol {rule.proto} accept comment "{comment}"']
    icmp = "icmp" if family == "ip" else "ipv6-icmp"
    out = []
    for low, high in rule.ports:
        port = str(low) if low == high else f"{low}-{high}"
        # nft 1.0.6 can only read a port for `ct original proto-dst` after a single
        # `meta l4proto`: one rule for the flow itself, one for the ICMP errors about it
        out.append(
            f"meta l4proto {rule.proto} {match} ct original proto-dst {port} "
            f'accept comment "{comment}"'
        )
        out.append(
            f"meta l4proto {icmp} {match} ct protocol {rule.proto} ct original proto-dst {port} "
            f'accept comment "{comment} (ICMP errors)"'
        )
    return out


def _family(value: IPNetwork | IPAddress) -> str:
    return "ip" if value.version == 4 else "ip6"


def _comment(text: str) -> str:
    return _SAFE_COMMENT.sub("_", text)[:120]
