"""`import` and `sweep`: an existing WireGuard server's peers taken into a profile, and peers whose
access ended long ago taken out of it."""

# No `from __future__ import annotations` here: Typer reads every command's parameter types when
# it builds the command, and string annotations would cost an eval() each, on every run.
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netsetup.cli.app import ProfileArg, app, emit_json
from netsetup.profile.model import AccessMode as Mode

if TYPE_CHECKING:
    from netsetup.gateway.importer import ImportedPeer, ImportResult
    from netsetup.gateway.sweep import SweepResult
    from netsetup.profile.model import Profile

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]
GatewayOpt = Annotated[
    str | None,
    typer.Option("--gateway", help="The site (`name` of a [[gateway]]); default: the first."),
]
IdentityOpt = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        envvar="NETSETUP_SSH_KEY",
        help="SSH private key for the gateway (default: ssh-agent, then ~/.ssh keys).",
    ),
]


def _ask_mode(name: str, peer: "ImportedPeer") -> str:
    """Ask for one peer's mode on the terminal; without one, say what to pass instead."""
    if not sys.stdin.isatty():
        from netsetup.errors import InputError

        raise InputError(
            "no --mode given and no terminal to ask on: pass --mode dedicated or --mode agency "
            "(the same for every imported peer)"
        )
    addresses = ", ".join(peer.allowed_ips)
    answer: str = typer.prompt(
        f"mode of {name} ({addresses}, {peer.where}) [dedicated/agency]",
        value_proc=_mode_answer,
        err=True,  # stdout stays the result's (and --json's) alone
    )
    return answer


def _mode_answer(text: str) -> str:
    """A typed mode; anything else asks again (typer's prompt repeats on BadParameter)."""
    value = text.strip().lower()
    if value not in {m.value for m in Mode}:
        raise typer.BadParameter("answer dedicated or agency")
    return value


def _show_import(result: "ImportResult", profile: str) -> None:
    from netsetup.keys import fingerprint
    from netsetup.profile.model import DEFAULT_GATEWAY_NAME

    site = f"{result.gateway}, " if result.gateway != DEFAULT_GATEWAY_NAME else ""
    typer.echo(
        f"imported {len(result.imported)} peer(s) into {result.profile} "
        f"({site}{result.interface}) from {result.source}"
    )
    for planned in result.imported:
        peer = planned.peer
        addresses = ", ".join(str(a) for a in (peer.address_v4, peer.address_v6) if a)
        origin = "name from its comment" if planned.name_source == "comment" else "generated name"
        typer.echo(
            f"  + {peer.name} ({peer.mode}) {addresses}  {fingerprint(peer.public_key)}  "
            f"[{origin}, line {planned.imported.line}]"
            if planned.imported.line
            else f"  + {peer.name} ({peer.mode}) {addresses}  {fingerprint(peer.public_key)}  "
            f"[{origin}, live only]"
        )
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} peer(s) already in the profile:")
        for skipped in result.skipped:
            typer.echo(f"  = {skipped.name} ({skipped.status})  {skipped.fingerprint}")
    key = result.gateway_key
    words = {
        "none": "the config has no [Interface] PrivateKey: none stored",
        "kept": "already in the state folder",
        "stored": "stored in the state folder (0600)",
        "taken": "the config's key is now the profile's: public_key in profile.toml rewritten, "
        "the private key stored in the state folder (0600)",
    }
    typer.echo(f"gateway key: {words[key.action]}")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"next: netsetup validate {profile}; netsetup plan {profile}")


@app.command("import")
def import_peers(
    profile: ProfileArg,
    wg_conf: Annotated[
        Path | None,
        typer.Option("--wg-conf", help="A wg-quick server config (its [Peer]s are imported)."),
    ] = None,
    from_gateway: Annotated[
        bool,
        typer.Option(
            "--from-gateway",
            help="Read the gateway's config file and live peers over SSH (its agent).",
        ),
    ] = False,
    gateway: GatewayOpt = None,
    mode: Annotated[
        Mode | None,
        typer.Option(
            "--mode",
            help="The mode of every imported peer; without it each is asked on the terminal.",
        ),
    ] = None,
    take_gateway_key: Annotated[
        bool,
        typer.Option(
            "--take-gateway-key",
            help="The config's [Interface] key becomes the profile's (public_key rewritten).",
        ),
    ] = False,
    identity: IdentityOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Adopt the peers of an existing WireGuard server without re-keying anyone.

    Public keys and addresses are kept, preshared keys go to the state folder, names come from
    the comments PiVPN, wg-easy and hand-kept configs carry (else peer-1, peer-2, ...). Nothing
    is written when one peer cannot be taken as it is; every problem is listed.

    Example:

        netsetup import acme-dental --wg-conf /etc/wireguard/wg0.conf --mode dedicated

        netsetup import acme-dental --from-gateway --mode agency --json
    """
    from netsetup.clock import SystemClock
    from netsetup.errors import InputError
    from netsetup.gateway.importer import (
        ImportRefused,
        import_config,
        read_from_gateway,
        read_wg_conf,
    )
    from netsetup.profile.store import load_profile
    from netsetup.state import StateDir

    if (wg_conf is None) == (not from_gateway):
        raise InputError("give exactly one of --wg-conf FILE and --from-gateway")
    loaded = load_profile(profile)
    if wg_conf is not None:
        config = read_wg_conf(wg_conf)
    else:
        config = read_from_gateway(loaded, gateway, identity)
    try:
        result = import_config(
            loaded,
            config,
            state=StateDir(),
            mode=mode.value if mode is not None else _ask_mode,
            gateway=gateway,
            take_gateway_key=take_gateway_key,
            clock=SystemClock(),
        )
    except ImportRefused as refused:
        for problem in refused.problems:
            typer.echo(f"  {problem}", err=True)
        raise
    if json_out:
        emit_json("netsetup.import/1", result.as_dict())
        return
    _show_import(result, profile)


def _show_sweep(result: "SweepResult", profile: str, applying: bool) -> None:
    from netsetup.profile.values import format_duration, format_time

    grace = format_duration(result.grace)
    if not result.swept:
        typer.echo(f"nothing to sweep in {result.profile}: no access ended more than {grace} ago")
        return
    verb = "would remove" if result.dry_run else "removed"
    typer.echo(f"{verb} {len(result.swept)} peer(s) from {result.profile} (ended > {grace} ago):")
    for swept in result.swept:
        line = f"  - {swept.name} ({swept.state} {format_time(swept.ended)})  {swept.fingerprint}"
        if swept.outcome == "retired":
            line += f"  [addresses held until {format_time(swept.held_until)}]"
        typer.echo(line)
    if not result.dry_run and not applying:
        typer.echo(f"next: netsetup plan {profile}; netsetup apply {profile}")
    if applying:
        typer.echo("their gateways were updated first (apply above)")


@app.command()
def sweep(
    profile: ProfileArg,
    grace: Annotated[
        str,
        typer.Option("--grace", help="How long after expiry or revocation (12h, 30d, 2w)."),
    ] = "30d",
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Take them off the gateways too (`netsetup apply`, run first)."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List only; change nothing.")] = False,
    identity: IdentityOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove peers whose access ended (expired or revoked) longer than --grace ago.

    Their peer files, preshared keys and client configs go; their addresses stay held (a
    retired record) until the profile's quarantine ends. With --apply the gateways are brought
    to the profile first (`netsetup apply` takes those peers off them), and the peers leave the
    profile only once that went through.

    Example:

        netsetup sweep acme-dental --dry-run

        netsetup sweep acme-dental --grace 60d --apply
    """
    from netsetup.clock import SystemClock
    from netsetup.errors import InputError
    from netsetup.gateway.sweep import sweep as do_sweep
    from netsetup.profile.store import load_profile
    from netsetup.profile.values import parse_duration
    from netsetup.state import StateDir

    if apply and dry_run:
        raise InputError("--apply and --dry-run exclude each other")
    try:
        period = parse_duration(grace)
    except ValueError as exc:
        raise InputError(str(exc), where="--grace") from None
    loaded = load_profile(profile)
    state = StateDir()
    applied: dict[str, Any] | None = None
    if apply:
        # The gateways first, while the profile still knows these peers as expired or revoked:
        # apply then takes them off. Swept first, they would be peers the profile does not know
        # (drift), which apply refuses to touch.
        listed = do_sweep(loaded, state=state, grace=period, dry_run=True, clock=SystemClock())
        if listed.swept:
            applied = _apply_before_sweep(loaded, identity, json_out)
            if applied["exit_code"]:
                _refuse_sweep(listed, applied, json_out)
    result = do_sweep(loaded, state=state, grace=period, dry_run=dry_run, clock=SystemClock())
    if json_out:
        extra = {"apply": applied} if apply else {}
        emit_json("netsetup.sweep/1", {**result.as_dict(), **extra})
        return
    _show_sweep(result, profile, apply)


def _apply_before_sweep(loaded: "Profile", identity: Path | None, json_out: bool) -> dict[str, Any]:
    """`netsetup apply` on the profile: its gateways drop the peers about to be swept. Progress
    on stderr; returns apply's JSON document (its `exit_code`: 3 when a gateway failed)."""
    from netsetup.gateway.apply import ApplyOptions, apply_profile
    from netsetup.state import StateDir

    def progress(gateway: str, message: str) -> None:
        typer.echo(f"[{gateway}] {message}", err=True)

    options = ApplyOptions(identity=identity, progress=progress)
    report = apply_profile(loaded, StateDir(), options)
    document: dict[str, Any] = report.as_dict()
    if not json_out:
        for gateway in document["gateways"]:
            words = gateway["outcome"]
            if gateway["status"] in ("failed", "refused"):
                words = f"{gateway['status'].upper()} at step {gateway['step']}: {gateway['error']}"
            typer.echo(f"apply: gateway {gateway['gateway']} ({gateway['ssh']}): {words}")
    return document


def _refuse_sweep(listed: "SweepResult", applied: dict[str, Any], json_out: bool) -> None:
    """apply did not go through: the profile keeps the peers (nothing swept), with apply's exit
    status, so the next `sweep --apply` tries again."""
    if json_out:
        emit_json("netsetup.sweep/1", {**listed.as_dict(), "swept": [], "apply": applied})
    else:
        names = ", ".join(p.name for p in listed.swept)
        typer.echo(f"nothing swept: apply did not go through, the profile keeps {names}", err=True)
    raise typer.Exit(int(applied["exit_code"]))
