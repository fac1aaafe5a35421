"""`sip.alg`: does something between this computer and the internet rewrite SIP?

A SIP ALG ("SIP helper") in a home router rewrites the addresses in SIP it forwards on port 5060:
the top Via's sent-by, the Contact, the SDP's c=, o= and m= lines (it opens the media ports it
chose). Phones that talk to a PBX outside the tunnel then announce addresses and ports that do
not work: one-way audio, calls that drop after 30 s. The witness's mirror returns the request as
it arrived; what this computer sent is compared with that, field by field, on 5060 (UDP and TCP,
where the profile turns the mirror on) and on the witness's own port (no ALG watches it: the
control that the mirror itself changes nothing).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import partial

from netsetup.diagnose import sip
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.responder.sipmirror import Malformed, Mirrored, parse_message, read_mirror

SIP_PORT = 5060
INVITE_SIZE = 1200  # padded so the mirror's compressed copy always fits; below 1,472: no fragments
MEDIA_PORT = 16384
FIX = (
    "Turn off SIP ALG in your router (often called 'SIP ALG', 'SIP helper' or 'SIP "
    "passthrough', in its firewall or NAT settings), then restart the router; or set your phone "
    "or softphone to TLS, which no ALG can read. Calls through the tunnel are not affected: "
    "this matters for a phone or softphone that talks to the phone system outside the tunnel."
)
SILENT_FIX = (
    "If a phone or softphone talks to the phone system outside the tunnel, turn off SIP ALG in "
    "your router (in its firewall or NAT settings). If that changes nothing, send this report "
    "to IT: they check that the gateway firewall was rendered and loaded again after "
    "sip_mirror was turned on (`netsetup render <profile> --firewall`), and otherwise ask the "
    "internet provider whether it blocks port 5060."
)


@dataclass(frozen=True)
class Path:
    """One way to the mirror and what came of it."""

    name: str  # "udp 5060", "tcp 5060", "udp <witness port>"
    changed: tuple[str, ...] | None  # the fields that arrived rewritten; None: no answer
    error: str | None = None


def fields(data: bytes) -> dict[str, str]:
    """What an ALG rewrites, from a SIP request: every Via, the Contact, SDP c=/o=/m=."""
    try:
        message = parse_message(data)
    except Malformed:
        return {}
    found = {f"via {i + 1}": v for i, v in enumerate(message.all("via"))}
    found["via count"] = str(len(message.all("via")))
    found["contact"] = message.first("contact") or ""
    found["content-length"] = message.first("content-length") or ""
    for line in message.body.decode("utf-8", "replace").splitlines():
        if line[:2] in ("c=", "o=", "m="):
            found[f"sdp {line[0]}="] = line[2:].strip()
    return found


def changed_fields(sent: bytes, mirrored: Mirrored) -> tuple[str, ...]:
    if mirrored.request is None:
        same = mirrored.sha256 == hashlib.sha256(sent).hexdigest()
        return () if same else ("the request (only its checksum came back)",)
    before, after = fields(sent), fields(mirrored.request)
    keys = list(dict.fromkeys([*before, *after]))
    return tuple(k for k in keys if before.get(k) != after.get(k))


def _build(transport: str, target: tuple[str, int], local: tuple[str, int]) -> sip.Request:
    return sip.invite(transport, local, target, MEDIA_PORT, INVITE_SIZE)


def _through(transport: str, target: tuple[str, int], deadline: float) -> Path:
    name = f"{transport} {target[1]}"
    build = partial(_build, transport, target)
    key = f"mirror {transport} {target[0]} {target[1]}"
    if transport == "udp":
        attempt = sip.udp_exchange(target, build, deadline, tries=2, pace_key=key)
    else:
        attempt = sip.stream_exchange(target, build, deadline, pace_key=key)
    if attempt.answer is None:
        return Path(name, None, attempt.error)
    mirrored = read_mirror(attempt.answer.message)
    if mirrored is None:
        return Path(name, None, "the answer is not the mirror's")
    return Path(name, changed_fields(attempt.request, mirrored))


def _paths(ctx: CheckContext, address: str) -> list[Path]:
    from netsetup.diagnose.checks.tunnel import Background

    port = ctx.info.witness_port
    assert port
    deadline = time.monotonic() + ctx.time_left() - 0.3
    ways = [("udp", port)]
    if ctx.info.sip_mirror:
        ways += [("udp", SIP_PORT), ("tcp", SIP_PORT)]
    running = [Background(partial(_through, t, (address, p), deadline)) for t, p in ways]
    found = [r.result(max(0.0, deadline - time.monotonic()) + 0.2) for r in running]
    return [f if f is not None else Path(f"{t} {p}", None, "no time") for f, (t, p) in
            zip(found, ways, strict=True)]  # fmt: skip


def _metrics(paths: list[Path]) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for p in paths:
        key = p.name.replace(" ", "_")
        out[key] = "no answer" if p.changed is None else ("rewritten" if p.changed else "intact")
        if p.changed:
            out[f"{key}_changed"] = list(p.changed)
        if p.error:
            out[f"{key}_error"] = p.error
    return out


def judge_alg(ctx: CheckContext) -> Outcome:
    from netsetup.diagnose.checks.nat import public_mapping, witness_outside

    where = witness_outside(ctx)
    if isinstance(where, str):
        return Outcome.skip(f"cannot test for a SIP ALG: {where}")
    mapping = public_mapping(ctx)
    if not isinstance(mapping, str) and not mapping.translated:
        return Outcome.skip(
            "no address translation between this computer and the internet: no router to "
            "rewrite SIP",
            nat=False,
        )
    paths = _paths(ctx, where[0])
    metrics = _metrics(paths)
    metrics["nat"] = None if isinstance(mapping, str) else mapping.translated
    return _verdict(ctx, paths, metrics)


def _verdict(ctx: CheckContext, paths: list[Path], metrics: dict[str, Metric]) -> Outcome:
    control, tested = paths[0], paths[1:]
    rewritten = [p for p in paths if p.changed]
    if rewritten:
        what = ", ".join(sorted({f for p in rewritten for f in p.changed or ()}))
        where = " and ".join(p.name for p in rewritten)
        return Outcome.problem(
            Status.warn,
            f"something between this computer and the internet rewrites SIP ({where}: {what} "
            "changed): a SIP ALG in the home router. Harmless for calls through the tunnel; "
            "it breaks calls (one-way audio, calls that drop) of a phone or softphone that "
            "talks to the phone system outside the tunnel",
            FIX,
            Owner.assistant,
            **metrics,
        )
    if control.changed is None:
        return Outcome(
            Status.unknown,
            f"the gateway's SIP mirror did not answer on {control.name} ({control.error}): "
            "a SIP ALG cannot be ruled out",
            metrics,
            "If calls have one-way audio or drop, look for 'SIP ALG' in your router's settings "
            "and turn it off.",
            Owner.assistant,
        )
    silent = [p for p in tested if p.changed is None]
    if silent:
        return Outcome.problem(
            Status.warn,
            f"SIP on {' and '.join(p.name for p in silent)} outside the tunnel got no answer "
            "while the same message on the witness port came back untouched: something on the "
            "way swallows SIP on port 5060: a router's SIP helper (ALG), the internet provider "
            "blocking port 5060, or a gateway firewall not loaded again since sip_mirror was "
            "turned on",
            SILENT_FIX,
            Owner.assistant,
            **metrics,
        )
    if not tested:
        return Outcome.passed(
            f"SIP came back untouched on {control.name}; port 5060 was not tested (the gateway "
            "does not mirror it)",
            **metrics,
        )
    return Outcome.passed(
        f"SIP came back untouched on {', '.join(p.name for p in paths)}: no SIP ALG rewrites it",
        **metrics,
    )
