"""Command line: `netsetup`. Each command lives in its own module and registers itself on `app`."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from netsetup.cli.app import app
from netsetup.errors import ExitCode, NetsetupError

if TYPE_CHECKING:
    from typer.models import CommandInfo

__all__ = ["app", "main"]


# Which module defines each command. Running one command imports only its module, so Typer
# builds a few Click commands instead of all of them (a measurable share of a 100 ms start).
COMMAND_MODULES = {
    "provision": "provision",
    "revoke": "provision",
    "rotate": "provision",
    "renew": "provision",
    "list": "provision",
    "render": "provision",
    "validate": "validate",
    "rule": "validate",
    "lab": "lab",
}
ALL_MODULES = ("provision", "validate", "lab")


def _register(argv: list[str] | None = None) -> None:
    """Import the command modules (importing one registers its commands on `app`)."""
    import importlib

    first = next((a for a in (argv or []) if not a.startswith("-")), None)
    wanted = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else list(ALL_MODULES)
    for module in wanted:
        importlib.import_module(f"netsetup.cli.{module}")


@contextlib.contextmanager
def _only_command(argv: list[str]) -> Iterator[None]:
    """While `netsetup <command> ...` runs, leave only that command on `app`.

    Typer builds a Click command for every command registered (reading each one's signature and
    type hints, a tenth of a `provision`) before it looks at the arguments. A no-op callback keeps
    the app a group: with one command left, Typer would make that command the whole program."""
    commands, callback = app.registered_commands, app.registered_callback
    wanted = [c for c in commands if argv and _command_name(c) == argv[0]]
    if wanted:
        app.registered_commands = wanted
        if callback is None:
            app.callback()(_group)
    try:
        yield
    finally:
        app.registered_commands, app.registered_callback = commands, callback


def _command_name(command: CommandInfo) -> str | None:
    if command.name:
        return command.name
    callback = command.callback
    return callback.__name__.replace("_", "-") if callback else None


def _group() -> None:
    """Stands for the app's own options (it has none) so that it stays a group."""


class Interrupted(NetsetupError):
    exit_code = ExitCode.INTERRUPTED


def _on_sigint(signum: int, frame: object) -> None:
    # Raised instead of KeyboardInterrupt so that Click does not turn it into exit status 1.
    raise Interrupted("interrupted")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Click (standalone) handles --help and usage errors (exit 2); this function
    turns every NetsetupError into `error: <what> (<where>)` and its ExitCode."""
    signal.signal(signal.SIGINT, _on_sigint)
    args = sys.argv[1:] if argv is None else argv
    _register(args)
    try:
        with _only_command(args):
            app(args=argv, prog_name="netsetup")
    except NetsetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except Exception as exc:
        # A bug, not bad input. Only the exception's type is shown: its text or a traceback
        # could carry a value the code was holding, and that may be a secret.
        if os.environ.get("NETSETUP_DEBUG") == "1":
            raise
        print(
            f"error: internal error ({type(exc).__name__}); rerun with NETSETUP_DEBUG=1 "
            "for a traceback and report it",
            file=sys.stderr,
        )
        sys.exit(int(ExitCode.USAGE))
