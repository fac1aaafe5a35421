"""Command line: `netsetup`. Each command lives in its own module and registers itself on `app`."""

from __future__ import annotations

import os
import signal
import sys

from netsetup.cli.app import app
from netsetup.errors import ExitCode, NetsetupError

__all__ = ["app", "main"]


# Which module defines each command. Running one command imports only its module, so Typer
# builds a few Click commands instead of all of them (a measurable share of a 100 ms start).
COMMAND_MODULES = {
    "provision": "provision",
    "revoke": "provision",
    "rotate": "provision",
    "renew": "provision",
    "list": "inventory",
    "show": "inventory",
    "render": "provision",
    "validate": "validate",
    "rule": "validate",
    "lab": "lab",
}
ALL_MODULES = ("provision", "inventory", "validate", "lab")


def _register(argv: list[str] | None = None) -> None:
    """Import the command modules (importing one registers its commands on `app`)."""
    import importlib

    first = next((a for a in (argv or []) if not a.startswith("-")), None)
    wanted = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else list(ALL_MODULES)
    for module in wanted:
        importlib.import_module(f"netsetup.cli.{module}")


class Interrupted(NetsetupError):
    exit_code = ExitCode.INTERRUPTED


def _on_sigint(signum: int, frame: object) -> None:
    # Raised instead of KeyboardInterrupt so that Click does not turn it into exit status 1.
    raise Interrupted("interrupted")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Click (standalone) handles --help and usage errors (exit 2); this function
    turns every NetsetupError into `error: <what> (<where>)` and its ExitCode."""
    signal.signal(signal.SIGINT, _on_sigint)
    _register(sys.argv[1:] if argv is None else argv)
    try:
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
