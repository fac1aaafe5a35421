"""`netsetup plan`, `netsetup apply` and `netsetup gateway trust`: the gateway over SSH.

Progress goes to stderr (one line per step per gateway), the result to stdout (text, or the
`netsetup.plan/1` / `netsetup.apply/1` / `netsetup.gateway-trust/1` JSON document).
"""

# No `from __future__ import annotations` here: Typer reads every command's parameter types when
# it builds the command, and string annotations would cost an eval() each, on every run.
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netsetup.cli.app import ProfileArg, app, emit_json
from netsetup.profile.model import AccessMode as Mode

if TYPE_CHECKING:
    from netsetup.gateway.apply import ApplyOptions, ApplyReport, GatewayResult, PlanReport
    from netsetup.gateway.trust import TrustCheck

gateway_app = typer.Typer(
    help="The company gateway over SSH: pin its host key (and, once set up, more).",
    no_args_is_help=True,
)
app.add_typer(gateway_app, name="gateway")

IdentityOpt = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        envvar="NETSETUP_SSH_KEY",
        help="SSH private key file for the gateway login (else ssh-agent). Key "
        "authentication only.",
    ),
]
GatewayOpt = Annotated[
    str | None,
    typer.Option("--gateway", help="Only this gateway (the `name` of a [[gateway]] site)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]
ParallelOpt = Annotated[
    int, typer.Option("--parallel", help="How many gateways are handled at once.", min=1)
]


def _progress(gateway: str, message: str) -> None:
    sys.stderr.write(f"[{gateway}] {message}\n")
    sys.stderr.flush()


def _options(**values: object) -> "ApplyOptions":
    from netsetup.gateway.apply import ApplyOptions

    return ApplyOptions(progress=_progress, **values)  # type: ignore[arg-type]


def _load(profile: str):  # type: ignore[no-untyped-def]
    from netsetup.profile.store import load_profile

    return load_profile(profile)


@app.command()
def plan(
    profile: ProfileArg,
    identity: IdentityOpt = None,
    gateway: GatewayOpt = None,
    parallel: ParallelOpt = 4,
    json_out: JsonOpt = False,
) -> None:
    """Show what `apply` would change on the gateway(s): peers to add, remove or change, the
    ruleset diff, and drift (peers or rules on the gateway the profile does not know).

    Reads the live WireGuard state, the gateway's config file and its loaded ruleset over SSH
    (the pinned host key; nothing is changed). Exit status: 0 in sync, 1 changes pending or
    drift (for a CI schedule), 3 a gateway could not be read.

    Example:

        netsetup plan acme-dental

        netsetup plan acme-dental --gateway branch --json
    """
    from netsetup.gateway.apply import plan_profile
    from netsetup.state import StateDir

    options = _options(identity=identity, gateway=gateway, parallel=parallel)
    report = plan_profile(_load(profile), StateDir(), options)
    if json_out:
        from netsetup.gateway.plan import PLAN_SCHEMA

        emit_json(PLAN_SCHEMA, report.as_dict())
    else:
        _show_plan(report)
    raise typer.Exit(report.exit_code)


def _show_plan(report: "PlanReport") -> None:
    from netsetup.gateway.plan import describe

    for result in report.results:
        if result.plan is None:
            target = result.target or "no ssh"
            typer.echo(f"gateway {result.gateway} ({target}): cannot plan: {result.error}")
            continue
        for line in describe(result.plan):
            typer.echo(line)
    pending = [r.gateway for r in report.results if r.exit_code and r.plan is not None]
    unknown = [r.gateway for r in report.results if r.plan is None]
    if pending:
        typer.echo(f"not in sync: {', '.join(pending)} (`netsetup apply` applies the plan)")
    if unknown:
        typer.echo(f"not known: {', '.join(unknown)} (no plan could be made; see above)")
    if not pending and not unknown:
        typer.echo("in sync")


@app.command()
def apply(
    profile: ProfileArg,
    identity: IdentityOpt = None,
    gateway: GatewayOpt = None,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take peers found on the gateway but in no peer file into the profile (their "
            "keys and addresses kept; needs --mode).",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove peers found on the gateway but in no peer file (listed first), and "
            "overwrite hand edits of the ruleset (with --adopt: only the latter).",
        ),
    ] = False,
    mode: Annotated[
        Mode | None,
        typer.Option("--mode", help="With --adopt: the access mode of the adopted peers."),
    ] = None,
    confirm_within: Annotated[
        int,
        typer.Option(
            "--confirm-within",
            help="Seconds the gateway waits for the confirmation over a fresh SSH connection "
            "before it restores what it had (5-3600).",
        ),
    ] = 60,
    parallel: ParallelOpt = 4,
    json_out: JsonOpt = False,
) -> None:
    """Bring the gateway(s) to what the profile says, without dropping the other tunnels.

    Uploads the WireGuard config, the ruleset and the profile's public files by SFTP; the gateway
    keeps a backup, applies them with `wg syncconf` and `nft -f`, and restores the backup by
    itself unless apply confirms over a fresh SSH connection within --confirm-within seconds (a
    ruleset that would cut the admin's own SSH path undoes itself). apply then checks that the
    gateway runs what was planned, and rolls back if not. Drift stops it unless --adopt or
    --prune; a new peer whose preshared key is in no state folder stops it too (rotate it).
    Exit status: 0 applied or in sync, 1 refused (drift, unkeyed peers; nothing sent),
    2 bad input, 3 a gateway failed (the report says which, at which step, and whether it was
    restored).

    Example:

        netsetup apply acme-dental

        netsetup apply acme-dental --adopt --mode dedicated

        netsetup apply acme-dental --prune --gateway branch --confirm-within 30
    """
    from netsetup.gateway.apply import apply_profile
    from netsetup.state import StateDir

    options = _options(
        identity=identity,
        gateway=gateway,
        adopt=adopt,
        prune=prune,
        mode=mode.value if mode else None,
        confirm_within=confirm_within,
        parallel=parallel,
    )
    report = apply_profile(_load(profile), StateDir(), options)
    if json_out:
        from netsetup.gateway.apply import APPLY_SCHEMA

        emit_json(APPLY_SCHEMA, report.as_dict())
    else:
        _show_apply(report)
    raise typer.Exit(report.exit_code)


def _counts(result: "GatewayResult") -> str:
    plan = result.plan
    if plan is None:
        return ""
    return f" (+{len(plan.add)} -{len(plan.remove)} ~{len(plan.change)} peers)"


def _show_apply(report: "ApplyReport") -> None:
    from netsetup.gateway.plan import describe

    for result in report.results:
        head = f"gateway {result.gateway} ({result.target or 'no ssh'})"
        if result.status == "failed":
            typer.echo(f"{head}: FAILED at step {result.step}: {result.error}")
            typer.echo(f"  {result.outcome}")
        elif result.status == "refused":
            typer.echo(f"{head}: refused: {result.error}")
        else:
            typer.echo(f"{head}: {result.outcome}{_counts(result)}")
        if result.status == "applied" and result.plan is not None:
            typer.echo("\n".join("  " + line for line in describe(result.plan)[1:]))
        for name in result.adopted:
            typer.echo(f"  adopted into the profile: peers/{name}.toml")
        if result.staged_left:
            typer.echo("  note: staged files were left on the gateway (its next read removes them)")
    if report.failed:
        typer.echo(f"failed: {', '.join(r.gateway for r in report.failed)}")


@gateway_app.command()
def trust(
    profile: ProfileArg,
    gateway: GatewayOpt = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Do not ask; needs --expect with the fingerprint to pin."),
    ] = False,
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            help="The fingerprint the gateway must offer (SHA256:..., from its console).",
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Replace a pinned key that differs (a reinstalled host)."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Pin the gateway's SSH host key in the profile: the explicit first contact.

    Fetches the key the gateway offers (no login), shows its fingerprint and writes it as
    `host_key` into that gateway's table of profile.toml (every other line kept) once you
    confirm, or with --yes when it equals --expect. Compare it with the gateway's console first:
    `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`. A different pinned key is shown beside
    the offered one and kept unless --replace. Every other command refuses a key that is not
    the pinned one.

    Example:

        netsetup gateway trust acme-dental

        netsetup gateway trust acme-dental --yes --expect SHA256:q5m0...
    """
    from netsetup.errors import InputError
    from netsetup.gateway.trust import check_host_key, pin_host_key

    if yes and not expect:
        raise InputError(
            "--yes pins without asking only the key you expect: give --expect SHA256:... "
            "(the fingerprint from the gateway's console)",
            where="--yes",
        )
    loaded = _load(profile)
    check = check_host_key(loaded, gateway)
    if not json_out:
        _show_trust(check)
    if expect is None and check.status != "same" and not _confirmed(check, replace):
        raise InputError("not confirmed: nothing was written", where="gateway trust")
    written = pin_host_key(loaded, check, expect=expect, replace=replace)
    if json_out:
        emit_json("netsetup.gateway-trust/1", {**check.as_dict(), "written": written})
    elif written:
        typer.echo(f"pinned {check.offered} for gateway {check.gateway} in {loaded.profile_file}")
    else:
        typer.echo(f"already pinned: {check.offered}")


def _show_trust(check: "TrustCheck") -> None:
    typer.echo(f"gateway {check.gateway} ({check.target}) offers the host key {check.offered}")
    if check.status == "changed":
        from netsetup.gateway.trust import side_by_side

        typer.echo("it differs from the key pinned in the profile:")
        typer.echo(side_by_side(check))


def _confirmed(check: "TrustCheck", replace: bool) -> bool:
    from netsetup.errors import InputError

    if check.status == "changed" and not replace:
        return True  # pin_host_key refuses it with both fingerprints
    if not sys.stdin.isatty():
        raise InputError(
            "no terminal to confirm on: compare the fingerprint with the gateway's console, "
            "then run again with --yes --expect SHA256:...",
            where="gateway trust",
        )
    return typer.confirm("Is this the fingerprint the gateway's console shows?", default=False)
