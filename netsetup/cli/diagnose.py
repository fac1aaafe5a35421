"""`netsetup diagnose`: a thin shell over `netsetup.diagnose` (the assistant's command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netsetup.cli.app import app, streams_of
from netsetup.errors import ExitCode, InputError


@app.command()
def diagnose(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Your WireGuard config file (the one IT sent you). Default: the active "
            "netsetup tunnel on this machine.",
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="A profile folder: its facts override the config's."),
    ] = None,
    deadline: Annotated[
        float, typer.Option("--deadline", help="Seconds the whole run may take.")
    ] = 10.0,
    only: Annotated[
        str | None,
        typer.Option("--only", help="Run only these checks: ids or families, comma separated."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the netsetup.diagnose/1 JSON.")] = (
        False
    ),
    include_public_ip: Annotated[
        bool,
        typer.Option("--include-public-ip", help="Show your public IP address in the report."),
    ] = False,
) -> None:
    """Check your connection to the company and say what is wrong, how to fix it, who must act.

    Exit status: 0 nothing failed, 1 a check failed, 2 bad input, 130 interrupted.

    Example:

        netsetup diagnose --config wg-acme.conf
    """
    import json

    from netsetup.diagnose.context import DiagnoseOptions
    from netsetup.diagnose.result import Status
    from netsetup.diagnose.run import diagnose as run_diagnose
    from netsetup.diagnose.run import load_context

    if not 0 < deadline <= 600:
        raise InputError(f"--deadline must be between 0 and 600 seconds, not {deadline:g}")
    streams = streams_of(ctx)
    wanted = tuple(item.strip() for item in (only or "").split(",") if item.strip())
    options = DiagnoseOptions(deadline_s=deadline, only=wanted, include_public_ip=include_public_ip)
    run = load_context(config, profile, options)
    report = run_diagnose(run)
    if as_json:
        streams.stdout.write(json.dumps(report.to_envelope(), indent=2) + "\n")
    else:
        for result in report.checks:
            streams.stdout.write(f"{result.status:7} {result.id}: {result.outcome.summary}\n")
        streams.stdout.write(f"verdict: {report.verdict}\n")
    if report.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    if report.verdict is Status.fail:
        raise typer.Exit(ExitCode.FINDINGS)
