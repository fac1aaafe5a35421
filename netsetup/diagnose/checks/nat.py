"""The `nat` check: how the home router translates this computer's UDP traffic, seen from the
gateway witness outside the tunnel (STUN, RFC 5389, on the witness port).

- the public mapping (address and port; the address masked in every report unless
  `--include-public-ip`: the redactor does that for every public address);
- with `--long`, the UDP binding lifetime (RFC 5780 4.6, parallel sockets idle for several times
  up to 180 s) compared with the tunnel's PersistentKeepalive: a router that forgets a quiet UDP
  flow sooner than the keepalive refreshes it drops what the office sends in between, so an
  incoming call can fail to ring until the assistant's side sends something.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Metric, Outcome, Owner, Status

if TYPE_CHECKING:
    from netsetup.responder.client import Mapping

IDLE_TIMES_S = (15.0, 25.0, 35.0, 50.0, 70.0, 100.0, 140.0, 180.0)
LONG_BUDGET_S = 190.0
MAPPING_TIMEOUT_S = 2.0
DEFAULT_KEEPALIVE_S = 25
NO_ANSWER = (
    "the gateway witness did not answer when asked which public address it sees this computer from"
)
FULL_TUNNEL = "the tunnel carries all traffic: the gateway cannot be reached outside it"


def witness_outside(ctx: CheckContext) -> tuple[str, int] | str:
    """The witness's address outside the tunnel (the Endpoint's address, the witness port), or
    why there is none."""
    from netsetup.diagnose.checks.tunnel import through_tunnel

    endpoint, port = ctx.config.endpoint, ctx.info.witness_port
    if endpoint is None or not port:
        return "the config names no gateway witness (no Endpoint or witness port)"
    try:
        infos = socket.getaddrinfo(str(endpoint[0]), port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return f"the gateway's name {endpoint[0]} does not resolve"
    addresses = sorted({str(i[4][0]) for i in infos}, key=lambda a: ":" in a)  # IPv4 first
    if not addresses:
        return f"the gateway's name {endpoint[0]} does not resolve"
    import ipaddress

    if through_tunnel(ctx, ipaddress.ip_address(addresses[0])) and _all_routed(ctx):
        return FULL_TUNNEL
    return addresses[0], port


def _all_routed(ctx: CheckContext) -> bool:
    return any(net.prefixlen == 0 for net in ctx.config.allowed_ips)


def public_mapping(ctx: CheckContext) -> Mapping | str:
    """This computer's UDP mapping as the witness sees it (shared by `nat` and `sip.alg`), or
    why it is not known."""

    def ask() -> Mapping | str:
        from netsetup.responder.client import stun_mapping

        where = witness_outside(ctx)
        if isinstance(where, str):
            return where
        found = stun_mapping(where, min(MAPPING_TIMEOUT_S, ctx.time_left()))
        return found if found is not None else NO_ANSWER

    found: Mapping | str = ctx.once("nat.mapping", ask)
    return found


def _mapping_metrics(mapping: Mapping) -> dict[str, Metric]:
    return {
        "nat": mapping.translated,
        "public_address": mapping.mapped[0],
        "public_port": mapping.mapped[1],
        "local_address": mapping.local[0],
        "port_preserved": mapping.local[1] == mapping.mapped[1],
    }


class NatCheck(Check):
    """The public UDP mapping and (with --long) how long the NAT keeps a quiet one."""

    id = "nat"
    title = "Home router address translation (NAT)"
    budget_s = 6.0
    long_budget_s = LONG_BUDGET_S  # --long: the binding lifetime, up to 3 minutes idle
    phase = 1

    def run(self, ctx: CheckContext) -> Outcome:
        mapping = public_mapping(ctx)
        if isinstance(mapping, str):
            return _not_known(mapping)
        metrics = _mapping_metrics(mapping)
        if not mapping.translated:
            return Outcome.passed(
                f"no address translation: this computer's address {mapping.mapped[0]} is the "
                "one the internet sees",
                **metrics,
            )
        seen = f"the home router translates addresses (NAT): the internet sees {mapping.mapped[0]}"
        if not ctx.options.long:
            metrics["lifetime"] = "not measured (needs --long)"
            return Outcome.passed(
                f"{seen}; how long it keeps a quiet UDP connection needs --long (up to 3 min)",
                **metrics,
            )
        return _lifetime(ctx, seen, metrics)


def _not_known(why: str) -> Outcome:
    """No public mapping: a full tunnel leaves nothing outside it to test; else a fix."""
    if why == FULL_TUNNEL:
        return Outcome.skip(f"cannot look at the home router's address translation: {why}")
    if why == NO_ANSWER:
        fix = (
            "Run diagnose again; if this stays, send this report to IT: the gateway witness "
            "may be stopped, or its UDP port closed in the gateway firewall"
        )
        return Outcome.problem(
            Status.unknown, f"the public address is not known: {why}", fix, Owner.it
        )
    return Outcome.problem(
        Status.unknown,
        f"the public address is not known: {why}",
        "Check that this computer is online (open a web page); if it is, send this report "
        "to IT: the gateway's name in your tunnel's config may be wrong",
        Owner.it,
    )


def _keepalive(ctx: CheckContext) -> int:
    keepalive = ctx.config.keepalive
    return keepalive if keepalive else DEFAULT_KEEPALIVE_S


def _lifetime(ctx: CheckContext, seen: str, metrics: dict[str, Metric]) -> Outcome:
    from netsetup.responder.client import binding_lifetime, lifetime_keys

    where = witness_outside(ctx)
    key, gateway = ctx.config.private_key, ctx.config.gateway_public_key
    keys = lifetime_keys(key, gateway) if key is not None and gateway else None
    if isinstance(where, str) or keys is None:
        metrics["lifetime"] = "not measured (the config lacks its keys)"
        return Outcome.passed(
            f"{seen}; how long it keeps a quiet UDP connection could not be measured", **metrics
        )
    deadline = time.monotonic() + ctx.time_left() - 0.5
    results = binding_lifetime(where, list(IDLE_TIMES_S), keys, deadline)
    alive = [t for t, ok in results.items() if ok]
    dead = [t for t, ok in results.items() if ok is False]
    first_dead = min(dead) if dead else None
    longest = max([t for t in alive if first_dead is None or t < first_dead], default=None)
    metrics.update(
        lifetime_at_least_s=longest,
        lifetime_below_s=first_dead,
        keepalive_s=_keepalive(ctx),
        lifetime_tests={f"{t:g}": ok for t, ok in results.items()},
    )
    return _judge_lifetime(ctx, seen, metrics, longest, first_dead)


def _judge_lifetime(
    ctx: CheckContext,
    seen: str,
    metrics: dict[str, Metric],
    longest: float | None,
    first_dead: float | None,
) -> Outcome:
    keepalive = _keepalive(ctx)
    if first_dead is not None and first_dead <= keepalive:
        below = f"{first_dead:g}"
        return Outcome.problem(
            Status.warn,
            f"{seen}, and it forgets a quiet UDP connection in less than {below} s, sooner "
            f"than the tunnel's keepalive ({keepalive} s) refreshes it: after a quiet moment "
            "the office cannot reach this computer until it sends something, so an incoming "
            "call may not ring",
            "In your home router's settings, raise the UDP timeout (often 'NAT session "
            "timeout' or 'UDP timeout') to at least 60 s. If the router has no such setting, "
            "send this report to IT: they set PersistentKeepalive below "
            f"{max(5, int(first_dead) - 5)} s in your tunnel's config and send you the new one.",
            Owner.assistant,
            **metrics,
        )
    if longest is None:
        return Outcome.problem(
            Status.unknown,
            f"{seen}; how long it keeps a quiet UDP connection could not be measured (the "
            "gateway witness did not answer the test)",
            "Run diagnose --long again; if this stays, send this report to IT: the gateway "
            "witness may be stopped, or its UDP port closed in the gateway firewall",
            Owner.it,
            **metrics,
        )
    more = f"between {longest:g} and {first_dead:g} s" if first_dead else f"at least {longest:g} s"
    return Outcome.passed(
        f"{seen}; it keeps a quiet UDP connection {more}, longer than the tunnel's keepalive "
        f"({keepalive} s)",
        **metrics,
    )


@register_family("nat")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    if not ctx.config.info.witness_port or ctx.config.endpoint is None:
        return ()
    return (NatCheck(),)
