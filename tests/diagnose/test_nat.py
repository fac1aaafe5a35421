"""The `nat` check and `sip.alg`'s NAT test against a witness on 127.0.0.1 (no NAT on the
loopback: the mapping equals the local address), and how the binding lifetime is judged
against the tunnel's keepalive."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from netsetup.diagnose.checks.nat import NatCheck, _judge_lifetime
from netsetup.diagnose.checks.sip import SipAlgCheck
from netsetup.diagnose.privacy import Redactor
from netsetup.diagnose.result import CheckResult, Owner, Status
from netsetup.responder.witness import Witness, open_sockets, serve

from ..responder.support import FakeGateway
from .helpers import config_text, context, view


@pytest.fixture
def witness_port() -> Iterator[int]:
    sockets = open_sockets(["127.0.0.1"], 0)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(FakeGateway(), None), sockets, stop))
    thread.start()
    try:
        yield int(sockets[0].getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        sockets[0].close()


def _ctx(port: int):  # type: ignore[no-untyped-def]
    text = config_text([f"gateway=198.18.10.1 witness={port}"], endpoint="127.0.0.1:51820")
    return view(context(text, deadline_s=30), 10)


def test_no_nat_on_the_loopback_passes_and_sip_alg_skips(witness_port: int) -> None:
    ctx = _ctx(witness_port)
    outcome = NatCheck().run(ctx)
    assert outcome.status is Status.passed, outcome
    assert outcome.metrics["nat"] is False and outcome.metrics["public_address"] == "127.0.0.1"
    alg = SipAlgCheck().run(ctx)
    assert alg.status is Status.skip and "no address translation" in alg.summary


def test_no_witness_answer_is_unknown_with_a_fix_for_it() -> None:
    from .helpers import closed_port

    outcome = NatCheck().run(_ctx(closed_port()))
    assert outcome.status is Status.unknown and "public address" in outcome.summary
    assert "STUN" not in outcome.summary  # plain words for the assistant
    assert outcome.owner is Owner.it and "send this report to IT" in (outcome.fix or "")


def test_a_full_tunnel_skips_nat_like_sip_alg() -> None:
    """AllowedIPs 0.0.0.0/0: nothing reaches the gateway outside the tunnel, on every run: a
    skip that says so, not an unknown that never goes away. (The tunnel's Address is the
    loopback's here, so the route to the gateway leaves from it, as through a real full tunnel.)"""
    text = config_text(
        ["gateway=198.18.10.1 witness=51821"], allowed="0.0.0.0/0", address="127.0.0.1/32"
    )
    ctx = view(context(text, deadline_s=30), 10)
    outcome = NatCheck().run(ctx)
    assert outcome.status is Status.skip and "carries all traffic" in outcome.summary
    assert SipAlgCheck().run(ctx).status is Status.skip


def test_a_lifetime_without_any_answer_has_a_fix() -> None:
    outcome = _lifetime(first_dead=None, longest=None)
    assert outcome.status is Status.unknown and outcome.owner is Owner.it and outcome.fix


def _lifetime(first_dead: float | None, longest: float | None, keepalive: str = "25"):  # type: ignore[no-untyped-def]
    text = config_text(["gateway=198.18.10.1 witness=51821"]).replace(
        "[Peer]", f"[Peer]\nPersistentKeepalive = {keepalive}"
    )
    return _judge_lifetime(view(context(text)), "NAT", {}, longest, first_dead)


def test_a_binding_forgotten_before_the_keepalive_warns_router_first_then_it() -> None:
    """The router's UDP timeout is the assistant's; the keepalive, when it has none, is IT's."""
    outcome = _lifetime(first_dead=15, longest=None)
    assert outcome.status is Status.warn and outcome.owner is Owner.assistant
    assert "PersistentKeepalive" in (outcome.fix or "") and "incoming call" in outcome.summary
    router, it = (outcome.fix or "").split("If the router has no such setting")
    assert "UDP timeout" in router and "PersistentKeepalive" not in router
    assert "send this report to IT" in it and "PersistentKeepalive below 10 s" in it


def test_a_binding_outliving_the_keepalive_passes() -> None:
    outcome = _lifetime(first_dead=35, longest=25)
    assert outcome.status is Status.passed and "between 25 and 35 s" in outcome.summary
    assert _lifetime(first_dead=None, longest=180).status is Status.passed
    # the same router is too quick for a config that keeps alive only every 60 s
    assert _lifetime(first_dead=35, longest=25, keepalive="60").status is Status.warn


def test_the_public_address_is_masked_in_reports() -> None:
    outcome = _lifetime(first_dead=None, longest=180)
    result = CheckResult("nat", "NAT", outcome, 0.1)
    from dataclasses import replace

    shown = replace(
        result,
        outcome=replace(outcome, metrics={"public_address": "198.51.100.7", "nat": True}),
    )
    assert Redactor().result(shown).outcome.metrics["public_address"] == "198.51.x.x"
    assert Redactor(show_public_ip=True).result(shown).outcome.metrics["public_address"] == (
        "198.51.100.7"
    )
