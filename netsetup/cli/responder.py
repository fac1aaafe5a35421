"""`netsetup responder`: the gateway witness (`--role gateway`); the office role comes later."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import app, streams_of

if TYPE_CHECKING:
    from netsetup.responder.witness import Serving


class Role(enum.StrEnum):
    """Where the responder runs: on the WireGuard gateway, or (not yet) in the office."""

    gateway = "gateway"
    office = "office"


@app.command()
def responder(
    ctx: typer.Context,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            metavar="DIR",
            help="Profile folder (profiles/acme-dental) or id under ./profiles.",
        ),
    ],
    role: Annotated[
        Role, typer.Option("--role", help="gateway: the witness beside WireGuard.")
    ] = Role.gateway,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            metavar="ADDR",
            help="Listen on this address only (repeatable); the gateway's tunnel addresses "
            "are always served. Default: every address.",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The gateway's private key, used only when the live interface's cannot be "
            "read (`wg show <iface> private-key`).",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="State directory whose gateway key is the fallback (default: "
            "$NETSETUP_STATE_DIR or ~/.local/state/netsetup).",
        ),
    ] = None,
) -> None:
    """Answer an assistant's questions about their tunnel from the gateway (runs until stopped).

    The witness listens on UDP `gateway.witness_port` (default listen_port + 1). To the owner of
    a key, proven by a MAC made with that key, it tells whether WireGuard packets from their
    address arrived lately, whether the gateway knows their key (active, revoked, expired or
    unknown), its last handshake and the port WireGuard listens on; nothing about any other
    peer. It acks probes on every address, the gateway's tunnel addresses included. Run it as
    root on the gateway (it reads `wg show` and the firewall's nftables sets).

    Example:

        netsetup responder --profile /etc/netsetup/acme-dental --role gateway
    """
    import gc
    import signal
    import threading

    from netsetup.errors import InputError
    from netsetup.profile.store import load_profile
    from netsetup.responder.witness import run_gateway_witness

    if role is Role.office:
        raise InputError("--role office is not built yet; use --role gateway")
    gc.enable()  # a long-running service: let the cycle collector do its work
    streams = streams_of(ctx)
    loaded = load_profile(profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def ready(serving: Serving) -> None:
        where = ", ".join(_endpoint(a, serving.port) for a in serving.addresses)
        streams.stderr.write(
            f"witness of {serving.profile_id} (WireGuard interface {serving.interface}) "
            f"listening on udp {where}\n"
        )
        if serving.key != "live":
            streams.stderr.write(
                f"warning: cannot read the key of {serving.interface} (`wg show "
                f"{serving.interface}` failed: is the interface up, and the witness run as root?); "
                + (
                    "answering with the fallback key (--key-file or the state directory)\n"
                    if serving.key == "fallback"
                    else "no fallback key either: status queries get no answer until it can\n"
                )
            )
        if serving.sip_mirror not in ("off", "on"):
            streams.stderr.write(f"warning: SIP mirror {serving.sip_mirror}: witness port only\n")
        streams.stderr.flush()

    def failed(exc: BaseException) -> None:
        streams.stderr.write(f"warning: a packet was dropped: {type(exc).__name__}\n")

    run_gateway_witness(
        loaded,
        listen=listen or (),
        key_file=key_file,
        state_dir=state_dir,
        stop=stop,
        on_ready=ready,
        on_error=failed,
    )


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
