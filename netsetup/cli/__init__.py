"""Command line: `netsetup`. Each command lives in its own module and registers itself on `app`."""

from __future__ import annotations

import os
import signal
import sys

from netsetup.cli.app import app
from netsetup.errors import ExitCode, NetsetupError

__all__ = ["app", "main"]


def _register() -> None:
    # Importing a module registers its commands; the modules import their heavy libraries lazily.
    from netsetup.cli import lab, provision, validate  # noqa: F401


class Interrupted(NetsetupError):
    exit_code = ExitCode.INTERRUPTED


def _on_sigint(signum: int, frame: object) -> None:
    # Raised instead of KeyboardInterrupt so that Click does not turn it into exit status 1.
    raise Interrupted("interrupted")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Click (standalone) handles --help and usage errors (exit 2); this function
    turns every NetsetupError into `error: <what> (<where>)` and its ExitCode."""
    signal.signal(signal.SIGINT, _on_sigint)
    _register()
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
