"""The Typer application object and the helpers every command module shares.

Commands only parse, call the core, render and exit. `main()` is the one place that turns a
`NetsetupError` into `error: <what> (<where>)` on stderr and an `ExitCode`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

from netsetup.errors import ExitCode

app = typer.Typer(
    name="netsetup",
    help=(
        "Get a remote administrative assistant safely connected to their company: WireGuard "
        "provisioning, diagnostics, offline profile checks and a throw-away network lab."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: no Rich import, so `netsetup --help` stays fast
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def emit_json(schema: str, payload: dict[str, Any]) -> None:
    """Print a versioned JSON envelope: {"schema": "netsetup.<command>/1", ...}."""
    document = {"schema": schema, **payload}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, where: str | None = None, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    text = f"error: {message} ({where})" if where else f"error: {message}"
    typer.echo(text, err=True)
    raise typer.Exit(int(code))
