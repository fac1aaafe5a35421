"""`tunnel.mtu`: the largest packet that gets through the tunnel with Don't Fragment set, and the
path MTU outside it, both measured against the gateway witness (its probe port acks any size).

A black hole is a path that silently loses big packets (a smaller link and the ICMP "fragmentation
needed" that would say so dropped): small things work, big transfers and some web pages hang. The
search tries each size three times at once (random loss is not a black hole), the config's MTU
first (a healthy tunnel ends the search there), both searches in parallel.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from netsetup.diagnose.checks.tunnel import Background, contact, resolve, tunnel_name
from netsetup.diagnose.checks.tunnelconfig import MTU_MAX, OVERHEAD
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Outcome, Owner, Status

LOWEST = {4: 576, 6: 1280}  # the smallest MTU each IP version promises
DEFAULT_TUNNEL_MTU = 1420  # wg-quick's default for a 1500-byte line
TRIES = 3


def measure_mtu(ctx: CheckContext) -> Outcome:
    from netsetup.diagnose.platform.net import dont_fragment_reason

    why = _cannot_measure(ctx) or dont_fragment_reason()
    if why is not None:
        return Outcome.skip(f"not measured: {why}")
    gateway = _gateway(ctx)
    assert gateway is not None and ctx.info.witness_port
    config_mtu = _config_mtu(ctx)
    deadline = time.monotonic() + ctx.time_left() - 0.3
    outside = Background(lambda: _outside(ctx, deadline))
    inner, _ = _search(gateway, ctx.info.witness_port, config_mtu, deadline)
    path = outside.result(max(0.0, deadline - time.monotonic()) + 0.2)
    return _verdict(ctx, config_mtu, inner, path)


def _cannot_measure(ctx: CheckContext) -> str | None:
    if not ctx.info.witness_port or _gateway(ctx) is None:
        return "the config names no gateway witness to measure against"
    return None


def _gateway(ctx: CheckContext) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    families = {a.version for a in ctx.config.addresses}
    found = [a for a in ctx.info.gateway_addresses if a.version in families]
    return found[0] if found else None


def _config_mtu(ctx: CheckContext) -> int:
    from netsetup.diagnose.platform.net import interface_holding

    if ctx.config.mtu:
        return ctx.config.mtu
    interface = interface_holding([a.ip for a in ctx.config.addresses])
    return interface.mtu if interface is not None and interface.mtu else DEFAULT_TUNNEL_MTU


def _search(address: Any, port: int, high: int, deadline: float) -> tuple[int | None, list[Any]]:
    from netsetup.diagnose.probes import df_probe, largest_passing

    low = LOWEST[address.version]

    def try_size(size: int) -> Any:
        left = max(0.05, min(0.4, deadline - time.monotonic()))
        return df_probe(address, port, size, TRIES, left)

    return largest_passing(try_size, low, max(low, high), deadline)


def _outside(ctx: CheckContext, deadline: float) -> int | None:
    """The path MTU to the gateway outside the tunnel (None: not measurable here)."""
    from netsetup.diagnose.platform.net import interface_for

    endpoint = ctx.config.endpoint
    if endpoint is None or not ctx.info.witness_port:
        return None
    found = resolve(str(endpoint[0]))
    if not found:
        return None
    address = ipaddress.ip_address(found[0])
    if any(address in n for n in ctx.config.allowed_ips if n.version == address.version):
        return None  # a full tunnel: "outside" would go through the tunnel itself
    uplink = interface_for(address)
    top = uplink.mtu if uplink is not None and uplink.mtu else MTU_MAX
    best, _ = _search(address, ctx.info.witness_port, min(top, 9000), deadline)
    return best


def _endpoint_family(ctx: CheckContext) -> int:
    endpoint = ctx.config.endpoint
    host = endpoint[0] if endpoint else None
    if isinstance(host, ipaddress.IPv6Address):
        return 6
    if isinstance(host, str):
        found = resolve(host)
        if found and ":" in found[0]:
            return 6
    return 4


def _verdict(ctx: CheckContext, config_mtu: int, inner: int | None, path: int | None) -> Outcome:
    metrics: dict[str, Any] = {
        "config_mtu": config_mtu,
        "largest_through_tunnel": inner,
        "path_mtu_outside": path,
    }
    if inner is None:
        return Outcome(
            Status.skip,
            "not measured: the gateway witness does not answer probes through the tunnel, not "
            "even small ones (it may not run on this gateway)",
            metrics,
        )
    if inner >= config_mtu:
        outside = f"; outside the tunnel {path} bytes" if path else ""
        return Outcome.passed(
            f"packets of the full tunnel MTU ({config_mtu} bytes) get through{outside}", **metrics
        )
    overhead = OVERHEAD[_endpoint_family(ctx)]
    advised = min(inner, path - overhead) if path else inner
    metrics["advised_mtu"] = advised
    return Outcome.problem(
        Status.fail,
        f"big packets are silently lost: only {inner} of the config's {config_mtu} bytes get "
        "through the tunnel (an MTU black hole: small things work, big transfers hang)"
        + (f"; the line to the company carries {path} bytes" if path else ""),
        f"Set `MTU = {advised}` in the [Interface] section of your config (in the WireGuard "
        f"app: edit the tunnel {tunnel_name(ctx)}), then turn the tunnel off and on. "
        f"{contact(ctx)} can set `[network] mtu = {advised}` in the profile so that every new "
        "config has it.",
        Owner.assistant,
        **metrics,
    )
