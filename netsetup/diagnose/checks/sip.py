"""The `sip.udp`, `sip.tcp`, `sip.tls` checks (the company's phone system answers SIP through the
tunnel, per transport the profile lists) and `sip.alg` (a SIP ALG in the home router rewrites
SIP, outside the tunnel).

- `sip.<transport>`: an OPTIONS ping to the PBX: the answer's code, the round trip, its
  `Server:` (sanitized), for TLS the certificate's subject. `sip.udp` also sends one OPTIONS
  padded to ~1,500 bytes: an INVITE that size is fragmented, and a path that loses fragments
  lets phones register and never connect a call. Only the padded one lost: warn, switch the
  phone to TCP/TLS. UDP silent while TCP (or TLS) answers: fail, use TCP/TLS or ask IT.
- `sip.alg`: an INVITE-shaped request carrying this computer's private address (Via, Contact,
  SDP c=/o=/m=) to the gateway witness's SIP mirror, outside the tunnel: on UDP (and TCP) 5060
  where the profile turns the mirror on, and on the witness's own port always. The mirror sends
  back what it received: rewritten on 5060 while the witness-port copy is intact is an ALG.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial

from netsetup.diagnose import sip
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Metric, Outcome, Owner, Status

TRANSPORTS = ("udp", "tcp", "tls")
NAMES = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


def _contact(ctx: CheckContext) -> str:
    return f"IT ({ctx.info.contact})" if ctx.info.contact else "your company's IT"


def _target(ctx: CheckContext, transport: str) -> tuple[str, int]:
    info = ctx.info.sip
    assert info is not None
    return str(info.server), info.tls_port if transport == "tls" else info.sip_port


def probe(ctx: CheckContext, transport: str, pad_to: int | None = None) -> sip.Attempt:
    """One OPTIONS exchange with the PBX over `transport` (shared by the checks: sip.udp asks
    for TCP's result when UDP is silent, and gets the same run's exchange)."""
    info = ctx.info.sip
    assert info is not None
    target = _target(ctx, transport)
    build = partial(_options, transport, target, info.domain, pad_to)
    deadline = time.monotonic() + ctx.time_left()
    if transport == "udp":
        return sip.udp_exchange(target, build, deadline, tries=3 if pad_to is None else 2)
    tls = transport == "tls"
    name = (info.domain or target[0]) if tls else None
    return sip.stream_exchange(target, build, deadline, tls=tls, tls_name=name)


def _options(
    transport: str,
    target: tuple[str, int],
    domain: str | None,
    pad_to: int | None,
    local: tuple[str, int],
) -> sip.Request:
    return sip.options(transport, local, target, domain, pad_to)


def shared_probe(ctx: CheckContext, transport: str) -> sip.Attempt:
    attempt: sip.Attempt = ctx.once(f"sip.options.{transport}", partial(probe, ctx, transport))
    return attempt


def _metrics(attempt: sip.Attempt, target: tuple[str, int]) -> dict[str, Metric]:
    found: dict[str, Metric] = {"server_address": f"{target[0]}:{target[1]}", "sent": attempt.sent}
    a = attempt.answer
    if a is not None:
        found.update(code=a.code, reason=a.reason, rtt_ms=a.rtt_ms, server=a.server)
        if a.certificate is not None:
            found["certificate"] = a.certificate
    else:
        found["error"] = attempt.error
    return found


def _answered(transport: str, attempt: sip.Attempt) -> str:
    a = attempt.answer
    assert a is not None
    server = f", {a.server}" if a.server else ""
    return (
        f"the phone system answered over {NAMES[transport]} in {a.rtt_ms:.0f} ms "
        f"({a.code} {a.reason}{server})"
    )


class SipCheck(Check):
    """OPTIONS to the company's phone system over one transport."""

    budget_s = 10.0
    needs = ("tunnel.handshake",)
    phase = 1

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.id = f"sip.{transport}"
        self.title = f"Phone system over {NAMES[transport]}"

    def run(self, ctx: CheckContext) -> Outcome:
        target = _target(ctx, self.transport)
        attempt = shared_probe(ctx, self.transport)
        metrics = _metrics(attempt, target)
        if attempt.answer is None:
            return self._silent(ctx, attempt, metrics)
        outcome = _judge_code(self.transport, attempt, metrics)
        if self.transport == "udp" and outcome.status is Status.passed:
            return _padded(ctx, outcome, metrics)
        return outcome

    def _silent(
        self, ctx: CheckContext, attempt: sip.Attempt, metrics: dict[str, Metric]
    ) -> Outcome:
        host, port = _target(ctx, self.transport)
        where = f"{host}:{port}"
        if self.transport == "udp":
            other = _stream_that_works(ctx)
            if other is not None:
                metrics["works_over"] = other
                return Outcome.problem(
                    Status.fail,
                    f"the phone system ({where}) does not answer SIP over UDP "
                    f"({attempt.error}), but it does over {NAMES[other]}: UDP port "
                    f"{port} is blocked on the way",
                    f"Set your phone or softphone to use {NAMES[other]} instead of UDP "
                    f"(its SIP transport setting), or ask {_contact(ctx)} to allow SIP over "
                    f"UDP {port} to {host}.",
                    Owner.assistant,
                    **metrics,
                )
        if self.transport != "udp":
            other = _other_that_works(ctx, self.transport)
            if other is not None:
                return _not_offered(ctx, self.transport, other, attempt, metrics)
        return Outcome.problem(
            Status.fail,
            f"the phone system ({where}) does not answer SIP over {NAMES[self.transport]}: "
            f"{attempt.error}",
            f"Ask {_contact(ctx)} whether the phone system takes SIP over "
            f"{NAMES[self.transport]} at {where} and whether the VPN lets it through.",
            Owner.it,
            **metrics,
        )


def _other_that_works(ctx: CheckContext, silent: str) -> str | None:
    """Another transport the profile lists that answers (TCP or TLS silent: is the PBX up?)."""
    info = ctx.info.sip
    assert info is not None
    for transport in TRANSPORTS:
        if transport == silent or transport not in info.transports or ctx.time_left() <= 1.5:
            continue
        if shared_probe(ctx, transport).answer is not None:
            return transport
    return None


def _not_offered(
    ctx: CheckContext, transport: str, other: str, attempt: sip.Attempt, metrics: dict[str, Metric]
) -> Outcome:
    """TCP or TLS silent while another transport answers: the PBX does not offer it."""
    host, port = _target(ctx, transport)
    name = NAMES[transport]
    metrics["works_over"] = other
    return Outcome.problem(
        Status.warn,
        f"the phone system answers over {NAMES[other]}, but not over {name} ({host}:{port}: "
        f"{attempt.error}): it probably does not offer {name}",
        f"The profile lists {name} but the phone system does not answer it: remove it from "
        f"[voip] transports or turn it on in the phone system (PBX); phones set to "
        f"{NAMES[other]} are not affected.",
        Owner.it,
        **metrics,
    )


def _stream_that_works(ctx: CheckContext) -> str | None:
    info = ctx.info.sip
    assert info is not None
    for transport in ("tcp", "tls"):
        usable = transport in info.transports and ctx.time_left() > 1.5
        if usable and shared_probe(ctx, transport).answer is not None:
            return transport
    return None


def _judge_code(transport: str, attempt: sip.Attempt, metrics: dict[str, Metric]) -> Outcome:
    a = attempt.answer
    assert a is not None
    if a.code >= 500:
        return Outcome.problem(
            Status.warn,
            f"the phone system answered over {NAMES[transport]} but reports a problem: "
            f"{a.code} {a.reason}",
            "Ask your company's IT whether the phone system is overloaded or in maintenance.",
            Owner.it,
            **metrics,
        )
    return Outcome.passed(_answered(transport, attempt), **metrics)


def _padded(ctx: CheckContext, passed: Outcome, metrics: dict[str, Metric]) -> Outcome:
    """The ~1,500-byte OPTIONS after the plain one answered."""
    if ctx.time_left() < 1.5:
        metrics["padded"] = "not tried (no time left)"
        return Outcome.passed(passed.summary + "; the large-message test did not fit", **metrics)
    big = probe(ctx, "udp", sip.PADDED_SIZE)
    metrics["padded_bytes"] = len(big.request) or sip.PADDED_SIZE
    if big.answer is not None:
        metrics["padded_rtt_ms"] = big.answer.rtt_ms
        return Outcome.passed(
            passed.summary + f"; a {metrics['padded_bytes']}-byte message also got through",
            **metrics,
        )
    metrics["padded_error"] = big.error
    return Outcome.problem(
        Status.warn,
        f"small SIP messages reach the phone system over UDP, but a "
        f"{metrics['padded_bytes']}-byte one does not: large packets (fragments) are lost on "
        "the way, so calls may register but never connect",
        "Switch your phone or softphone to TCP or TLS (its SIP transport setting): TCP splits "
        "large messages so nothing is lost.",
        Owner.assistant,
        **metrics,
    )


# -- sip.alg ------------------------------------------------------------------------------------


class SipAlgCheck(Check):
    """The home router's SIP ALG, seen by the gateway witness's SIP mirror outside the tunnel."""

    id = "sip.alg"
    title = "SIP helper (ALG) in the home router"
    budget_s = 8.0
    phase = 1

    def run(self, ctx: CheckContext) -> Outcome:
        from netsetup.diagnose.sipalg import judge_alg

        return judge_alg(ctx)


@register_family("sip")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    info = ctx.config.info
    found: list[Check] = []
    if info.sip is not None:
        found += [SipCheck(t) for t in TRANSPORTS if t in info.sip.transports]
    if info.witness_port and ctx.config.endpoint is not None:
        found.append(SipAlgCheck())
    return found
