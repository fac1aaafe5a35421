"""`tunnel.mtu`: the largest packet that gets through the tunnel with Don't Fragment set, and the
path MTU outside it, both measured against the gateway witness (its probe port acks any size).

A black hole is a path that silently loses big packets (a smaller link and the ICMP "fragmentation
needed" that would say so dropped): small things work, big transfers and some web pages hang. The
search tries each size three times at once (random loss is not a black hole), the config's MTU
first (a healthy tunnel ends the search there), both searches in parallel.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

from netsetup.diagnose.checks.tunnel import (
    Background,
    contact,
    resolve,
    through_tunnel,
    tunnel_name,
)
from netsetup.diagnose.checks.tunnelconfig import MTU_MAX, OVERHEAD
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Outcome, Owner, Status

AF = {4: socket.AF_INET, 6: socket.AF_INET6}
LOWEST = {4: 576, 6: 1280}  # the smallest MTU each IP version promises
DEFAULT_TUNNEL_MTU = 1420  # wg-quick's default for a 1500-byte line
TRIES = 3


def measure_mtu(ctx: CheckContext) -> Outcome:
    from netsetup.diagnose.platform.net import dont_fragment_reason

    inside = _answerers_inside(ctx)
    if not inside:
        return Outcome.skip(
            "not measured: the config names neither a gateway witness nor a DNS server in the "
            "tunnel"
        )
    # Don't Fragment per IP version: a system may set it for IPv4 and not for IPv6
    reasons = {v: dont_fragment_reason(AF[v]) for v in {a[1].version for a in inside}}
    inside = [a for a in inside if reasons[a[1].version] is None]
    if not inside:
        return Outcome.skip(f"not measured: {next(r for r in reasons.values() if r)}")
    config_mtu = _config_mtu(ctx)
    deadline = time.monotonic() + ctx.time_left() - 0.3
    outside = Background(lambda: _outside(ctx, deadline))
    inner, against, top = None, None, config_mtu
    for label, address, port, make in inside:
        top = min(config_mtu, _largest_accepted(label, address))
        inner, _ = _search(address, port, top, deadline, make)
        if inner is not None:
            against = label
            break
    path = outside.result(max(0.0, deadline - time.monotonic()) + 0.2)
    if against is not None and inner is not None and inner >= top and top < config_mtu:
        return _dns_limited(config_mtu, inner, path, against)
    return _verdict(ctx, config_mtu, inner, path, against)


DNS_QUERY_MAX = 1232  # DNS servers take queries up to the EDNS size of DNS Flag Day 2020


def _largest_accepted(label: str, address: Any) -> int:
    """The largest packet the answerer takes: any size for the witness, a DNS server's EDNS
    limit for a padded query (a bigger one is dropped by the server, not lost on the way)."""
    if label != "the DNS server":
        return 65535
    return DNS_QUERY_MAX + (28 if address.version == 4 else 48)


def _dns_limited(config_mtu: int, inner: int, path: int | None, against: str) -> Outcome:
    return Outcome.passed(
        f"packets of {inner} bytes get through the tunnel (measured against {against}, which "
        f"takes nothing bigger; the config's {config_mtu} needs the gateway witness to confirm)",
        config_mtu=config_mtu,
        largest_through_tunnel=inner,
        path_mtu_outside=path,
        measured_against=against,
    )


Inside = tuple[str, Any, int, Any]  # (what, address, port, packet maker)


def _answerers_inside(ctx: CheckContext) -> list[Inside]:
    """What answers packets of any size through the tunnel: the witness on the gateway's tunnel
    address first, then the DNS servers inside AllowedIPs (a padded query; no witness needed)."""
    from netsetup.diagnose.probes import DNS_PORT, dns_sized, witness_sized

    found: list[Inside] = []
    gateway = _gateway(ctx)
    if ctx.info.witness_port and gateway is not None:
        found.append(("the gateway witness", gateway, ctx.info.witness_port, witness_sized))
    routed = ctx.config.allowed_ips
    families = {a.version for a in ctx.config.addresses}
    for server in ctx.config.dns_servers:
        inside = any(server in n for n in routed if n.version == server.version)
        if inside and server.version in families:
            found.append(("the DNS server", server, DNS_PORT, dns_sized))
    return [f for f in found if through_tunnel(ctx, f[1])]


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


def _search(
    address: Any, port: int, high: int, deadline: float, make: Any = None
) -> tuple[int | None, list[Any]]:
    from netsetup.diagnose.probes import df_probe, largest_passing, witness_sized

    low = LOWEST[address.version]

    def try_size(size: int) -> Any:
        left = max(0.05, min(0.4, deadline - time.monotonic()))
        return df_probe(address, port, size, TRIES, left, make or witness_sized)

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


RESOLVE_WAIT_S = 0.5


def _endpoint_family(ctx: CheckContext) -> int:
    """6 when WireGuard may reach the gateway over IPv6 (its larger overhead then decides the
    advised MTU, which fits either way), else 4. The lookup is waited for briefly: a home
    resolver that hangs must not cost the verdict already measured."""
    from netsetup.diagnose.checks.dns import call_with_timeout

    endpoint = ctx.config.endpoint
    host = endpoint[0] if endpoint else None
    if isinstance(host, ipaddress.IPv6Address):
        return 6
    if isinstance(host, str):
        _, found = call_with_timeout(lambda: resolve(host), min(RESOLVE_WAIT_S, ctx.time_left()))
        if found and any(":" in a for a in found):
            return 6
    return 4


def _verdict(
    ctx: CheckContext, config_mtu: int, inner: int | None, path: int | None, against: str | None
) -> Outcome:
    metrics: dict[str, Any] = {
        "config_mtu": config_mtu,
        "largest_through_tunnel": inner,
        "path_mtu_outside": path,
        "measured_against": against,
    }
    if inner is None:
        return Outcome(
            Status.skip,
            "not measured: neither the gateway witness nor the DNS server answered probes "
            "through the tunnel, not even small ones (the witness may not run on this gateway)",
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
