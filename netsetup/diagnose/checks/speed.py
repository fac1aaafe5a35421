"""Checks of the `speed` family (issue 9), all in the load phase (phase 2), one at a time:

- `speed.internet`: speedtest.net through the assistant's own internet (speedtest-cli in a child
  process with a hard deadline; off with --no-internet-speed and wherever NETSETUP_OFFLINE=1, so
  never in tests or the lab);
- `speed.tunnel`: the same engine against the office responder's speed endpoint, through the
  tunnel (`netsetup.responder.speedhttp`, a ticket from `office_wire.speed_ticket`);
- `bufferbloat`: the round trip idle and while the tunnel test fills the uplink, then the
  downlink (netsetup.diagnose.bufferbloat), graded A+ to F by the worse direction.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Outcome, Owner, Status

SPEED_LENGTH_S = 5.0  # per direction
SPEED_THREADS = 4
HTTP_TIMEOUT_S = 5.0  # one stalled read in the child (the child is killed at the deadline anyway)
SLOW_MBPS = 1.0  # below this, one call still fits, but not a call beside anything else
OFFLINE = "off in this environment (NETSETUP_OFFLINE=1: nothing may reach the internet)"
BLOAT_WARNING = "calls will break up whenever someone in the house uploads"
SQM_FIX = (
    "Turn on smart queue management (SQM; in some routers 'QoS', 'bandwidth control' or "
    "'fq_codel'/'cake') on your home router, {limit}; if your router has none, ask your "
    "internet provider for one that has it"
)


def sqm_fix(upload_mbps: float | None) -> str:
    """The SQM fix, with the limit to set when the upload speed was measured."""
    if upload_mbps:
        limit = f"set the limit to about 90 % of your {upload_mbps:g} Mbit/s upload"
    else:
        limit = "set the limit to about 90 % of your upload speed"
    return SQM_FIX.format(limit=limit)


NO_KEY = "the config has no responder key for this computer (a config made before it existed)"
SLOW_FIX = {
    Owner.isp: (
        "Pause other downloads, uploads and backups while you work; if it stays slow, ask "
        "your internet provider for a faster line"
    ),
    Owner.it: (
        "Your internet line is much faster than the tunnel: the company side limits the "
        "tunnel's speed. Send this report to IT"
    ),
}


def mbps(bps: float | None) -> float | None:
    return None if bps is None else round(bps / 1e6, 2)


class InternetSpeedCheck(Check):
    """speedtest.net from this computer (not through the tunnel): download, upload, ping. The
    client's IP and location never reach the report."""

    id = "speed.internet"
    title = "Internet speed (speedtest.net)"
    budget_s = 25.0
    phase = 2
    exclusive = True

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.context import offline_from_environment

        if ctx.options.offline or offline_from_environment():
            return Outcome.skip(OFFLINE)
        if not ctx.options.internet_speed:
            return Outcome.skip("not run: --no-internet-speed")
        from netsetup.diagnose.speed import run_speedtest

        request = _request("internet", directions=("download", "upload"))
        result = run_speedtest(request, ctx.time_left())
        if result.error is not None:
            return Outcome.skip(
                f"speedtest.net did not give a result ({result.error}); nothing to fix for the "
                "company connection: to know your internet speed, open speedtest.net in a browser"
            )
        return _judge_speed(result, "your internet connection", Owner.isp)


class TunnelSpeedCheck(Check):
    """Download and upload through the tunnel against the office responder (>= 4 streams)."""

    id = "speed.tunnel"
    title = "Speed through the tunnel"
    budget_s = 16.0
    needs = ("tunnel.handshake",)
    phase = 2
    exclusive = True

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.speed import run_speedtest

        url, why_not = speed_endpoint(ctx)
        if why_not == NO_KEY:
            return _no_key(ctx)
        if url is None:
            return Outcome.skip(why_not)
        request = _request("mini", url=url, directions=("download", "upload"))
        result = run_speedtest(request, ctx.time_left())
        if result.error is not None:
            return Outcome.problem(
                Status.unknown,
                f"the speed test through the tunnel did not finish ({result.error})",
                "Run diagnose again; if this stays, send the report to IT: the office "
                "responder's speed endpoint may be off",
                Owner.it,
                timed_out=result.timed_out,
            )
        return _judge_speed(result, "the tunnel", _slow_tunnel_owner(ctx, result))


class BufferbloatCheck(Check):
    """The round trip idle, and while the uplink then the downlink is full: graded A+ to F."""

    id = "bufferbloat"
    title = "Delay under load (bufferbloat)"
    budget_s = 21.0
    long_budget_s = 33.0  # --long: 12 s of load each way, the window 10 s
    needs = ("tunnel.handshake",)
    phase = 2
    exclusive = True

    def run(self, ctx: CheckContext) -> Outcome:
        witness = _witness(ctx)
        if witness is None:
            return Outcome.skip("the config names no gateway witness to time the round trip")
        url, why_not = speed_endpoint(ctx)
        if url is None:
            return Outcome.skip(why_not)
        from netsetup.diagnose import bufferbloat
        from netsetup.diagnose.speed import SpeedChild

        long = ctx.options.long
        length = bufferbloat.LONG_LOAD_LENGTH_S if long else bufferbloat.LOAD_LENGTH_S
        idle = bufferbloat.LONG_IDLE_S if long else bufferbloat.IDLE_S

        def load(direction: str) -> SpeedChild:
            return SpeedChild(_request("mini", url=url, directions=(direction,), length_s=length))

        found = bufferbloat.measure(witness[0], witness[1], load, ctx.deadline - 0.3, idle)
        return judge_bufferbloat(found, _line_upload(ctx))


@register_family("speed")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return (InternetSpeedCheck(), TunnelSpeedCheck(), BufferbloatCheck())


# -- the speed endpoint -------------------------------------------------------------------------


def _request(mode: str, *, url: str | None = None, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "mode": mode,
        "threads": SPEED_THREADS,
        "length_s": SPEED_LENGTH_S,
        "timeout_s": HTTP_TIMEOUT_S,
    }
    if url is not None:
        request["url"] = url
    request.update(extra)
    request["directions"] = list(request.get("directions", ()))
    return request


def speed_endpoint(ctx: CheckContext) -> tuple[str | None, str]:
    """The office responder's speed URL with a fresh ticket, or (None, why not)."""
    info = ctx.info
    if info.responder is None:
        return None, "the config names no office responder (the profile's [diagnose] responder)"
    if info.responder_key is None:
        return None, NO_KEY
    if ctx.config.private_key is None:
        return None, "this config has no usable private key"
    try:
        from netsetup.responder.office_wire import key_tag, speed_ticket
    except ImportError:  # pragma: no cover - before the office responder's client is there
        return None, "this netsetup has no office responder client"
    from netsetup.keys import public_from_private
    from netsetup.responder.auth import raw_key

    key = base64.b64decode(info.responder_key.reveal())
    public = raw_key(public_from_private(ctx.config.private_key))
    ticket = speed_ticket(key, key_tag(public), ctx.clock.now().timestamp())
    host, port = str(info.responder[0]), info.responder[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/t/{ticket}/", ""


def _no_key(ctx: CheckContext) -> Outcome:
    """A config made before the office responder (no responder-key): a new config is IT's."""
    profile = ctx.info.profile_id or "<profile>"
    return Outcome.problem(
        Status.warn,
        f"the speed through the tunnel was not measured: {NO_KEY}",
        f"Send this report to IT: they make you a new config with `netsetup rotate {profile} "
        "<name>` (<name>: this computer's name in the profile) and send it to you",
        Owner.it,
    )


def _witness(ctx: CheckContext) -> tuple[str, int] | None:
    info = ctx.info
    if info.witness_port is None or not info.gateway_addresses:
        return None
    return str(info.gateway_addresses[0]), info.witness_port


# -- judging ------------------------------------------------------------------------------------


def _judge_speed(result: Any, where: str, owner: Owner) -> Outcome:
    down, up = mbps(result.download_bps), mbps(result.upload_bps)
    metrics = {
        "download_mbps": down,
        "upload_mbps": up,
        "ping_ms": result.ping_ms,
        "streams": SPEED_THREADS,
    }
    summary = f"download {down} Mbit/s, upload {up} Mbit/s through {where}"
    rates = (("download", down), ("upload", up))
    slow = [name for name, value in rates if value is not None and value < SLOW_MBPS]
    if slow:
        return Outcome.problem(
            Status.warn,
            f"{summary}: {' and '.join(slow)} below {SLOW_MBPS:g} Mbit/s, too slow for a call "
            "beside anything else",
            SLOW_FIX[owner],
            owner,
            **metrics,
        )
    return Outcome(Status.passed, summary, metrics)


def _line_upload(ctx: CheckContext) -> float | None:
    """speed.internet's upload (the line the router's SQM limits), when it ran."""
    internet = ctx.result("speed.internet")
    if internet is None or internet.status is not Status.passed:
        return None
    line = internet.outcome.metrics.get("upload_mbps")
    return float(line) if isinstance(line, int | float) else None


def _slow_tunnel_owner(ctx: CheckContext, result: Any) -> Owner:
    """A slow tunnel on a fast internet line is the company's to look at; else the line's."""
    internet = ctx.result("speed.internet")
    if internet is None or internet.status is not Status.passed:
        return Owner.isp
    line = internet.outcome.metrics.get("upload_mbps")
    tunnel = mbps(result.upload_bps)
    if isinstance(line, int | float) and tunnel is not None and line > 4 * tunnel:
        return Owner.it
    return Owner.isp


def judge_bufferbloat(found: Any, line_up_mbps: float | None = None) -> Outcome:
    """The grade of the worse direction; worse than B warns with the SQM fix."""
    from netsetup.diagnose.bufferbloat import GOOD_GRADES, grade

    idle = found.idle_median
    if idle is None:
        return Outcome.problem(
            Status.unknown,
            "the gateway witness did not answer the round-trip probes",
            "Run diagnose again; if this stays, send the report to IT",
            Owner.it,
        )
    added = {d: found.added(d) for d in ("upload", "download")}
    measured = {d: v for d, v in added.items() if v is not None}
    metrics = _bloat_metrics(found, added)
    if not measured:
        return Outcome.problem(
            Status.unknown,
            "no round trip could be timed while the link was loaded",
            "Run diagnose again; if this stays, send the report to IT",
            Owner.it,
            **metrics,
        )
    worse = max(measured, key=lambda d: measured[d])
    letter = grade(measured[worse])
    metrics.update(grade=letter, worse_direction=worse)
    summary = (
        f"grade {letter}: the round trip grows by {measured[worse]:.0f} ms while "
        f"{'uploading' if worse == 'upload' else 'downloading'} (idle {idle:.1f} ms)"
    )
    if letter in GOOD_GRADES:
        return Outcome(Status.passed, summary, metrics)
    return Outcome.problem(
        Status.warn,
        f"{summary}: {BLOAT_WARNING}",
        sqm_fix(line_up_mbps or metrics.get("load_up_mbps")),
        Owner.assistant,
        **metrics,
    )


def _bloat_metrics(found: Any, added: dict[str, float | None]) -> dict[str, Any]:
    import statistics

    metrics: dict[str, Any] = {
        "idle_rtt_ms": _round(found.idle_median),
        "idle_probes": len(found.idle_ms),
    }
    for load in found.loaded:
        short = "up" if load.direction == "upload" else "down"
        median = statistics.median(load.rtts_ms) if load.rtts_ms else None
        metrics[f"loaded_{short}_rtt_ms"] = _round(median)
        metrics[f"added_{short}_ms"] = _round(added[load.direction])
        metrics[f"probes_{short}"] = len(load.rtts_ms)
        metrics[f"probes_lost_{short}"] = load.lost
        rate = load.speed.upload_bps if short == "up" else load.speed.download_bps
        metrics[f"load_{short}_mbps"] = mbps(rate)
    return metrics


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
