"""Why nothing answered through the tunnel, and who must act (part of `tunnel.handshake`).

From the client alone, UDP blocked on the way, a changed gateway key and a revoked peer look the
same: WireGuard never answers what it cannot authenticate. What tells them apart:
- the gateway witness, asked outside the tunnel: did the gateway see our packets, does it know our
  key (and is it revoked or expired), which port does WireGuard listen on, or (a query it cannot
  verify) the fingerprint of the gateway's current key;
- WireGuard's own state where readable: bytes sent without any received, the live endpoint
  (compared with a fresh lookup of the Endpoint name: WireGuard resolves it only at start).
Without the witness, the fix names the causes that remain and who can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netsetup.diagnose.checks.tunnel import contact, tunnel_name
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Metric, Outcome, Owner, Status


@dataclass(frozen=True)
class Silence:
    """What was gathered while the tunnel stayed silent."""

    window_s: float
    probes_sent: int
    interface: str
    before: Any  # wgstate.State | None (None: not read in time)
    after: Any
    witness: Any  # WitnessStatus | KeyMismatch | None
    witness_configured: bool
    fresh_endpoint: list[str] | None
    witness_after_s: float | None = None  # from our first probe to the witness's answer


def fresh_handshake(ctx: CheckContext, state: Any, started_wall: float) -> Outcome | None:
    """A pass when WireGuard completed a handshake after we started sending, though nothing we
    probed answered (the gateway has no witness and the DNS server is down, say): the tunnel
    itself works, what runs in it is for the other checks."""
    peer = _peer(ctx, state)
    # WireGuard tells whole seconds: only a handshake in a later second than our start counts
    if peer is None or not peer.latest_handshake or peer.latest_handshake <= started_wall:
        return None
    return Outcome.passed(
        "the tunnel works: WireGuard completed a handshake with the gateway (nothing inside "
        "the tunnel answered the probes: the other checks tell what)",
        answered_by="wireguard",
        last_handshake_age_s=round(ctx.clock.now().timestamp() - peer.latest_handshake, 1),
    )


def explain_silence(ctx: CheckContext, s: Silence) -> Outcome:
    metrics = _metrics(ctx, s)
    head = (
        f"no answer from the company through the tunnel within {s.window_s:.0f} s "
        f"({s.probes_sent} probes sent)"
    )
    tx_rx = _traffic(s)
    if tx_rx:
        head += f"; {tx_rx}"
    moved = _endpoint_moved(ctx, s)
    if moved is not None:
        return _problem(ctx, f"{head}; {moved[0]}", moved[1], Owner.assistant, metrics)
    told = _witness_says(ctx, s)
    if told is not None:
        what, fix, owner = told
        return _problem(ctx, f"{what} ({head})", fix, owner, metrics)
    return _problem(ctx, head, _remaining_causes(ctx, s), Owner.it, metrics)


def _problem(
    ctx: CheckContext, summary: str, fix: str, owner: Owner, metrics: dict[str, Metric]
) -> Outcome:
    return Outcome.problem(Status.fail, summary, fix, owner, **metrics)


def _peer(ctx: CheckContext, state: Any) -> Any:
    from netsetup.diagnose.wgstate import InterfaceState

    if not isinstance(state, InterfaceState):
        return None
    return state.peer(ctx.config.gateway_public_key) or (
        state.peers[0] if len(state.peers) == 1 else None
    )


def _metrics(ctx: CheckContext, s: Silence) -> dict[str, Metric]:
    from netsetup.diagnose.wgstate import Unreadable

    out: dict[str, Metric] = {
        "interface": s.interface,
        "window_s": round(s.window_s, 1),
        "probes_sent": s.probes_sent,
    }
    if isinstance(s.after, Unreadable):
        out["wireguard_state"] = f"not readable: {s.after.reason}"
    peer = _peer(ctx, s.after)
    if peer is not None:
        out["wireguard_state"] = "readable"
        now = ctx.clock.now().timestamp()
        shake = peer.latest_handshake
        out["last_handshake_age_s"] = round(now - shake) if shake else None
        out["tx_bytes"], out["rx_bytes"] = peer.tx_bytes, peer.rx_bytes
    out["witness"] = _witness_word(s)
    w = s.witness
    if hasattr(w, "key_state"):  # a WitnessStatus (never the public address: it is private)
        out["gateway_key_state"] = w.key_state
        out["gateway_saw_us_s_ago"] = w.seen_age_s
        out["gateway_handshake_age_s"] = w.last_handshake_age_s
        out["witness_answered_after_s"] = s.witness_after_s and round(s.witness_after_s, 2)
    return out


def _witness_word(s: Silence) -> str:
    if not s.witness_configured:
        return "not configured"
    if s.witness is None:
        return "no answer"
    return "answered"


def _traffic(s: Silence) -> str | None:
    """ "sent 1480 bytes, received none" when the state was readable before and after."""
    before, after = s.before, s.after
    peers_before = getattr(before, "peers", None)
    peers_after = getattr(after, "peers", None)
    if not peers_before or not peers_after:
        return None
    tx = peers_after[0].tx_bytes - peers_before[0].tx_bytes
    rx = peers_after[0].rx_bytes - peers_before[0].rx_bytes
    if tx > 0 and rx == 0:
        return f"WireGuard sent {tx} bytes and received nothing"
    return f"WireGuard sent {tx} bytes and received {rx}"


def _endpoint_moved(ctx: CheckContext, s: Silence) -> tuple[str, str] | None:
    peer = _peer(ctx, s.after)
    endpoint = ctx.config.endpoint
    if peer is None or not peer.endpoint or not s.fresh_endpoint or endpoint is None:
        return None
    live_host = peer.endpoint.rsplit(":", 1)[0].strip("[]")
    if live_host in s.fresh_endpoint:
        return None
    name = endpoint[0]
    return (
        f"WireGuard still sends to {live_host}, but {name} now points to "
        f"{', '.join(s.fresh_endpoint)}",
        f"Turn the tunnel {tunnel_name(ctx)} off and on again in the WireGuard app: WireGuard "
        f"looks up {name} only when the tunnel starts.",
    )


def _witness_says(ctx: CheckContext, s: Silence) -> tuple[str, str, Owner] | None:
    from netsetup.responder.client import KeyMismatch, WitnessStatus

    who, witness = contact(ctx), s.witness
    if isinstance(witness, KeyMismatch):
        return (
            "the gateway's key changed: the company's gateway no longer has the key your "
            f"config expects (it now shows {witness.gateway_fingerprint})",
            f"Ask {who} for a new config: the gateway's key changed.",
            Owner.it,
        )
    if not isinstance(witness, WitnessStatus):
        return None
    return _key_state(ctx, witness, who) or _seen(ctx, witness, who, s.witness_after_s)


_KEY_WORDS = {
    "unknown": "your key is not on the gateway (it was removed, or never added)",
    "revoked": "your key is not on the gateway: your access was revoked",
    "expired": "your key is not on the gateway: your access expired",
}


def _key_state(ctx: CheckContext, w: Any, who: str) -> tuple[str, str, Owner] | None:
    if w.key_state in _KEY_WORDS:
        return (
            _KEY_WORDS[w.key_state],
            f"Ask {who} to renew your access or send you a new config "
            f"(the gateway reports your key as {w.key_state}).",
            Owner.it,
        )
    endpoint = ctx.config.endpoint
    if endpoint is not None and w.listen_port and w.listen_port != endpoint[1]:
        return (
            f"the gateway listens on another port: WireGuard there uses port {w.listen_port}, "
            f"your config sends to port {endpoint[1]}",
            f"Ask {who} for a config with Endpoint = {endpoint[0]}:{w.listen_port} (or to make "
            f"the gateway listen on {endpoint[1]} again).",
            Owner.it,
        )
    return None


SEEN_MARGIN_S = 1.0  # the witness may tell an age up to half a second old (it caches its reads)


def seen_while_we_sent(w: Any, sending_for_s: float | None) -> bool | None:
    """Did the gateway see WireGuard packets from us since we started sending? The witness
    remembers senders for minutes, so an earlier, healthy moment must not count: the last packet
    it saw has to come at least SEEN_MARGIN_S after our first probe (`sending_for_s` is how long
    we had been sending when it answered)."""
    if w.seen_recently is None:
        return None
    if w.seen_age_s is None or sending_for_s is None:
        return bool(w.seen_recently)
    return bool(sending_for_s - w.seen_age_s >= SEEN_MARGIN_S)


def _seen(
    ctx: CheckContext, w: Any, who: str, sending_for_s: float | None
) -> tuple[str, str, Owner] | None:
    endpoint = ctx.config.endpoint
    port = endpoint[1] if endpoint else "the WireGuard port"
    seen = seen_while_we_sent(w, sending_for_s)
    if seen is False:
        return (
            "the company never received your packets: the gateway saw no WireGuard traffic "
            "from your connection",
            f"Something between you and the company blocks UDP port {port}: your router, your "
            "security software or the network you are on (hotel, guest Wi-Fi). Allow outgoing "
            f"UDP {port} in your router, or try another network (e.g. your phone's hotspot); "
            "if it is blocked on your home line with the router allowing it, call your "
            "internet provider.",
            Owner.assistant,
        )
    if seen:
        return (
            "the gateway receives your packets and knows your key, but WireGuard there does "
            "not answer",
            f"Ask {who} to check WireGuard on the gateway for your peer (its preshared key, "
            "or the service itself).",
            Owner.it,
        )
    return None


def _remaining_causes(ctx: CheckContext, s: Silence) -> str:
    endpoint = ctx.config.endpoint
    port = endpoint[1] if endpoint else "the WireGuard port"
    why = (
        "the gateway's witness did not answer"
        if s.witness_configured
        else "this config names no gateway witness"
    )
    return (
        f"Without an answer from the gateway ({why}) one of these remains: "
        f"(1) your router or the network you are on blocks UDP port {port}: try another "
        "network, e.g. your phone's hotspot; if the tunnel works there, your router or "
        "internet provider blocks it (you can tell this one yourself); "
        "(2) your key is not on the gateway (revoked or expired) or the gateway's key changed; "
        "(3) the gateway is down or listens on another port. "
        f"{contact(ctx)} can tell (2) and (3) apart on the gateway: send them this report."
    )
