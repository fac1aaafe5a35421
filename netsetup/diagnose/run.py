"""One diagnose run, from the options to the report (the CLI only renders what this returns)."""

from __future__ import annotations

import platform
import socket
import time
from pathlib import Path

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.diagnose.clientconfig import ClientConfig, DiagnoseInfo
from netsetup.diagnose.context import DiagnoseContext, DiagnoseOptions
from netsetup.diagnose.engine import OnPhase, OnResult, plan_checks, run_checks
from netsetup.diagnose.result import DiagnoseReport
from netsetup.errors import InputError


def load_context(
    config_path: Path | None,
    profile_ref: Path | None,
    options: DiagnoseOptions,
    clock: Clock = SYSTEM_CLOCK,
) -> DiagnoseContext:
    """The config (given, or the active netsetup tunnel's), with the profile's facts in place of
    the config's comment lines when `profile_ref` is given."""
    if config_path is None:
        from netsetup.diagnose.discover import find_active_config

        config_path = find_active_config()
    config = ClientConfig.read(config_path)
    profile = None
    if profile_ref is not None:
        from netsetup.profile.store import load_profile

        profile = load_profile(profile_ref)
        config = config.with_info(_merged(DiagnoseInfo.from_profile(profile), config.info))
    if config.private_key is None and not config.peers:
        raise InputError("the WireGuard config has no [Peer] section", where=str(config_path))
    return DiagnoseContext(config, profile, options, clock)


def _merged(from_profile: DiagnoseInfo, from_config: DiagnoseInfo) -> DiagnoseInfo:
    """The profile wins; the config's unreadable lines are kept (tunnel.config shows them), and
    so is its responder key (per peer: the profile does not have it)."""
    from dataclasses import replace

    return replace(
        from_profile, problems=from_config.problems, responder_key=from_config.responder_key
    )


def diagnose(
    ctx: DiagnoseContext,
    on_result: OnResult = lambda r: None,
    on_phase: OnPhase = lambda phase: None,
) -> DiagnoseReport:
    """Run every planned check and return the report (interrupted=True after Ctrl-C).
    `on_phase(n)` is called as the VoIP (1) or load (2) phase begins (for the progress line)."""
    started = ctx.clock.now()
    began = time.monotonic()
    ctx.started_monotonic = began
    checks = plan_checks(ctx)
    if ctx.options.only and not checks:
        raise InputError(f"--only {','.join(ctx.options.only)} selects no check of this run")
    results, interrupted = run_checks(ctx, checks, on_result, on_phase)
    return DiagnoseReport(
        started=started,
        duration_s=time.monotonic() - began,
        checks=tuple(results),
        host=socket.gethostname(),
        platform=platform.platform(terse=True),
        config=ctx.config.name,
        profile_id=ctx.info.profile_id,
        interrupted=interrupted,
        company=ctx.info.company,
        contact=ctx.info.contact,
        phases=tuple(ctx.options.phases()),
    )
