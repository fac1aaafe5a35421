"""`list` and `show`: the IT admin's view of who has access, across one profile or many."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import app, emit_json
from netsetup.errors import ExitCode, InputError, one_line
from netsetup.profile.model import AccessMode as Mode
from netsetup.profile.model import PeerState as State

if TYPE_CHECKING:
    from datetime import datetime

    from netsetup.clock import Clock
    from netsetup.provision.inventory import ClientConfig, Inventory, PeerDetails

# Tests put a FixedClock here. None: the system clock. Each command reads the time once.
clock: Clock | None = None


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]


def _now() -> datetime:
    from netsetup.clock import SYSTEM_CLOCK

    return (clock or SYSTEM_CLOCK).now()


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


# -- list ------------------------------------------------------------------------------------------
@app.command("list")
def list_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PROFILE|FOLDER...",
            help="A profile (profiles/acme-dental, or its id under ./profiles) or a folder of "
            "profiles (profiles/); several may be given.",
        ),
    ],
    mode: Annotated[
        Mode | None, typer.Option("--mode", help="Only peers of this access mode.")
    ] = None,
    state: Annotated[
        State | None, typer.Option("--state", help="Only peers in this state, as of now.")
    ] = None,
    expiring_within: Annotated[
        str | None,
        typer.Option(
            "--expiring-within",
            metavar="DURATION",
            help="Only active peers whose expiry falls within this span from now: 12h, 7d, 2w.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List peers: profile, name, mode, state, addresses, created, expiry and key fingerprint.

    Sorted by profile, then name; the last line sums the listed peers up by state. Filters
    combine: each one given must match.

    Exit status: 0 when everything could be read (also when no peer matches); 2 on a usage
    error, a profile that does not exist, or a file that could not be read. A broken peer file,
    or inside a folder of profiles a broken profile.toml, does not hide the rest: everything
    readable is listed, each unreadable file is named on stderr as `error: <what>
    (<file>:<line>)` (and under "errors" in --json), and the exit status is 2 so that a script
    notices the list is not complete. `netsetup validate FOLDER` shows all their problems.

    Example:

        netsetup list profiles/ --expiring-within 7d

        netsetup list profiles/ --mode agency --state active --json

        netsetup list acme-dental
    """
    from netsetup.provision.inventory import PeerFilter, take_inventory

    peer_filter = PeerFilter.parse(
        mode=mode.value if mode else None,
        state=state.value if state else None,
        expiring_within=expiring_within,
    )
    inventory = take_inventory(paths, _now(), peer_filter)
    if json_out:
        emit_json("netsetup.list/1", inventory.as_dict())
    else:
        _render_list(inventory)
    for problem in inventory.problems:
        typer.echo(f"error: {one_line(problem.message)} ({one_line(problem.where)})", err=True)
    if inventory.problems:
        raise typer.Exit(int(ExitCode.USAGE))


def _render_list(inventory: Inventory) -> None:
    if inventory.peers:
        _render_table(inventory)
    elif inventory.total == 0 and not inventory.several and inventory.profiles:
        only = inventory.profiles[0].id
        typer.echo(f"{only}: no peers yet (netsetup provision {only} NAME)")
        return
    typer.echo(_summary(inventory))


def _render_table(inventory: Inventory) -> None:
    header = ["NAME", "MODE", "STATE", "ADDRESSES", "CREATED", "EXPIRES", "KEY"]
    # a profile with several gateways ([[gateway]]): which site each peer connects to
    sites = any(listed.peer.gateway is not None for listed in inventory.peers)
    if sites:
        header.insert(1, "GATEWAY")
    rows = [["PROFILE", *header] if inventory.several else header]
    for listed in inventory.peers:
        v = listed.peer
        addresses = ",".join(a for a in (v.address_v4, v.address_v6) if a)
        cells = [v.name, v.mode, v.state, addresses, v.created, v.expires or "never", v.fingerprint]
        if sites:
            cells.insert(1, v.gateway or "-")
        rows.append([listed.profile, *cells] if inventory.several else cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(inventory: Inventory) -> str:
    """One line: how many peers are listed, of how many, and how they split by state."""
    where = _plural(len(inventory.profiles), "profile")
    by_state = ", ".join(f"{n} {state}" for state, n in inventory.counts().items())
    chosen = inventory.peer_filter.as_dict()
    if inventory.peer_filter.is_set:
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items() if v)
        line = f"{len(inventory.peers)} of {_plural(inventory.total, 'peer')} in {where} match "
        line += f"{flags}: {by_state}"
    else:
        line = f"{_plural(inventory.total, 'peer')} in {where}: {by_state}"
    if inventory.problems:
        files = _plural(len(inventory.problems), "file")
        line += f"; {files} could not be read (on stderr), so this list is incomplete"
    return line


# -- show ------------------------------------------------------------------------------------------
HOW_TO_SEND = (
    "Send the file itself, never its text in an e-mail or chat: hand it over in person or "
    "through an end-to-end encrypted channel"
)
OR_SCAN = ", or let the assistant scan `netsetup show {profile} {name} --qr` from your screen"


@app.command()
def show(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE", help="Profile folder (profiles/acme-dental) or id under ./profiles."
        ),
    ],
    name: Annotated[
        str, typer.Argument(metavar="PEER", help="Peer name: 1-32 characters of a-z, 0-9 and '-'.")
    ],
    config: Annotated[
        bool,
        typer.Option(
            "--config",
            help="Show the client config kept in the state folder again, keys redacted, and "
            "where the file is (no rotation).",
        ),
    ] = False,
    qr: Annotated[
        bool,
        typer.Option(
            "--qr",
            help="Draw the client config as a QR code for the WireGuard app. Only on a "
            "terminal: the code holds the private key.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show one peer: mode, state, addresses, dates, key, gateway and where its config is.

    No key is ever printed: --config prints the file's path and its text with PrivateKey and
    PresharedKey redacted. --qr draws the QR code only when stdout is a terminal (never into a
    pipe or file), because the code is the private key; the PNG and SVG that `provision --qr`
    wrote sit beside the config. A config written with --out elsewhere, or made with
    --client-pubkey, cannot be shown again: `netsetup rotate` makes a new one.

    Example:

        netsetup show acme-dental maria

        netsetup show acme-dental maria --config

        netsetup show acme-dental maria --qr
    """
    from netsetup.profile.store import load_profile
    from netsetup.profile.values import PeerName
    from netsetup.provision.inventory import peer_details, stored_client_config
    from netsetup.state import StateDir

    try:
        peer = PeerName(name)
    except ValueError as exc:
        raise InputError(str(exc), where="PEER") from None
    if qr and json_out:
        raise InputError(
            "a QR code is drawn on a terminal and cannot go into JSON", where="--qr, --json"
        )
    loaded = load_profile(profile)
    state_dir = StateDir()
    details = peer_details(loaded, peer, state_dir, _now())
    # A missing or revoked config is said first: its advice holds wherever stdout goes.
    client = stored_client_config(loaded, details, state_dir, peer) if config or qr else None
    if qr and not _stdout_is_terminal():
        _refuse_qr_into_pipe(details)
    qr_text = client.text_for_qr(loaded.id, peer) if qr and client else None
    if json_out:
        document = details.as_dict()
        if client is not None:
            document["config"] = {"path": str(client.path), "text": client.redacted}
        emit_json("netsetup.show/1", document)
        return
    _render_details(details)
    if client is not None and config:
        _render_config(client, details)
    if qr_text is not None:
        import segno

        segno.make(qr_text, error="l").terminal(compact=True)
        typer.echo("scan it with the WireGuard app: + then 'Scan from QR code'")


def _refuse_qr_into_pipe(details: PeerDetails) -> None:
    pictures = " or ".join(str(p) for p in details.qr_files)
    instead = (
        f"send {pictures} instead"
        if pictures
        else f"`netsetup rotate {details.profile} {details.peer.name} --qr` writes PNG and SVG "
        "files (with new keys)"
    )
    raise InputError(
        f"the QR code holds the private key, so it is drawn only on a terminal, never into a "
        f"pipe or file; {instead}",
        where="--qr, stdout is not a terminal",
    )


def _render_details(d: PeerDetails) -> None:
    v = d.peer
    rows = [
        ("mode", v.mode),
        ("state", _state_text(d)),
        ("addresses", ", ".join(a for a in (v.address_v4, v.address_v6) if a)),
        ("created", v.created),
        ("expires", v.expires or "never"),
        *([("rotated", d.rotated)] if d.rotated else []),
        *([("revoked", d.revoked)] if d.revoked else []),
        ("key fingerprint", v.fingerprint),
        ("public key", d.public_key),
        ("key origin", _origin_text(v.key_origin)),
        ("gateway", f"{v.gateway} ({d.gateway_endpoint})" if v.gateway else d.gateway_endpoint),
        ("client config", _config_text(d)),
        *[("QR code", str(path)) for path in d.qr_files],
        ("preshared key", _psk_text(d)),
        ("peer file", str(d.peer_file)),
    ]
    typer.echo(f"{v.name} on {d.profile} ({d.company})")
    for label, value in rows:
        typer.echo(f"  {label:<16} {value}")


def _state_text(d: PeerDetails) -> str:
    if d.peer.state == "expired":
        return f"expired (`netsetup renew {d.profile} {d.peer.name} --expires 30d` brings it back)"
    return d.peer.state


def _origin_text(origin: str) -> str:
    if origin == "client":
        return "client (the assistant made the key pair and keeps the private key)"
    return "generated (netsetup made the key pair; the private key is only in the client config)"


def _config_text(d: PeerDetails) -> str:
    if d.peer.state == "revoked":
        return "destroyed at revoke"
    if d.client_config_present:
        return f"{d.client_config} (0600; `--config` shows it redacted)"
    return (
        f"not in the state folder (written with --out elsewhere, or removed); "
        f"`netsetup rotate {d.profile} {d.peer.name}` makes a new one"
    )


def _psk_text(d: PeerDetails) -> str:
    if d.peer.state == "revoked":
        return "destroyed at revoke"
    if d.preshared_key_stored:
        return "in the state folder (render puts it on the gateway)"
    return (
        f"not in this state folder, so render cannot add the peer; "
        f"`netsetup rotate {d.profile} {d.peer.name}` makes a new one"
    )


def _render_config(client: ClientConfig, d: PeerDetails) -> None:
    typer.echo("")
    typer.echo(f"client config {client.path} (keys redacted):")
    typer.echo("")
    typer.echo(client.redacted, nl=False)
    typer.echo("")
    if not client.has_private_key:
        typer.echo("It has no PrivateKey: the assistant adds their own under [Interface].")
        typer.echo(f"{HOW_TO_SEND} (it holds the preshared key).")
        return
    typer.echo(f"{HOW_TO_SEND}{OR_SCAN.format(profile=d.profile, name=d.peer.name)}.")
