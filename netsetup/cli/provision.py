"""`provision`, `revoke`, `rotate`, `renew` and `render`: the IT admin's commands (`list` and
`show` live in cli/inventory.py)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from netsetup.cli.app import app, emit_json


class Mode(enum.StrEnum):
    """The access modes (netsetup.profile.model.MODES), as choices Click can list in --help."""

    dedicated = "dedicated"
    agency = "agency"


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
    bool, typer.Option("--qr", help="Show a QR code in the terminal and write PNG and SVG.")
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


def _show_provisioned(result: object, json_out: bool, qr: bool, verb: str) -> None:
    from netsetup.provision.service import ProvisionResult

    assert isinstance(result, ProvisionResult)
    if json_out:
        emit_json(f"netsetup.{verb}/1", result.as_dict())
        return
    peer = result.peer
    addresses = ", ".join(a for a in (peer.address_v4, peer.address_v6) if a)
    typer.echo(f"{verb.rstrip('e')}ed {peer.name} ({peer.mode}) in {result.profile}: {addresses}")
    typer.echo(f"  key fingerprint  {peer.fingerprint}")
    typer.echo(f"  expires          {peer.expires or 'never'}")
    typer.echo(f"  client config    {result.config}  (0600: send it privately)")
    if not result.private_key_written:
        typer.echo("  private key      kept by the assistant; none was written")
    for path in result.qr_files:
        typer.echo(f"  QR code          {path}")
    typer.echo(f"  peer file        {result.peer_file}")
    if qr:
        import segno

        segno.make(result.config.read_text(), error="l").terminal(compact=True)
    typer.echo(f"next: netsetup render {result.profile} --out FILE  (update the gateway)")


@app.command()
def provision(
    profile: ProfileArg,
    name: NameArg,
    mode: Annotated[
        Mode,
        typer.Option("--mode", help="dedicated: the company network; agency: the portal only."),
    ] = Mode.dedicated,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="30d, 12h, 2w or a date (2026-12-31). Agency default: the profile's."
        ),
    ] = None,
    client_pubkey: ClientKeyOpt = None,
    out: OutOpt = None,
    qr: QrOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a WireGuard peer for an assistant: keys, address, client config, QR code.

    Example:

        netsetup provision profiles/acme-dental maria --mode dedicated --qr

        netsetup provision acme-dental temp --mode agency --expires 7d

        netsetup provision acme-dental ines --out ./handoff/ines
    """
    from netsetup.provision.service import provision as do_provision
    from netsetup.state import StateDir

    result = do_provision(
        _load(profile),
        name,
        mode.value,
        state=StateDir(),
        expires=expires,
        client_pubkey=client_pubkey,
        out_dir=out,
        qr=qr,
    )
    _show_provisioned(result, json_out, qr, "provision")


@app.command()
def revoke(profile: ProfileArg, name: NameArg, json_out: JsonOpt = False) -> None:
    """Take an assistant's access away: the peer leaves the gateway config at the next render,
    its preshared key and client config are destroyed, its address rests in quarantine.

    Example:

        netsetup revoke acme-dental maria

        netsetup render acme-dental --out /etc/wireguard/wg0.conf
    """
    from netsetup.provision.service import revoke as do_revoke
    from netsetup.state import StateDir

    loaded = _load(profile)
    view = do_revoke(loaded, name, state=StateDir())
    if json_out:
        emit_json("netsetup.revoke/1", {"profile": loaded.id, "peer": view.as_dict()})
    else:
        typer.echo(f"revoked {view.name} ({view.fingerprint}); re-render the gateway to apply")


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
    from netsetup.provision.service import rotate as do_rotate
    from netsetup.state import StateDir

    result = do_rotate(
        _load(profile), name, state=StateDir(), client_pubkey=client_pubkey, out_dir=out, qr=qr
    )
    _show_provisioned(result, json_out, qr, "rotate")


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
    from netsetup.provision.service import renew as do_renew
    from netsetup.state import StateDir

    loaded = _load(profile)
    view = do_renew(loaded, name, expires, state=StateDir())
    if json_out:
        emit_json("netsetup.renew/1", {"profile": loaded.id, "peer": view.as_dict()})
    else:
        typer.echo(f"renewed {view.name}: expires {view.expires}")
