"""`netsetup diagnose`: a thin shell over `netsetup.diagnose` (the assistant's command)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netsetup.cli.app import app, streams_of
from netsetup.errors import ExitCode, InputError

if TYPE_CHECKING:
    from netsetup.cli.app import Streams
    from netsetup.diagnose.context import DiagnoseContext
    from netsetup.diagnose.privacy import Redactor
    from netsetup.diagnose.report.text import Terminal
    from netsetup.diagnose.result import DiagnoseReport


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
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write report.html, report.md and report.json into this folder (made if "
            "needed), to send to your company's IT.",
        ),
    ] = None,
    include_public_ip: Annotated[
        bool,
        typer.Option(
            "--include-public-ip",
            help="Show public IP addresses (yours, the gateway's) instead of hiding them.",
        ),
    ] = False,
    long: Annotated[
        bool,
        typer.Option(
            "--long",
            help="Measure longer for exact figures: about 1,100 call-quality probes and how "
            "long your router keeps a connection open (up to 3 minutes more).",
        ),
    ] = False,
    no_internet_speed: Annotated[
        bool,
        typer.Option(
            "--no-internet-speed",
            help="Skip the public internet speed test (speedtest.net).",
        ),
    ] = False,
    no_load: Annotated[
        bool,
        typer.Option(
            "--no-load",
            help="Skip the checks that fill your connection for a few seconds (the speed "
            "tests and the bufferbloat test), e.g. while someone is on a call.",
        ),
    ] = False,
) -> None:
    """Check your connection to the company and say what is wrong, how to fix it, who must act.

    The answer comes in plain words: the verdict first, then each problem with its fix and who
    must act (you, your company's IT, or your internet provider). No key and (unless
    --include-public-ip) no public IP address appears in the output or the reports.

    Exit status: 0 nothing failed, 1 a check failed, 2 bad input, 4 this computer is in the way
    (a report folder that cannot be written), 70 a bug in netsetup (report it), 130 interrupted
    (Ctrl-C: what was found is still shown and written).

    The checks run in three steps: the connection (at most --deadline seconds), then phone
    calls (a few seconds more; --long: up to about 3 minutes more), then the speed tests, one
    at a time because they fill the connection (about 30 seconds; --no-load skips them).

    Examples:

        netsetup diagnose --config wg-acme.conf --report diagnose-report

        netsetup diagnose --long --no-internet-speed
    """
    from netsetup.diagnose.context import DiagnoseOptions
    from netsetup.diagnose.privacy import Redactor
    from netsetup.diagnose.run import load_context

    if not 0 < deadline <= 600:
        raise InputError(f"--deadline must be between 0 and 600 seconds, not {deadline:g}")
    if report is not None:
        from netsetup.diagnose.report import check_report_folder

        check_report_folder(report)
    streams = streams_of(ctx)
    wanted = tuple(item.strip() for item in (only or "").split(",") if item.strip())
    options = DiagnoseOptions(
        deadline_s=deadline,
        only=wanted,
        include_public_ip=include_public_ip,
        long=long,
        internet_speed=not no_internet_speed,
        load=not no_load,
    )
    run = load_context(config, profile, options)
    redactor = Redactor.for_config(run.config, include_public_ip)
    with _CtrlC() as ctrl_c:
        result = _run(run, redactor, None if as_json else _terminal(streams), ctrl_c)
        _output(result, streams, as_json, report)
    if result.interrupted or ctrl_c.caught:
        raise typer.Exit(ExitCode.INTERRUPTED)
    from netsetup.diagnose.result import Status

    if result.verdict is Status.fail:
        raise typer.Exit(ExitCode.FINDINGS)


def _terminal(streams: Streams) -> Terminal:
    from netsetup.diagnose.report.text import Terminal

    return Terminal(streams.stdout, streams.stdout_is_terminal)


def _run(
    run: DiagnoseContext, redactor: Redactor, terminal: Terminal | None, ctrl_c: _CtrlC
) -> DiagnoseReport:
    """The checks, each one's line shown as it ends (redacted like the rest); the report."""
    from netsetup.diagnose.explain import check_view
    from netsetup.diagnose.result import CheckResult
    from netsetup.diagnose.run import diagnose as run_diagnose

    if terminal is None:
        found = run_diagnose(run)
        ctrl_c.deferring = True
        return redactor.report(found)

    def show(result: CheckResult) -> None:
        terminal.check(check_view(redactor.result(result), run.info.contact))

    with terminal.progress(_phase_line(run, 0)) as status:
        found = run_diagnose(run, show, lambda phase: status(_phase_line(run, phase)))
        ctrl_c.deferring = True
    return redactor.report(found)


PHASE_LINES = {
    0: "Checking your connection (at most {budget:g} s) ...",
    1: "Measuring call quality (up to {budget:g} s more) ...",
    2: "Testing speed: your connection is busy for up to {budget:g} s ...",
}


def _phase_line(run: DiagnoseContext, phase: int) -> str:
    return PHASE_LINES[phase].format(budget=run.options.phase_budget(phase))


def _output(result: DiagnoseReport, streams: Streams, as_json: bool, folder: Path | None) -> None:
    from netsetup.diagnose.privacy import scrub_keys

    written = None
    if folder is not None:
        from netsetup.diagnose.report import write_reports

        written = write_reports(result, folder)
    if as_json:
        from netsetup.diagnose.report.json import render_json

        streams.stdout.write(scrub_keys(render_json(result)))
        return
    from netsetup.diagnose.explain import report_view
    from netsetup.diagnose.report.phone import phone_calls

    _terminal(streams).summary(
        report_view(result), written.html if written else None, phone_calls(result)
    )


class _CtrlC:
    """Ctrl-C while the checks run ends the run (the engine keeps what finished and marks the
    rest unknown); once the output and reports are being written, it is only noted, and the
    command exits 130 when they are complete: what was found is never lost half-way."""

    def __init__(self) -> None:
        self.deferring = False
        self.caught = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: object) -> None:
        if self.deferring:
            self.caught = True
            return
        from netsetup.cli import Interrupted

        raise Interrupted("interrupted")

    def __enter__(self) -> _CtrlC:
        import signal

        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread (an embedding caller): nothing to change
            return self
        self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._installed:
            signal.signal(signal.SIGINT, self._previous or signal.SIG_DFL)
