"""The measurements the VoIP checks share: one voice probe session to the office responder and
one echo series to the home router, run side by side (each once per diagnose run, whichever
check asks first starts both), so `voice.quality` and `lan.gateway` judge the same moment.
"""

from __future__ import annotations

import base64
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.voice.metrics import HopMetrics, VoiceMetrics
from netsetup.responder.office_wire import OfficeSession, key_tag

T = TypeVar("T")

PROBES_DEFAULT = 150  # 3 s at 20 ms
PROBES_LONG = 1100  # 22 s: loss within about a point and a half at 5-20 %
BUDGET_S = 6.0
BUDGET_LONG_S = 28.0


NO_RESPONDER_KEY = (
    "this config has no responder key (it was made before the office responder existed)"
)


def no_key_fix(profile: str | None) -> str:
    """How a config gets its responder key: a new config from `netsetup rotate`."""
    return (
        f"IT: `netsetup rotate {profile or '<profile>'} <name>` gives you a new config with it; "
        "import that config and run diagnose again"
    )


class Unmeasured(Exception):
    """A measurement that could not be made: the reason in words, and the check's status."""

    def __init__(self, reason: str, status: str = "unknown") -> None:
        super().__init__(reason)
        self.status = status


class Pending(Generic[T]):
    """A measurement running in a thread; `result(timeout)` is its value or raises its error."""

    def __init__(self, name: str, compute: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._body, args=(compute,), name=name, daemon=True).start()

    def _body(self, compute: Callable[[], T]) -> None:
        try:
            self._value = compute()
        except Exception as exc:  # handed to whoever waits for the result
            self._error = exc
        self._done.set()

    def result(self, timeout: float) -> T:
        if not self._done.wait(max(0.0, timeout)):
            raise Unmeasured("the measurement did not finish in time")
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def probe_count(ctx: CheckContext) -> int:
    return PROBES_LONG if ctx.options.long else PROBES_DEFAULT


# -- the office responder --------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceRun:
    metrics: VoiceMetrics
    address: str  # the responder, as probed
    duplicates: int


def responder_missing(ctx: CheckContext) -> str | None:
    """Why the responder cannot be asked (for `skip`), or None."""
    info = ctx.info
    if info.responder is None:
        return "this config names no office responder (the profile's [diagnose] responder)"
    if info.responder_key is None:
        return NO_RESPONDER_KEY
    if ctx.config.private_key is None:
        return "this config has no usable private key"
    return None


def office_session(ctx: CheckContext) -> OfficeSession:
    """An OfficeSession with this peer's responder key and key tag."""
    info, config = ctx.info, ctx.config
    assert info.responder_key is not None
    public = config.client_public_key()
    if public is None:
        raise Unmeasured("this config has no usable private key", "skip")
    try:
        key = base64.b64decode(info.responder_key.reveal(), validate=True)
        return OfficeSession(key, key_tag(base64.b64decode(public)))
    except ValueError:
        raise Unmeasured("the config's responder key is not a valid key", "skip") from None


def responder_address(ctx: CheckContext) -> tuple[str, int]:
    from netsetup.diagnose.platform.routes import resolve_endpoint

    assert ctx.info.responder is not None
    host, port = ctx.info.responder
    address = resolve_endpoint(host)
    if address is None:
        raise Unmeasured(f"the responder's name {host} does not resolve; see the dns check")
    return str(address), port


def _measure_voice(ctx: CheckContext, count: int, deadline: float) -> VoiceRun:
    from netsetup.diagnose.voice.metrics import summarize
    from netsetup.diagnose.voice.session import ProbePlan, ResponderSilent, run_probes

    missing = responder_missing(ctx)
    if missing is not None:
        raise Unmeasured(missing, "skip")
    session = office_session(ctx)
    address = responder_address(ctx)
    plan = ProbePlan(count=count).fitted(deadline - time.monotonic())
    if plan.count < 10:
        raise Unmeasured("too little time left to send voice probes")
    try:
        result = run_probes(address, session, plan, deadline)
    except ResponderSilent as exc:
        raise Unmeasured(str(exc), "silent") from None
    except OSError as exc:
        raise Unmeasured(f"the probes could not be sent ({exc.strerror or exc})") from None
    metrics = summarize(result.records, result.counts)
    return VoiceRun(metrics, f"{address[0]}:{address[1]}", result.duplicates)


# -- the home router ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HopRun:
    metrics: HopMetrics
    router: str


def first_hop(ctx: CheckContext) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The home router: the next hop toward the tunnel's Endpoint."""
    from netsetup.diagnose.platform.routes import next_hop, resolve_endpoint

    endpoint = ctx.config.endpoint
    if endpoint is None:
        raise Unmeasured("the config has no Endpoint to find the home router by", "skip")
    address = resolve_endpoint(endpoint[0])
    if address is None:
        raise Unmeasured(f"the Endpoint {endpoint[0]} does not resolve", "skip")
    hop = next_hop(address)
    if hop.router is None:
        raise Unmeasured(hop.reason, "skip")
    return hop.router


def _measure_hop(ctx: CheckContext, count: int, deadline: float) -> HopRun:
    from netsetup.diagnose.platform.icmp import EchoPlan, EchoUnavailable, echo_series
    from netsetup.diagnose.voice.metrics import summarize_round_trip

    router = first_hop(ctx)
    plan = EchoPlan(count=count, settle_s=0.4)
    room = int((deadline - time.monotonic() - plan.settle_s) / plan.interval_s)
    plan = EchoPlan(count=max(0, min(count, room)), settle_s=0.4)
    if plan.count < 10:
        raise Unmeasured("too little time left to ping the home router")
    try:
        records = echo_series(router, plan, deadline)
    except EchoUnavailable as exc:
        raise Unmeasured(str(exc), "no-ping") from None
    except OSError as exc:
        raise Unmeasured(f"the home router could not be pinged ({exc.strerror or exc})") from None
    return HopRun(summarize_round_trip(records), str(router))


# -- shared, once per run ----------------------------------------------------------------------


def voice_run(ctx: CheckContext) -> Pending[VoiceRun]:
    count, deadline = probe_count(ctx), ctx.deadline

    def start() -> Pending[VoiceRun]:
        return Pending("voice probes", lambda: _measure_voice(ctx, count, deadline))

    return ctx.once("voice.probes", start)


def hop_run(ctx: CheckContext) -> Pending[HopRun]:
    count, deadline = probe_count(ctx), ctx.deadline

    def start() -> Pending[HopRun]:
        return Pending("home router echoes", lambda: _measure_hop(ctx, count, deadline))

    return ctx.once("voice.first_hop", start)


def start_both(ctx: CheckContext) -> tuple[Pending[VoiceRun], Pending[HopRun]]:
    """Both measurements, started together (by the first check that asks)."""
    hop = hop_run(ctx)
    return voice_run(ctx), hop
