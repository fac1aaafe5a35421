"""`netsetup validate` and `netsetup rule`: thin shells over `netsetup.validate`."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from netsetup.cli.app import app, emit_json
from netsetup.errors import ExitCode, InputError, NotFoundError


@app.command()
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Profile folders, or folders holding profiles (e.g. profiles/)."),
    ],
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="text, github, json, sarif or junit. Default: github when GITHUB_ACTIONS=true, "
            "else text.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fail_on: Annotated[
        str,
        typer.Option("--fail-on", help="Exit 1 on findings at or above: error or warning."),
    ] = "error",
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Check expiry and quarantine as of this ISO date-time (reproducible runs).",
        ),
    ] = None,
) -> None:
    """Check profiles offline: schema, addresses, keys, routes, secrets; findings at file:line.

    Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage error or no profile found,
    4 the environment (a disk or permission problem), 70 internal error. Silence one finding
    with a comment on its line or its table's header line: `# netsetup: ignore[NS106] reason`.
    Explain a rule with `netsetup rule NS106`.

    Example:

        netsetup validate profiles/ --format sarif > validate.sarif
    """
    from netsetup.validate import Severity, choose_format, render
    from netsetup.validate import validate as run_validate
    from netsetup.validate.formats import json as json_format

    try:
        threshold = Severity.parse(fail_on)
    except ValueError as exc:
        raise InputError(str(exc), where="--fail-on") from None
    if as_json and output_format not in (None, "json"):
        raise InputError("--json and --format disagree", where=f"--json, --format {output_format}")
    fmt = choose_format("json" if as_json else output_format, os.environ)
    moment = _parse_now(now) if now else datetime.now(UTC)
    # a bug raises through to main(): exit 70 with only the exception's type, never "findings"
    report = run_validate(paths, now=moment, fail_on=threshold)
    if fmt == "json":
        emit_json(json_format.SCHEMA, json_format.payload(report))
    else:
        sys.stdout.write(render(report, fmt))
    raise typer.Exit(int(ExitCode.FINDINGS if report.failed else ExitCode.OK))


def _parse_now(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            "not an ISO date-time such as 2026-06-01T00:00:00Z", where=f"--now {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def rule(
    code: Annotated[
        str | None,
        typer.Argument(help="A rule code (NS105) or name (allowedips-identical)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON envelope.")] = False,
) -> None:
    """Explain a validate rule: what it checks, why, and a failing and a passing example.

    Without a code, list every rule.

    Example:

        netsetup rule NS105
    """
    from netsetup.validate import all_rules, find_rule

    rules = all_rules()
    if code is not None:
        found = find_rule(code)
        if found is None:
            raise NotFoundError("no such rule; `netsetup rule` lists them", where=code)
        rules = [found]
    if as_json:
        emit_json(
            "netsetup.rule/1",
            {
                "rules": [
                    {
                        "code": r.code,
                        "name": r.name,
                        "severity": r.severity.label,
                        "summary": r.summary,
                        "why": r.why,
                        "failing": r.failing,
                        "passing": r.passing,
                    }
                    for r in rules
                ]
            },
        )
    elif code is not None:
        typer.echo(rules[0].doc, nl=False)
    else:
        for r in rules:
            typer.echo(f"{r.code}  {r.name:<28} {r.severity.label:<8} {r.summary}")
