"""Checks of the `tunnel` family: the config is sane (`tunnel.config`), the tunnel carries traffic
(`tunnel.handshake`) and big packets get through it (`tunnel.mtu`).

The tunnel is judged by traffic first: probes to the gateway's tunnel address (the witness answers
them) and to the company's DNS server. Only when nothing answers does the handshake check look
further, at WireGuard's own state where it is readable and at the gateway witness outside the
tunnel, to name the one who must act. The config check is in `tunnelconfig`, the reasons for a
silent gateway in `tunnelsilence`.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Outcome, Owner, Status

T = TypeVar("T")

REKEY_TIMEOUT_S = 5.0  # WireGuard retries a handshake after 5 s: judge after a little more
HANDSHAKE_WINDOW_S = 6.0
# No answer by then: ask the witness while still waiting. After WireGuard's first retry (5 s plus
# up to 1/3 s of jitter), so that a packet of ours the gateway saw is a recent one: the witness only
# knows when it last saw us, and a packet from before we started must not count.
WITNESS_ASK_AFTER_S = 5.6
WITNESS_TIMEOUT_S = 1.2
EVIDENCE_AFTER_S = 0.4  # unanswered this long: start gathering what explains the silence
PROBE_INTERVAL_S = 0.5


class TunnelConfigCheck(Check):
    """The config without the network: keys, addresses, AllowedIPs covering the gateway, DNS and
    targets, the MTU, DNS, the keepalive VoIP needs (fails: calls through the tunnel without
    PersistentKeepalive <= 25 s), unreadable netsetup-diagnose lines."""

    id = "tunnel.config"
    title = "WireGuard config"
    budget_s = 2.0

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.checks.tunnelconfig import judge_config

        return judge_config(ctx.config)


class HandshakeCheck(Check):
    """The tunnel carries traffic: the interface with the config's Address is up, and a probe
    through it is answered (the gateway witness, the DNS server). Silence for ~6 s after sending
    (WireGuard retries after 5 s) fails with one owner where the witness tells the cause (UDP
    blocked: assistant; key changed, revoked or expired, another port: IT), else the causes
    that remain. An idle tunnel with an old handshake is healthy: it is judged after sending."""

    id = "tunnel.handshake"
    title = "Tunnel to the company"
    budget_s = 8.5

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.platform.net import interface_holding

        config = ctx.config
        addresses = [a.ip for a in config.addresses]
        if not addresses:
            return Outcome.skip("the config has no Address: tunnel.config says what to fix")
        interface = interface_holding(addresses)
        if interface is None or not interface.up:
            return _tunnel_off(ctx, addresses)
        return _probe_tunnel(ctx, interface.name)


class MtuCheck(Check):
    """The largest Don't-Fragment packet through the tunnel and the path MTU outside it, against
    the gateway witness; a black hole fails with the MTU to put in the config."""

    id = "tunnel.mtu"
    title = "Packet size through the tunnel"
    budget_s = 5.0
    needs = ("tunnel.handshake",)

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.checks.tunnelmtu import measure_mtu

        return measure_mtu(ctx)


@register_family("tunnel")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return (TunnelConfigCheck(), HandshakeCheck(), MtuCheck())


# -- tunnel.handshake ---------------------------------------------------------------------------


def tunnel_name(ctx: CheckContext) -> str:
    """The tunnel's name as the WireGuard apps show it: the config's file name without .conf."""
    name = ctx.config.name
    return name[:-5] if name.endswith(".conf") else name


def contact(ctx: CheckContext) -> str:
    return f"IT ({ctx.info.contact})" if ctx.info.contact else "your company's IT"


def _tunnel_off(ctx: CheckContext, addresses: list[Any]) -> Outcome:
    shown = ", ".join(str(a) for a in addresses)
    name = tunnel_name(ctx)
    return Outcome.problem(
        Status.fail,
        f"the tunnel is not on: no network interface of this computer has its address ({shown})",
        f"Turn the tunnel on in the WireGuard app (tunnel {name}), or on Linux: "
        f"wg-quick up {ctx.config.path or name}",
        Owner.assistant,
        tunnel_address=shown,
    )


class Background:
    """A function run in a thread; `result(timeout)` is its value, or None if not done."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: Any = None
        self._done = threading.Event()

        def body() -> None:
            try:
                self._value = fn()
            except Exception:  # a helper that fails gives no evidence, not an error
                self._value = None
            self._done.set()

        threading.Thread(target=body, daemon=True, name="tunnel evidence").start()

    def result(self, timeout: float) -> Any:
        self._done.wait(max(0.0, timeout))
        return self._value if self._done.is_set() else None


def answerers(ctx: CheckContext) -> list[Any]:
    """What answers through the tunnel: the witness on each gateway tunnel address, else (or
    also) the company's DNS servers inside AllowedIPs."""
    from netsetup.diagnose.probes import dns_answerer, witness_answerer

    info = ctx.info
    found = []
    if info.witness_port:
        found += [witness_answerer(a, info.witness_port) for a in info.gateway_addresses]
    routed = ctx.config.allowed_ips
    name = info.dns_names[0] if info.dns_names else ""
    for server in ctx.config.dns_servers:
        if any(server in net for net in routed if net.version == server.version):
            found.append(dns_answerer(server, name))
    return found


def read_wg_state(ctx: CheckContext) -> Any:
    from netsetup.diagnose.wgstate import Unreadable, read_state

    public = ctx.config.client_public_key()
    if public is None:
        return Unreadable("the config has no valid private key")
    return read_state(public, timeout=min(2.0, ctx.time_left()))


_WHO_ANSWERED = {"witness": "gateway", "dns": "DNS server"}


def through_tunnel(ctx: CheckContext, address: Any) -> bool:
    """Would this computer send to `address` through the tunnel? Only if the route it picks
    leaves from one of the tunnel's Addresses: a home network or another VPN holding the
    company's addresses takes the packets elsewhere, and whatever answers there (the home
    router's DNS, say) proves nothing about the tunnel. No route at all: yes (sending fails)."""
    from netsetup.diagnose.platform.net import route_source

    source = route_source(address)
    return source is None or source in {a.ip for a in ctx.config.addresses}


def split_by_route(ctx: CheckContext, probes: list[Any]) -> tuple[list[Any], list[Any]]:
    """(the answerers routed through the tunnel, those this computer sends elsewhere)."""
    inside: list[Any] = []
    elsewhere: list[Any] = []
    for probe in probes:
        (inside if through_tunnel(ctx, probe.address) else elsewhere).append(probe)
    return inside, elsewhere


def _routed_elsewhere(ctx: CheckContext, elsewhere: list[Any], interface: str) -> Outcome:
    from netsetup.diagnose.checks.interfaces import suggest_lan
    from netsetup.diagnose.platform.net import interface_for

    address = elsewhere[0].address
    other = interface_for(address)
    via = f"through {other.name}" if other is not None else "another way"
    suggestion = suggest_lan(ctx.config.allowed_ips)
    return Outcome.problem(
        Status.fail,
        f"packets for the company's {address} do not go into the tunnel: this computer sends "
        f"them {via}, so the tunnel could not be tested",
        f"Your home network (or another VPN) uses the company's addresses. Change your "
        f"router's home network to e.g. {suggestion} (the router's LAN / DHCP settings) or "
        f"disconnect the other VPN, then turn the tunnel {tunnel_name(ctx)} off and on.",
        Owner.assistant,
        interface=interface,
        not_through_tunnel=[str(p.address) for p in elsewhere],
        sent_through=other.name if other is not None else None,
    )


def _probe_tunnel(ctx: CheckContext, interface: str) -> Outcome:
    from netsetup.diagnose.probes import first_answer

    probes, elsewhere = split_by_route(ctx, answerers(ctx))
    if not probes and elsewhere:
        return _routed_elsewhere(ctx, elsewhere, interface)
    if not probes:
        return Outcome(
            Status.unknown,
            "nothing to test the tunnel against: the config names no gateway tunnel address "
            "and no DNS server inside AllowedIPs",
            {"interface": interface},
        )
    started_wall = ctx.clock.now().timestamp()
    window = min(HANDSHAKE_WINDOW_S, ctx.time_left() - 0.6)
    ask = _Evidence(ctx)
    answer, sent = first_answer(probes, max(0.0, window), PROBE_INTERVAL_S, on_tick=ask.tick)
    if answer is not None:
        kind = answer.label.split()[0]
        return Outcome.passed(
            f"the tunnel works: the company's {_WHO_ANSWERED.get(kind, kind)} answered through "
            f"it after {answer.after_s * 1000:.0f} ms",
            interface=interface,
            answered_by=kind,
            answered_after_ms=round(answer.after_s * 1000, 1),
            probes_sent=answer.sent,
        )
    if window < REKEY_TIMEOUT_S:
        return Outcome(
            Status.unknown,
            f"no answer through the tunnel within {max(window, 0):.1f} s, too short to judge "
            f"(WireGuard retries a handshake after {REKEY_TIMEOUT_S:g} s)",
            {"interface": interface, "probes_sent": sent},
        )
    from netsetup.diagnose.checks.tunnelsilence import Silence, explain_silence, fresh_handshake

    reading = Background(lambda: read_wg_state(ctx))  # while the witness answers
    witness = ask.answer(ctx.time_left(WITNESS_TIMEOUT_S + 0.2))
    after = reading.result(ctx.time_left(2.0) - 0.3)
    shaken = fresh_handshake(ctx, after, started_wall)
    if shaken is not None:
        return shaken
    evidence = Silence(
        window_s=window,
        probes_sent=sent,
        interface=interface,
        before=ask.state_before(0.2),
        after=after,
        witness=witness,
        witness_configured=ask.configured,
        fresh_endpoint=ask.endpoint_now(0.2),
        witness_after_s=ask.answered_after_s,
    )
    return explain_silence(ctx, evidence)


class _Evidence:
    """What is gathered while the probes go unanswered, started only then: a healthy tunnel
    answers within milliseconds and leaves no thread behind. WireGuard's state as a baseline and
    a fresh lookup of the Endpoint name after EVIDENCE_AFTER_S; the witness (outside the tunnel)
    after WITNESS_ASK_AFTER_S."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.started = time.monotonic()  # about when the first probe went out
        endpoint = ctx.config.endpoint
        self.host = str(endpoint[0]) if endpoint else None
        self.configured = bool(
            ctx.info.witness_port and self.host and ctx.config.private_key is not None
        )
        self.before: Background | None = None
        self.fresh_endpoint: Background | None = None
        self.asked: Background | None = None
        self.answered_after_s: float | None = None

    def tick(self, now: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        if self.before is None and (now or elapsed >= EVIDENCE_AFTER_S):
            self.before = Background(lambda: read_wg_state(self.ctx))
            self.fresh_endpoint = Background(lambda: resolve(self.host))
        due = now or elapsed >= WITNESS_ASK_AFTER_S
        if self.configured and self.asked is None and due:
            self.asked = Background(self._ask)

    def _ask(self) -> Any:
        """The witness asked over every address family the Endpoint name has, at once: it
        tells whether WireGuard packets came from the address the query came from, and
        WireGuard may send over IPv4 while a query by name goes over IPv6 (or the reverse)."""
        from netsetup.responder.client import ask_witness

        config, info = self.ctx.config, self.ctx.info
        assert config.private_key is not None and info.witness_port and self.host
        gateway, key, port = config.gateway_public_key or "", config.private_key, info.witness_port
        hosts = one_per_family(resolve(self.host)) or [self.host]
        asks = [
            Background(partial(ask_witness, h, port, key, gateway, WITNESS_TIMEOUT_S))
            for h in hosts
        ]
        answers = [a.result(WITNESS_TIMEOUT_S + 0.2) for a in asks]
        self.answered_after_s = time.monotonic() - self.started
        return merge_witness_answers(answers)

    def answer(self, wait: float) -> Any:
        self.tick(now=True)
        return self.asked.result(wait) if self.asked is not None else None

    def state_before(self, wait: float) -> Any:
        return self.before.result(wait) if self.before is not None else None

    def endpoint_now(self, wait: float) -> Any:
        return self.fresh_endpoint.result(wait) if self.fresh_endpoint is not None else None


def one_per_family(addresses: list[str]) -> list[str]:
    """The first address of each IP version."""
    by_family: dict[bool, str] = {}
    for address in addresses:
        by_family.setdefault(":" in address, address)
    return list(by_family.values())


def merge_witness_answers(answers: list[Any]) -> Any:
    """One answer from the witness's answers over several address families: a changed gateway
    key if any says so, else the status that saw our packets most lately (the family WireGuard
    really uses), else None."""
    from netsetup.responder.client import KeyMismatch, WitnessStatus

    mismatch = [a for a in answers if isinstance(a, KeyMismatch)]
    if mismatch:
        return mismatch[0]
    statuses = [a for a in answers if isinstance(a, WitnessStatus)]
    if not statuses:
        return None

    def latest(w: WitnessStatus) -> tuple[bool, float]:
        age = w.seen_age_s if w.seen_age_s is not None else float("inf")
        return (bool(w.seen_recently), -age)

    return max(statuses, key=latest)


def resolve(host: str | None) -> list[str]:
    """A fresh lookup of the Endpoint name (WireGuard resolved it only when the tunnel started)."""
    if host is None:
        return []
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(i[4][0]) for i in infos})
