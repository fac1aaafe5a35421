"""Engine phases (issue 9): connectivity under --deadline, VoIP with its own budget on top, and
the checks that load the link alone, after everything else, one exclusive check at a time."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import (
    LOAD_BUDGET_S,
    LOAD_LONG_BUDGET_S,
    VOIP_BUDGET_S,
    VOIP_LONG_BUDGET_S,
    CheckContext,
    DiagnoseContext,
    DiagnoseOptions,
)
from netsetup.diagnose.engine import NO_LOAD, Check, run_checks
from netsetup.diagnose.result import Outcome, Status

CONFIG = """[Interface]
Address = 198.18.10.2/32
[Peer]
PublicKey = MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=
Endpoint = 192.0.2.1:51820
AllowedIPs = 192.0.2.0/24
"""


def context(**options: object) -> DiagnoseContext:
    config = ClientConfig.parse(CONFIG, Path("wg-test.conf"))
    return DiagnoseContext(config, options=DiagnoseOptions(**options))  # type: ignore[arg-type]


class Recorder:
    """Who ran when: every check's start and end, and how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float]] = {}
        self.deadlines: dict[str, float] = {}


class Timed(Check):
    def __init__(
        self,
        check_id: str,
        recorder: Recorder,
        *,
        sleep: float = 0.0,
        phase: int = 0,
        exclusive: bool = False,
        budget: float = 30.0,
        long_budget: float | None = None,
        needs: tuple[str, ...] = (),
    ) -> None:
        self.id = check_id
        self.title = check_id
        self.recorder = recorder
        self.sleep = sleep
        self.phase = phase
        self.exclusive = exclusive
        self.budget_s = budget
        self.long_budget_s = long_budget
        self.needs = needs
        self.release = threading.Event()

    def run(self, ctx: CheckContext) -> Outcome:
        started = time.monotonic()
        with self.recorder.lock:
            self.recorder.deadlines[self.id] = ctx.deadline - started
        self.release.wait(self.sleep)
        with self.recorder.lock:
            self.recorder.spans[self.id] = (started, time.monotonic())
        return Outcome.passed("fine")


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_load_checks_start_after_every_other_check_ended_and_exclusive_ones_run_alone() -> None:
    rec = Recorder()
    checks = [
        Timed("speed.tunnel", rec, sleep=0.3, phase=2, exclusive=True),  # listed first
        Timed("reach.a", rec, sleep=0.4),
        Timed("voice.quality", rec, sleep=0.6, phase=1),
        Timed("bufferbloat", rec, sleep=0.3, phase=2, exclusive=True),
    ]
    results, interrupted = run_checks(context(deadline_s=5.0), checks)
    assert not interrupted
    assert [r.status for r in results] == [Status.passed] * 4
    spans = rec.spans
    others_end = max(spans["reach.a"][1], spans["voice.quality"][1])
    assert spans["speed.tunnel"][0] >= others_end
    assert spans["bufferbloat"][0] >= others_end
    assert not overlap(spans["speed.tunnel"], spans["bufferbloat"])
    # phases 0 and 1 still run side by side
    assert overlap(spans["reach.a"], spans["voice.quality"])


def test_non_exclusive_load_checks_share_the_phase_but_never_with_an_exclusive_one() -> None:
    rec = Recorder()
    checks = [
        Timed("a", rec, sleep=0.3, phase=2),
        Timed("b", rec, sleep=0.3, phase=2),
        Timed("x", rec, sleep=0.3, phase=2, exclusive=True),
    ]
    run_checks(context(), checks)
    assert overlap(rec.spans["a"], rec.spans["b"])
    assert not overlap(rec.spans["x"], rec.spans["a"])
    assert not overlap(rec.spans["x"], rec.spans["b"])


def test_voip_checks_get_their_budget_on_top_of_the_connectivity_deadline() -> None:
    rec = Recorder()
    voip = Timed("voice.quality", rec, sleep=1.4, phase=1)
    slow0 = Timed("reach.slow", rec, sleep=5.0)
    results, _ = run_checks(context(deadline_s=1.0, voip_budget_s=1.5), [slow0, voip])
    by_id = {r.id: r for r in results}
    slow0.release.set()
    # phase 0 ends at --deadline (1 s); the VoIP check runs 1.4 s and passes (1 + 1.5 allowed)
    assert by_id["reach.slow"].status is Status.unknown
    assert "the run allows (1 s)" in by_id["reach.slow"].outcome.summary
    assert by_id["voice.quality"].status is Status.passed


def test_a_voip_check_past_its_phase_budget_names_the_voip_budget() -> None:
    rec = Recorder()
    voip = Timed("voice.quality", rec, sleep=5.0, phase=1)
    results, _ = run_checks(context(deadline_s=0.3, voip_budget_s=0.4), [voip])
    voip.release.set()
    outcome = results[0].outcome
    assert outcome.status is Status.unknown
    assert "the VoIP checks allows (0.4 s)" in outcome.summary
    assert results[0].duration_s == pytest.approx(0.7, abs=0.35)


def test_the_load_phase_has_its_own_budget_from_when_it_begins() -> None:
    rec = Recorder()
    first = Timed("reach.a", rec, sleep=0.5)
    load = Timed("speed.tunnel", rec, sleep=5.0, phase=2, exclusive=True)
    after = Timed("bufferbloat", rec, sleep=0.0, phase=2, exclusive=True)
    results, _ = run_checks(context(deadline_s=2.0, load_budget_s=0.6), [first, load, after])
    load.release.set()
    by_id = {r.id: r for r in results}
    assert by_id["reach.a"].status is Status.passed
    assert by_id["speed.tunnel"].status is Status.unknown
    assert "the speed checks allows (0.6 s)" in by_id["speed.tunnel"].outcome.summary
    # the load phase was used up: the next exclusive check does not start
    assert by_id["bufferbloat"].status is Status.unknown
    assert "bufferbloat" not in rec.spans


def test_no_load_skips_the_load_phase_and_says_why() -> None:
    rec = Recorder()
    checks = [Timed("reach.a", rec), Timed("speed.tunnel", rec, phase=2, exclusive=True)]
    results, _ = run_checks(context(load=False), checks)
    assert results[0].status is Status.passed
    assert results[1].status is Status.skip
    assert results[1].outcome.summary == NO_LOAD
    assert "speed.tunnel" not in rec.spans


def test_a_check_gets_its_long_budget_with_long() -> None:
    rec = Recorder()
    check = Timed("nat", rec, phase=1, budget=2.0, long_budget=100.0)
    run_checks(context(long=True, voip_budget_s=300.0), [check])
    assert rec.deadlines["nat"] == pytest.approx(100.0, abs=1.0)
    rec2 = Recorder()
    run_checks(context(voip_budget_s=300.0), [Timed("nat", rec2, phase=1, budget=2.0)])
    assert rec2.deadlines["nat"] == pytest.approx(2.0, abs=0.5)


def test_on_phase_is_called_once_per_later_phase_in_order() -> None:
    rec = Recorder()
    seen: list[int] = []
    checks = [
        Timed("reach.a", rec),
        Timed("voice.quality", rec, phase=1),
        Timed("speed.tunnel", rec, phase=2, exclusive=True),
        Timed("bufferbloat", rec, phase=2, exclusive=True),
    ]
    run_checks(context(), checks, on_phase=seen.append)
    assert seen == [1, 2]


def test_phase_budgets_default_long_and_internet_speed() -> None:
    offline = DiagnoseOptions(deadline_s=7.0, offline=True)
    assert offline.phase_budget(0) == 7.0
    assert offline.phase_budget(1) == VOIP_BUDGET_S
    assert offline.phase_budget(2) == LOAD_BUDGET_S
    assert DiagnoseOptions(long=True).phase_budget(1) == VOIP_LONG_BUDGET_S
    online = DiagnoseOptions(offline=False)
    assert online.runs_internet_speed
    assert online.phase_budget(2) > LOAD_BUDGET_S
    assert not DiagnoseOptions(offline=False, internet_speed=False).runs_internet_speed


def test_the_suite_is_offline() -> None:
    """tests/conftest.py sets NETSETUP_OFFLINE=1: options made anywhere in a test are offline."""
    assert DiagnoseOptions().offline
    assert not DiagnoseOptions().runs_internet_speed


def test_the_json_envelope_names_each_phase_and_its_budget(tmp_path: Path) -> None:
    from netsetup.diagnose.report.json import render_json
    from netsetup.diagnose.run import diagnose

    ctx = context(deadline_s=3.0, only=("tunnel.config",), long=True)
    report = diagnose(ctx)
    envelope = json.loads(render_json(report))
    assert envelope["phases"] == [
        {"phase": 0, "name": "connectivity", "budget_s": 3.0},
        {"phase": 1, "name": "voip", "budget_s": VOIP_LONG_BUDGET_S},
        {"phase": 2, "name": "load", "budget_s": LOAD_LONG_BUDGET_S},
    ]


def test_the_cli_options_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--long, --no-load and --no-internet-speed on the command line: the envelope's budgets and
    the load checks' skips show they arrived."""
    from netsetup.keys import generate_keypair
    from tests.cli.support import run_main

    config = tmp_path / "wg-test.conf"
    config.write_text(
        CONFIG.replace(
            "[Interface]", f"[Interface]\nPrivateKey = {generate_keypair().private.reveal()}"
        )
    )
    config.chmod(0o600)
    argv = [
        "diagnose",
        "--config",
        str(config),
        "--json",
        "--only",
        "tunnel.config,speed,bufferbloat",
    ]
    _, out, _ = run_main([*argv, "--long", "--no-load", "--no-internet-speed"], capsys)
    envelope = json.loads(out)
    budgets = {p["name"]: p["budget_s"] for p in envelope["phases"]}
    assert budgets["voip"] == VOIP_LONG_BUDGET_S
    statuses = {c["id"]: (c["status"], c["summary"]) for c in envelope["checks"]}
    for load_check in ("speed.internet", "speed.tunnel", "bufferbloat"):
        assert statuses[load_check] == ("skip", NO_LOAD), load_check
    _, out, _ = run_main(argv, capsys)
    statuses = {c["id"]: c["summary"] for c in json.loads(out)["checks"]}
    assert "off in this environment" in statuses["speed.internet"]


def test_help_names_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli.support import run_main

    code, out, _ = run_main(["diagnose", "--help"], capsys)
    assert code == 0
    for option in ("--long", "--no-internet-speed", "--no-load"):
        assert option in out
    assert "netsetup diagnose --long --no-internet-speed" in " ".join(out.split())


class SharedMeasurement(Check):
    """Two VoIP checks share one measurement through ctx.once (as voice.quality and lan.gateway
    do); it outlasts the connectivity deadline."""

    def __init__(self, check_id: str, seconds: float) -> None:
        self.id = check_id
        self.title = check_id
        self.phase = 1
        self.budget_s = 10.0
        self.seconds = seconds

    def run(self, ctx: CheckContext) -> Outcome:
        value = ctx.once("measurement", lambda: time.sleep(self.seconds) or 42)
        return Outcome.passed(f"got {value}")


def test_a_voip_check_waits_for_a_shared_measurement_past_the_connectivity_deadline() -> None:
    checks = [SharedMeasurement("voice.quality", 1.0), SharedMeasurement("lan.gateway", 1.0)]
    results, _ = run_checks(context(deadline_s=0.3, voip_budget_s=5.0), checks)
    assert [(r.status, r.outcome.summary) for r in results] == [(Status.passed, "got 42")] * 2
