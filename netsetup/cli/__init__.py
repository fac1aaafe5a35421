"""Command line: `netsetup`. Each command lives in its own module and registers itself on `app`."""

from __future__ import annotations

import os
import sys

from netsetup.cli.app import app
from netsetup.errors import ExitCode, NetsetupError

__all__ = ["app", "main"]


def _register() -> None:
    # Importing a module registers its commands; the modules import their heavy libraries lazily.
    from netsetup.cli import lab, provision, validate  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    import click

    _register()
    try:
        result = app(args=argv, prog_name="netsetup", standalone_mode=False)
    except NetsetupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.USAGE))
    except (click.Abort, KeyboardInterrupt):
        click.echo("error: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:
        # A bug, not bad input. The message is the exception's type only: its text or a
        # traceback could carry a value the code was holding, and that may be a secret.
        if os.environ.get("NETSETUP_DEBUG") == "1":
            raise
        click.echo(
            f"error: internal error ({type(exc).__name__}); rerun with NETSETUP_DEBUG=1 "
            "for a traceback and report it",
            err=True,
        )
        sys.exit(int(ExitCode.USAGE))
    sys.exit(result if isinstance(result, int) else 0)
