"""`rtp.ports`: the profile's RTP range between this computer and the office's media address,
tested on a sample of ports in both directions through the office responder."""

from __future__ import annotations

from netsetup.diagnose.checks.dns import ask_it
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.diagnose.voice.measure import Unmeasured, office_session, responder_address
from netsetup.diagnose.voice.session import PortsResult, ask, rtp_call, rtp_open
from netsetup.responder.office_wire import Caps

RTP_WAIT_S = 0.5


def _media(caps: Caps, family_v6: bool) -> str | None:
    same = [m for m in caps.media if (":" in m) == family_v6]
    return same[0] if same else None


def check_rtp(ctx: CheckContext, ports: list[int]) -> Outcome:
    session = office_session(ctx)
    address = responder_address(ctx)
    caps = ask(address, session, session.hello(), RTP_WAIT_S)
    if not isinstance(caps, Caps):
        raise Unmeasured("no answer to its greeting", "silent")
    media = _media(caps, ":" in address[0])
    if media is None:
        return Outcome.skip(
            "not checked: the office responder cannot send from a media address "
            "(it runs without --media)"
        )
    toward = rtp_open(address, session, media, ports, RTP_WAIT_S)
    back = rtp_call(address, session, media, ports, RTP_WAIT_S)
    return judge_rtp(ctx, media, toward, back)


def _listed(ports: list[int]) -> str:
    return ", ".join(str(p) for p in ports) or "none"


def judge_rtp(ctx: CheckContext, media: str, toward: PortsResult, back: PortsResult) -> Outcome:
    """Fails only on ports the responder opened (or called from) that did not get through; a
    port it could not open (taken on the office host, by the PBX's own calls) is listed apart."""
    assert ctx.info.sip is not None
    low, high = ctx.info.sip.rtp_ports
    to_office = [p for p in toward.answered if p not in toward.reached]
    in_use = [p for p in toward.asked if p not in toward.answered]
    from_office = [p for p in back.asked if p not in back.reached]
    metrics: dict[str, Metric] = {
        "media": media,
        "range": f"{low}-{high}",
        "sampled": list(toward.asked),
        "opened": list(toward.answered),
        "blocked_to_office": to_office,
        "blocked_from_office": from_office,
        "in_use_at_office": in_use,
        "not_tested_here": [p for p in toward.asked if p not in back.asked],
    }
    if to_office or from_office:
        return _blocked(ctx, media, to_office, from_office, in_use, metrics)
    if not toward.answered:
        return Outcome.problem(
            Status.unknown,
            f"call audio toward the office could not be tested: the office responder opened "
            f"none of the ports {_listed(in_use)} (in use on the office host, not tested); "
            f"from the office {len(back.reached)} ports answered",
            "run diagnose again; if it says the same, send this report to IT",
            Owner.assistant,
            **metrics,
        )
    apart = f" ({_listed(in_use)} in use on the office host, not tested)" if in_use else ""
    return Outcome(
        Status.passed,
        f"call audio gets through both ways: {len(toward.answered)} ports of UDP {low}-{high} "
        f"to and from {media} answered{apart}",
        metrics,
    )


def _blocked(
    ctx: CheckContext,
    media: str,
    to_office: list[int],
    from_office: list[int],
    in_use: list[int],
    metrics: dict[str, Metric],
) -> Outcome:
    assert ctx.info.sip is not None
    low, high = ctx.info.sip.rtp_ports
    apart = f"; in use on the office host, not tested: {_listed(in_use)}" if in_use else ""
    return Outcome.problem(
        Status.fail,
        f"call audio ports are blocked: toward the office ({media}) {_listed(to_office)}; "
        f"from the office {_listed(from_office)}{apart}: calls would connect without sound",
        f"{ask_it(ctx)} to let UDP {low}-{high} through between this tunnel and the phone "
        f"system {media} in both directions (the gateway's firewall, or the PBX's RTP range); "
        f"blocked: {_listed(sorted(set(to_office) | set(from_office)))}",
        Owner.it,
        **metrics,
    )
