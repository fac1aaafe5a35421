"""`provision`, `revoke`, `rotate` and `renew`: the IT admin's commands (`list` and `show` live
in cli/inventory.py, `render` in cli/render.py)."""

# No `from __future__ import annotations` here: Typer reads every command's parameter types when
# it builds the command, and string annotations would cost an eval() each, on every run.
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import app, emit_json
from netsetup.profile.model import AccessMode as Mode

if TYPE_CHECKING:
    from netsetup.profile.values import PeerName


ProfileArg = Annotated[
    str,
    typer.Argument(
        metavar="PROFILE", help="Profile folder (profiles/acme-dental) or id under ./profiles."
    ),
]
NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Peer name: 1-32 characters of a-z, 0-9 and '-'.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Folder for the client config (0700; files 0600). "
        "Default: the state directory's clients/<name>/.",
    ),
]
QrOpt = Annotated[
    bool,
    typer.Option(
        "--qr",
        help="Write PNG and SVG QR codes and show one on a terminal (never into a pipe: "
        "it holds the private key).",
    ),
]
ClientKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--client-pubkey",
        help="The assistant's own public key: no private key is made or written.",
    ),
]


def _load(profile: str):  # type: ignore[no-untyped-def]
    from netsetup.profile.store import load_profile

    return load_profile(profile)


def _name(name: str) -> "PeerName":
    """The NAME argument as a checked PeerName, before anything is read or written."""
    from netsetup.errors import InputError
    from netsetup.profile.values import PeerName

    try:
        return PeerName(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _next_steps(profile: str, site: str | None = None) -> None:
    """The gateway only changes when both of its files are rendered again and applied."""
    which = f" --gateway {site}" if site else ""
    typer.echo(
        f"next: netsetup render {profile}{which} --out FILE  (the gateway's WireGuard config)"
    )
    typer.echo(
        f"      netsetup render {profile}{which} --firewall --out FILE  (the gateway's firewall)"
    )


def _show_provisioned(result: object, json_out: bool, qr: bool, verb: str, profile: str) -> None:
    from netsetup.provision.service import ProvisionResult, terminal_qr_of

    assert isinstance(result, ProvisionResult)
    if json_out:
        emit_json(f"netsetup.{verb}/1", result.as_dict())
        return
    peer = result.peer
    addresses = ", ".join(a for a in (peer.address_v4, peer.address_v6) if a)
    typer.echo(f"{verb.rstrip('e')}ed {peer.name} ({peer.mode}) in {result.profile}: {addresses}")
    if peer.gateway is not None:
        typer.echo(f"  gateway          {peer.gateway}")
    typer.echo(f"  key fingerprint  {peer.fingerprint}")
    typer.echo(f"  expires          {peer.expires or 'never'}")
    typer.echo(f"  client config    {result.config}  (0600: send it privately)")
    if not result.private_key_written:
        typer.echo("  private key      kept by the assistant; none was written")
    for path in result.qr_files:
        typer.echo(f"  QR code          {path}")
    typer.echo(f"  peer file        {result.peer_file}")
    if qr and sys.stdout.isatty():
        typer.echo(terminal_qr_of(result), nl=False)
    elif qr:  # the code is the config, private key included: never into a pipe, file or log
        typer.echo(
            "note: QR code not drawn: stdout is not a terminal and the code holds the private "
            "key; the PNG and SVG above are the same code",
            err=True,
        )
    _next_steps(profile, peer.gateway)


@app.command()
def provision(
    profile: ProfileArg,
    name: NameArg,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help=(
                "Required. dedicated: the company network; agency: the portal and the phone "
                "(every mode gets DNS and the VoIP path)."
            ),
        ),
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="30d, 12h, 2w or a date (2026-12-31). Agency default: the profile's."
        ),
    ] = None,
    client_pubkey: ClientKeyOpt = None,
    out: OutOpt = None,
    qr: QrOpt = False,
    reuse_name: Annotated[
        bool,
        typer.Option(
            "--reuse-name",
            help="Give a revoked peer's name to this new peer before its quarantine ends "
            "(the old address stays in quarantine).",
        ),
    ] = False,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            metavar="NAME",
            help="With several gateways ([[gateway]]): the site the assistant connects to "
            "(default: the first). The address comes from its subnet, the config names it.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a WireGuard peer for an assistant: keys, address, client config, QR code.

    --mode is required: forgetting it must never give an assistant the wrong network.

    Example:

        netsetup provision profiles/acme-dental maria --mode dedicated --qr

        netsetup provision acme-dental temp --mode agency --expires 7d

        netsetup provision acme-dental ines --mode dedicated --out ./handoff/ines

        netsetup provision acme-dental lena --mode dedicated --gateway branch
    """
    from netsetup.clock import SystemClock
    from netsetup.provision.service import provision as do_provision
    from netsetup.state import StateDir

    checked = _name(name)
    result = do_provision(
        _load(profile),
        checked,
        mode.value,
        state=StateDir(),
        expires=expires,
        client_pubkey=client_pubkey,
        out_dir=out,
        qr=qr,
        reuse_name=reuse_name,
        clock=SystemClock(),
        site=gateway,
    )
    _show_provisioned(result, json_out, qr, "provision", profile)


@app.command()
def revoke(profile: ProfileArg, name: NameArg, json_out: JsonOpt = False) -> None:
    """Take an assistant's access away: the peer leaves the gateway config at the next render,
    its preshared key and client config are destroyed, its address rests in quarantine.

    Example:

        netsetup revoke acme-dental maria

        netsetup render acme-dental --out /etc/wireguard/wg0.conf
    """
    from netsetup.clock import SystemClock
    from netsetup.provision.service import revoke as do_revoke
    from netsetup.state import StateDir

    checked = _name(name)
    loaded = _load(profile)
    view = do_revoke(loaded, checked, state=StateDir(), clock=SystemClock())
    if json_out:
        emit_json("netsetup.revoke/1", {"profile": loaded.id, "peer": view.as_dict()})
        return
    typer.echo(f"revoked {view.name} ({view.fingerprint}); re-render the gateway to apply")
    _next_steps(profile, view.gateway)


@app.command()
def rotate(
    profile: ProfileArg,
    name: NameArg,
    client_pubkey: ClientKeyOpt = None,
    out: OutOpt = None,
    qr: QrOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Give a peer new keys and a new preshared key; address, mode and expiry stay.

    Example:

        netsetup rotate acme-dental maria --qr
    """
    from netsetup.clock import SystemClock
    from netsetup.provision.service import rotate as do_rotate
    from netsetup.state import StateDir

    checked = _name(name)
    result = do_rotate(
        _load(profile),
        checked,
        state=StateDir(),
        client_pubkey=client_pubkey,
        out_dir=out,
        qr=qr,
        clock=SystemClock(),
    )
    _show_provisioned(result, json_out, qr, "rotate", profile)


@app.command()
def renew(
    profile: ProfileArg,
    name: NameArg,
    expires: Annotated[
        str, typer.Option("--expires", help="New expiry: 30d, 12h, 2w or a date (2026-12-31).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Move a peer's expiry (also brings back an expired, not revoked, peer).

    Example:

        netsetup renew brightdesk-agency temp-week --expires 14d
    """
    from netsetup.clock import SystemClock
    from netsetup.provision.service import renew as do_renew
    from netsetup.state import StateDir

    checked = _name(name)
    loaded = _load(profile)
    view = do_renew(loaded, checked, expires, state=StateDir(), clock=SystemClock())
    if json_out:
        emit_json("netsetup.renew/1", {"profile": loaded.id, "peer": view.as_dict()})
        return
    typer.echo(f"renewed {view.name}: expires {view.expires}")
    _next_steps(profile, view.gateway)
