"""`netsetup responder`: the office responder (`--role office`, the default) or the gateway
witness (`--role gateway`)."""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import app, streams_of

if TYPE_CHECKING:
    from netsetup.profile.model import Profile
    from netsetup.responder.office import Serving as OfficeServing
    from netsetup.responder.witness import Serving


class Role(enum.StrEnum):
    """Where the responder runs: in the office LAN, or on the WireGuard gateway."""

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
        Role,
        typer.Option(
            "--role",
            help="office: the probe side in the company LAN; gateway: the witness beside "
            "WireGuard.",
        ),
    ] = Role.office,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            metavar="ADDR[:PORT]",
            help="office: ADDR:PORT to listen on (default: [diagnose] responder). gateway: "
            "listen on this address only (repeatable); the gateway's tunnel addresses are "
            "always served. Default: every address.",
        ),
    ] = None,
    media: Annotated[
        list[str] | None,
        typer.Option(
            "--media",
            metavar="ADDR",
            help="office: the address RTP tests are answered from (repeatable; default: the "
            "PBX's [voip] sip_server when it is on this host).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="office: the responder token (a copy of <state>/<profile>/responder/token "
            "on the office host). Default: the state directory's.",
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
            help="State directory (default: $NETSETUP_STATE_DIR or ~/.local/state/netsetup): "
            "the office's responder token, or the gateway's fallback key.",
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            metavar="NAME",
            help="--role gateway, with several gateways ([[gateway]]): the site this witness "
            "runs on; it answers for that site's peers (default: the first).",
        ),
    ] = None,
) -> None:
    """Answer what an assistant's `diagnose` measures, in the office or on the gateway (runs
    until stopped).

    --role office (the default) listens on UDP and TCP at `[diagnose] responder`: voice-shaped
    probes are reflected with timestamps, RTP ports of `[voip] rtp_ports` are opened on the media
    address, and the tunnel speed test is served over HTTP; only to the profile's active peers,
    proven by their responder key (derived from the state folder's token). Anything else gets no
    answer at all.

    --role gateway: the witness listens on UDP `gateway.witness_port` (default listen_port +
    1). To the owner of a key, proven by a MAC made with that key, it tells whether WireGuard
    packets from their address arrived lately, whether the gateway knows their key (active,
    revoked, expired or unknown), its last handshake and the port WireGuard listens on;
    nothing about any other peer. It acks probes on every address, the gateway's tunnel
    addresses included. Run it as root on the gateway (it reads `wg show` and the firewall's
    nftables sets).

    Examples:

        netsetup responder --profile /etc/netsetup/acme-dental --token-file /etc/netsetup/token

        netsetup responder --profile /etc/netsetup/acme-dental --role gateway

        netsetup responder --profile /etc/netsetup/acme-dental --role gateway --gateway branch
    """
    import gc
    import signal
    import threading

    from netsetup.errors import InputError
    from netsetup.profile.store import load_profile, profile_site
    from netsetup.responder.witness import run_gateway_witness

    gc.enable()  # a long-running service: let the cycle collector do its work
    streams = streams_of(ctx)
    loaded = load_profile(profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def failed(exc: BaseException) -> None:
        streams.stderr.write(f"warning: a packet was dropped: {type(exc).__name__}\n")

    if role is Role.office:
        from netsetup.responder.office import responder_token, run_office_responder

        if key_file is not None:
            raise InputError("--key-file is for --role gateway; the office uses --token-file")
        if gateway is not None:
            raise InputError("--gateway is for --role gateway: the office serves every site")

        def office_ready(serving: OfficeServing) -> None:
            where = _endpoint(serving.address, serving.port)
            media = ", ".join(serving.media) or "none (RTP tests are not answered)"
            streams.stderr.write(
                f"office responder of {serving.profile_id} listening on udp {where}"
                + (f" and tcp {where} (speed test)" if serving.http else "")
                + f"; media address: {media}; {_peers(serving.peers)}\n"
            )
            streams.stderr.flush()

        run_office_responder(
            loaded,
            listen=_office_listen(listen or [], loaded),
            media=media,
            token=responder_token(state_dir, token_file, loaded),
            stop=stop,
            on_ready=office_ready,
            on_error=failed,
        )
        return
    if media or token_file is not None:
        raise InputError("--media and --token-file are for --role office")

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

    run_gateway_witness(
        profile_site(loaded, gateway, where="--gateway"),  # that site's view and peers
        listen=listen or (),
        key_file=key_file,
        state_dir=state_dir,
        stop=stop,
        on_ready=ready,
        on_error=failed,
    )


def _office_listen(listen: list[str], loaded: Profile) -> tuple[str, int] | None:
    """The office responder's address: --listen, else `[diagnose] responder`; an IP address of
    this host (checked here, so the error names where the address came from)."""
    from netsetup.errors import InputError
    from netsetup.profile.values import parse_endpoint

    if not listen:
        given = loaded.diagnose.responder
        if given is None:
            return None  # the responder says the profile names none
        where = f"([diagnose] responder in {loaded.profile_file})"
        _here(str(given[0]), where, "run the responder on that host, or give --listen")
        return None
    if len(listen) > 1:
        raise InputError("--role office listens on one ADDR:PORT")
    try:
        host, port = parse_endpoint(listen[0])
    except ValueError as exc:
        raise InputError(f"--listen {listen[0]}: {exc}") from None
    if not isinstance(host, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise InputError(
            f"--listen {listen[0]}: {host} is not an IP address: give one of this host's "
            "addresses and a port (--listen 192.0.2.50:4789)"
        )
    _here(str(host), f"(--listen {listen[0]})", "give one of this host's addresses")
    return str(host), port


def _here(address: str, where: str, fix: str) -> None:
    """An InputError unless `address` is one of this host's (a socket can bind to it)."""
    import errno
    import socket

    from netsetup.errors import InputError

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                return  # another problem: the responder's own bind reports it
            raise InputError(f"{address} is not an address of this host {where}: {fix}") from None


def _peers(count: int) -> str:
    return f"{count} active peer" + ("" if count == 1 else "s")


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
