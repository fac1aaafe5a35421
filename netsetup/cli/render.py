"""`netsetup render`: the gateway's WireGuard config or nftables ruleset, from its peers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import ProfileArg, Streams, app, streams_of

if TYPE_CHECKING:
    from netsetup.gateway.render import RenderResult


@app.command()
def render(
    ctx: typer.Context,
    profile: ProfileArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write to FILE atomically, 0600: the complete config with its secrets, or with "
            "--firewall the ruleset.",
        ),
    ] = None,
    gateway_key: Annotated[
        Path | None,
        typer.Option(
            "--gateway-key",
            help="File with the gateway's private key (default: the state directory's, if any).",
        ),
    ] = None,
    firewall: Annotated[
        bool, typer.Option("--firewall", help="The gateway's nftables ruleset instead.")
    ] = False,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            metavar="NAME",
            help="With several gateways ([[gateway]]): render this one, with its peers only "
            "(default: the first).",
        ),
    ] = None,
) -> None:
    """Render the gateway's WireGuard config: its interface and every active peer.

    Expired and revoked peers are left out; peers sharing an address, or with an address outside
    the tunnel subnets, stop the render. Printed to a terminal, the keys are redacted (a preview);
    --out FILE writes the usable file (0600) for `wg-quick up` or `wg syncconf`. Without --out,
    stdout must be a terminal: a redacted file would be refused by wg. The --firewall ruleset
    holds no secret and may also go to a pipe.

    Example:

        netsetup render acme-dental --out /etc/wireguard/wg0.conf

        netsetup render acme-dental --firewall --out /etc/nftables.d/netsetup.nft

        netsetup render acme-dental --firewall | ssh gw.example sudo nft -f -

        netsetup render acme-dental --gateway branch --out wg0-branch.conf
    """
    from netsetup.clock import SYSTEM_CLOCK
    from netsetup.gateway.render import render_gateway
    from netsetup.profile.store import load_profile
    from netsetup.state import StateDir

    streams = streams_of(ctx)
    loaded = load_profile(profile)
    result = render_gateway(
        loaded,
        StateDir(),
        SYSTEM_CLOCK.now(),
        out=out,
        firewall=firewall,
        gateway_key_file=gateway_key,
        to_terminal=streams.stdout_is_terminal,
        site=gateway,
    )
    _show(result, streams, chosen=gateway is not None)


def _show(result: RenderResult, streams: Streams, *, chosen: bool) -> None:
    if result.site is not None and not chosen:
        # several gateways and none named: say which one this is, before anything else
        others = ", ".join(name for name in result.sites if name != result.site)
        streams.stderr.write(
            f"note: rendered gateway {result.site!r}, the first of {len(result.sites)} "
            f"(the others: {others}); choose one with --gateway NAME\n"
        )
    for warning in result.warnings:
        streams.stderr.write(f"warning: {warning.what}\n")
        streams.stderr.writelines(f"  - {fix}\n" for fix in warning.fixes)
    if result.written is None:
        streams.stdout.write(result.text or "")
    elif result.kind == "firewall":
        streams.stdout.write(
            f"wrote {result.written} (0600): nftables ruleset for {result.active} active "
            f"peer(s); load it with `nft -f {result.written}`\n"
        )
    else:
        streams.stdout.write(
            f"wrote {result.written} (0600): {result.active} active peer(s), "
            f"{result.left_out} revoked or expired left out\n"
        )
