"""The Typer application object and the helpers every command module shares.

Commands only parse, call the core, render and exit. They raise `NetsetupError`s; `main()` (in
`netsetup/cli/__init__.py`) is the one place that turns an error into `error: <what> (<where>)`
on stderr, a JSON envelope under --json, and an `ExitCode`.
"""

# No `from __future__ import annotations` here: Typer reads the callback's parameter types on
# every run, and a string annotation would cost an eval() (here of a whole typer.Option) each time.
import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any, TextIO

import typer

from netsetup.errors import one_line

app = typer.Typer(
    name="netsetup",
    help=(
        "Get a remote administrative assistant safely connected to their company: WireGuard "
        "provisioning, offline profile checks and a throw-away network lab."
    ),
    no_args_is_help=True,
    # --install-completion / --show-completion; their code runs only when asked for
    add_completion=True,
    rich_markup_mode=None,  # plain click help: no Rich import, so `netsetup --help` stays fast
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True, eq=False)  # streams have no value to compare; eq would cost an import
class Streams:
    """Where output goes and whether a person reads it: injected (as the Click context's `obj`)
    so that tests can fake a terminal."""

    stdout: TextIO
    stderr: TextIO
    stdout_is_terminal: bool

    @classmethod
    def system(cls) -> "Streams":
        return cls(sys.stdout, sys.stderr, sys.stdout.isatty())


def streams_of(ctx: typer.Context) -> Streams:
    """The streams `main()` passed in, or the process's own (under Typer's CliRunner)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Streams) else Streams.system()


def _show_version(value: bool) -> None:
    if value:
        from netsetup.cli import package_version

        typer.echo(f"netsetup {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            expose_value=False,
            callback=_show_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    # `main()` answers --version before Typer is even imported; this option puts it in --help
    # and answers it when the app is run some other way (CliRunner).
    pass


ERROR_SCHEMA = "netsetup.error/1"


@dataclass(frozen=True)
class Failure:
    """What `main()` reports about an exception: the words, the place and the exit status."""

    what: str
    where: str | None
    exit_code: int

    @property
    def line(self) -> str:
        what = one_line(self.what)
        return f"error: {what} ({one_line(self.where)})" if self.where else f"error: {what}"

    def as_json(self) -> str:
        """The `netsetup.error/1` envelope, printed where the command's JSON would have gone."""
        error = {"what": self.what, "where": self.where, "exit_code": self.exit_code}
        return json.dumps({"schema": ERROR_SCHEMA, "error": error}, indent=2) + "\n"


def emit_json(schema: str, payload: dict[str, Any]) -> None:
    """Print a versioned JSON envelope: {"schema": "netsetup.<command>/1", ...}."""
    document = {"schema": schema, **payload}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


ProfileArg = Annotated[
    str,
    typer.Argument(
        metavar="PROFILE", help="Profile folder (profiles/acme-dental) or id under ./profiles."
    ),
]
