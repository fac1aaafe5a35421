"""Command line: `netsetup`. Each command lives in its own module and registers itself on `app`.

`main()` is the one place that turns an exception into an exit status: a `NetsetupError` into
its `ExitCode`, an `OSError` into ENVIRONMENT (4), anything else into INTERNAL (70).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from netsetup.errors import EnvironmentProblem, ExitCode, NetsetupError

if TYPE_CHECKING:
    import typer
    from typer.models import CommandInfo

    from netsetup.cli.app import Failure, Streams

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
    "render": "render",
    "validate": "validate",
    "rule": "validate",
    "lab": "lab",
    "diagnose": "diagnose",
    "responder": "responder",
    "plan": "gateway",
    "apply": "gateway",
    "init": "setup",
    # cli/setup.py adds `bootstrap` to the group cli/gateway.py makes (it imports that module)
    "gateway": "setup",
    "import": "importing",
    "sweep": "importing",
}
ALL_MODULES = (
    "provision",
    "inventory",
    "render",
    "validate",
    "lab",
    "diagnose",
    "responder",
    "gateway",
    "setup",
    "importing",
)


def __getattr__(name: str) -> Any:
    # `app` is imported on first use, so `netsetup --version` answers without importing Typer.
    if name == "app":
        from netsetup.cli.app import app

        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """`netsetup.cli.app` stays the Typer application (what `from netsetup.cli import app` gives),
    as when it was imported eagerly: importing the submodule of the same name would otherwise
    bind the module there."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "app" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _register(argv: list[str] | None = None) -> None:
    """Import the command modules (importing one registers its commands on `app`)."""
    import importlib

    first = next((a for a in (argv or []) if not a.startswith("-")), None)
    wanted = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else list(ALL_MODULES)
    for module in wanted:
        importlib.import_module(f"netsetup.cli.{module}")


@contextlib.contextmanager
def _only_command(app: typer.Typer, argv: list[str]) -> Iterator[None]:
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


def _options(argv: list[str]) -> list[str]:
    """The arguments before `--` (after it they belong to another program: `lab exec`)."""
    return argv[: argv.index("--")] if "--" in argv else argv


def _asks_version(argv: list[str]) -> bool:
    return _options(argv)[:1] == ["--version"]


def _wants_json(argv: list[str]) -> bool:
    """Whether the command was asked for JSON (--json, --format json, -f json): then its error
    is JSON too. Conflicting flags (--json --format text) are an error about the flags, shown
    as text, like the output they asked for."""
    args = _options(argv)
    formats = {"json"} if "--json" in args else set()
    for i, arg in enumerate(args):
        if arg in ("--format", "-f") and i + 1 < len(args):
            formats.add(args[i + 1])
        elif arg.startswith("--format="):
            formats.add(arg.partition("=")[2])
    return formats == {"json"}


def _failure(exc: Exception) -> Failure:
    """How `main()` reports an exception: NetsetupError as itself, OSError as the environment,
    anything else as a bug."""
    from netsetup.cli.app import Failure

    if isinstance(exc, OSError):
        exc = EnvironmentProblem.from_os_error(exc)
    if isinstance(exc, NetsetupError):
        return Failure(exc.message, exc.where, int(exc.exit_code))
    # A bug, not bad input. Only the exception's type is shown: its text or a traceback could
    # carry a value the code was holding, and that may be a secret.
    what = (
        f"internal error ({type(exc).__name__}); rerun with NETSETUP_DEBUG=1 for a traceback "
        "and report it"
    )
    return Failure(what, None, int(ExitCode.INTERNAL))


class _ClickFailure(Exception):
    """A usage error Click found (an unknown option, a bad choice), already shown by Click."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.what)
        self.failure = failure


def _param_where(param: Any) -> str | None:
    """An option by its flags (--mode), an argument as the usage line names it (PEER)."""
    if param is None:
        return None
    if param.param_type_name == "argument":
        return str(param.human_readable_name)
    return "/".join(param.opts) or None


def _run(argv: list[str], streams: Streams) -> int:
    """Run the app (not standalone: exceptions come back here, and its exit status is returned)."""
    # Typer ships its own copy of Click (typer._click, since 0.26: see pyproject's pin)
    from typer._click.exceptions import ClickException

    from netsetup.cli.app import Failure, app

    try:
        with _only_command(app, argv):
            code = app(args=argv, prog_name="netsetup", obj=streams, standalone_mode=False)
    except ClickException as exc:
        exc.show(file=streams.stderr)  # Click's usage line and hint, as people know them
        param = getattr(exc, "param", None)  # the option or argument at fault, when known
        where = _param_where(param)
        raise _ClickFailure(Failure(exc.format_message(), where, exc.exit_code)) from None
    return int(code or 0)


def package_version() -> str:
    """The installed distribution's version; the source tree's when netsetup is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("netsetup")
    except PackageNotFoundError:
        from netsetup import __version__

        return __version__


def main(argv: list[str] | None = None, *, streams: Streams | None = None) -> None:
    """Run the CLI and exit with its status. Every error becomes one `error: <what> (<where>)`
    line on stderr, and with --json also a `netsetup.error/1` document on stdout."""
    args = sys.argv[1:] if argv is None else list(argv)
    if _asks_version(args):  # answered before Typer and the commands are imported
        out = streams.stdout if streams else sys.stdout
        out.write(f"netsetup {package_version()}\n")
        sys.exit(int(ExitCode.OK))
    signal.signal(signal.SIGINT, _on_sigint)
    _skip_exit_collection()
    try:
        if _options(args)[:1] == ["lab"]:  # the lab runs long and would pile up what it frees
            _main(args, streams)
        else:
            with _without_cycle_collector():
                _main(args, streams)
    except SystemExit as done:
        if argv is None:  # a process of its own, not a caller's (tests call main(argv))
            _leave_stray_threads(done)
        raise


def _leave_stray_threads(done: SystemExit) -> None:
    """A diagnose check cut off at its deadline may still run in its (daemon) thread. Python
    tears modules down under such a thread at exit, which can crash the process after its
    output (seen with the tunnel check: 1 run in 8, exit 139). Once everything is written and
    flushed, a process with such threads ends at once instead, with the same status."""
    import threading

    if not any(t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _skip_exit_collection() -> None:
    """At exit, the interpreter walks every object once more looking for reference cycles: 5 to
    10 ms after a provision, for memory the end of the process frees anyway. Nothing netsetup
    writes waits for it (files are closed and synced explicitly), and Python does not promise to
    run finalizers at exit either."""
    atexit.unregister(gc.disable)  # once, however often main() runs in one process (tests)
    atexit.register(gc.disable)


@contextlib.contextmanager
def _without_cycle_collector() -> Iterator[None]:
    """Run a command without Python's cyclic garbage collector.

    A command is one short process: what it makes (the modules it imports, the peers it reads)
    mostly lives until it exits and holds few reference cycles, and reference counting frees the
    rest at once. The collector would walk every one of those objects again and again for nothing:
    a provision on a cold index of 10,000 peers spent a fifth of its time there. Restored
    afterwards, for callers that run `main()` in their own process (tests)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Hand what the command made to the oldest generation without walking it (freeze, then
        # unfreeze): else the first collection after enable() walks all of it at once.
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _main(args: list[str], streams: Streams | None) -> None:
    _register(args)
    from netsetup.cli.app import Streams

    streams = streams or Streams.system()
    try:
        sys.exit(_run(args, streams))
    except _ClickFailure as exc:
        failure = exc.failure
    except Exception as exc:
        if os.environ.get("NETSETUP_DEBUG") == "1" and not isinstance(exc, NetsetupError):
            raise
        failure = _failure(exc)
        streams.stderr.write(failure.line + "\n")
    if _wants_json(args):
        streams.stdout.write(failure.as_json())
    sys.exit(failure.exit_code)
