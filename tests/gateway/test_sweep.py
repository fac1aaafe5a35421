"""`netsetup sweep`: peers whose access ended longer than the grace period ago leave the profile
(their secrets too); their addresses stay held while the quarantine lasts. The clock is injected."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.gateway.render import render_gateway_config
from netsetup.gateway.sweep import find_sweepable, sweep
from netsetup.profile.store import load_peer, load_peers, load_profile, peer_names
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.provision.addresses import AddressIndex
from netsetup.state import StateDir
from netsetup.validate import Severity
from netsetup.validate import validate as run_validate
from tests.provision.support import changed, snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def at(days: float) -> FixedClock:
    return FixedClock(NOW + timedelta(days=days))


@pytest.fixture
def state(state_dir: Path) -> StateDir:
    return StateDir(state_dir)


def _people(acme: Path, state: StateDir) -> dict[str, str]:
    """anna (dedicated, stays), temp (agency, expires after 7 days), gone (revoked at day 1);
    their IPv4 addresses by name."""
    profile = load_profile(acme)
    made = {}
    for name, mode, expires in (
        ("anna", "dedicated", None),
        ("temp", "agency", "7d"),
        ("gone", "dedicated", None),
    ):
        result = service.provision(
            profile, PeerName(name), mode, state=state, expires=expires, clock=at(0)
        )
        made[name] = result.peer.address_v4
    service.revoke(profile, PeerName("gone"), state=state, clock=at(1))
    return made


def _clean(acme: Path, days: float) -> None:
    report = run_validate([acme], now=NOW + timedelta(days=days), fail_on=Severity.WARNING)
    assert report.findings == [], [str(f) for f in report.findings]


def test_nothing_before_the_grace_period_ends(acme: Path, state: StateDir) -> None:
    _people(acme, state)
    # temp expired at day 7, gone was revoked at day 1: at day 30, neither 30 days ago
    before = snapshot(acme, state.root)
    result = sweep(load_profile(acme), state=state, clock=at(30))
    assert result.swept == ()
    assert [
        p for p in changed(before, snapshot(acme, state.root)) if not p.endswith("pending")
    ] == []


def test_expired_and_revoked_removed_after_grace_and_quarantine(
    acme: Path, state: StateDir
) -> None:
    _people(acme, state)
    profile = load_profile(acme)
    pid = profile.id
    assert (
        state.psk_files(pid, PeerName("temp")) and state.client_dir(pid, PeerName("temp")).exists()
    )
    result = sweep(profile, state=state, clock=at(40))
    by_name = {s.name: s for s in result.swept}
    assert set(by_name) == {"temp", "gone"}
    assert by_name["temp"].state == "expired" and by_name["gone"].state == "revoked"
    assert all(s.outcome == "removed" for s in result.swept)  # quarantine (30 days) over too
    assert peer_names(profile) == ["anna"]
    assert list((acme / "peers").glob("*.toml")) == [acme / "peers" / "anna.toml"]
    assert not state.psk_files(pid, PeerName("temp"))
    assert not state.client_dir(pid, PeerName("temp")).exists()
    assert state.psk_files(pid, PeerName("anna"))  # the others keep theirs
    lines = [json.loads(line) for line in state.audit_path.read_text().splitlines()]
    swept = [line for line in lines if line["action"] == "sweep"]
    assert {line["peer"]: line["outcome"] for line in swept} == {
        "temp": "removed",
        "gone": "removed",
    }
    # the gateway still renders (anna only)
    config = render_gateway_config(profile, load_peers(profile), state, at(40).now())
    assert config.count("[Peer]") == 1
    _clean(acme, 40)


def test_within_quarantine_a_retired_record_keeps_the_address(acme: Path, state: StateDir) -> None:
    made = _people(acme, state)
    profile = load_profile(acme)
    # a short grace: at day 12, temp ended 5 days ago and gone 11: both swept, both still held
    result = sweep(profile, state=state, grace=timedelta(days=3), clock=at(12))
    assert {s.name: s.outcome for s in result.swept} == {"temp": "retired", "gone": "retired"}
    temp = next(s for s in result.swept if s.name == "temp")
    assert temp.held_until == NOW + timedelta(days=7 + 30)  # quarantine counts from the expiry
    assert peer_names(profile) == ["anna"]
    retired = sorted(p.name for p in (acme / "peers").glob("*.revoked-*.toml"))
    assert [name.split(".")[0] for name in retired] == ["gone", "temp"]
    assert not state.psk_files(profile.id, PeerName("temp"))
    # the addresses stay taken, the names are free
    taken_v4, _ = AddressIndex.load(profile).taken(at(12).now())
    assert {int(ipaddress.ip_address(made[n])) for n in ("temp", "gone")} <= taken_v4
    again = service.provision(profile, PeerName("temp"), "dedicated", state=state, clock=at(12))
    assert again.peer.address_v4 not in (made["temp"], made["gone"])
    _clean(acme, 12)
    # later, once quarantine and grace have passed, the retired records go as well
    later = sweep(profile, state=state, grace=timedelta(days=3), clock=at(45))
    assert {(s.name, s.state, s.outcome) for s in later.swept} == {
        ("temp", "retired", "removed"),
        ("gone", "retired", "removed"),
    }
    assert not list((acme / "peers").glob("*.revoked-*.toml"))
    assert sorted(peer_names(profile)) == ["anna", "temp"]


def test_dry_run_changes_nothing(acme: Path, state: StateDir) -> None:
    _people(acme, state)
    before = snapshot(acme, state.root)
    result = sweep(load_profile(acme), state=state, dry_run=True, clock=at(40))
    assert {s.name for s in result.swept} == {"temp", "gone"} and result.dry_run
    assert changed(before, snapshot(acme, state.root)) == []


def test_an_expired_peer_renewed_is_not_swept(acme: Path, state: StateDir) -> None:
    _people(acme, state)
    profile = load_profile(acme)
    service.renew(profile, PeerName("temp"), "90d", state=state, clock=at(20))
    assert [s.name for s in find_sweepable(profile, at(40).now())] == ["gone"]


def test_a_sweep_stopped_after_the_revoke_step_is_finished_next_time(
    acme: Path, state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netsetup.gateway import sweep as module

    _people(acme, state)
    profile = load_profile(acme)

    real = module.remove_file

    def broken(path: Path) -> bool:
        if path.name == "temp.toml":  # after temp's revoke step, before its file goes
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(module, "remove_file", broken)
    with pytest.raises(OSError):
        sweep(profile, state=state, clock=at(40))
    monkeypatch.undo()
    # gone is swept; temp got as far as its revoke: whole, and without secrets
    assert peer_names(profile) == ["anna", "temp"]
    assert load_peer(profile, PeerName("temp")).status == "revoked"
    assert not state.psk_files(profile.id, PeerName("temp"))
    done = sweep(profile, state=state, clock=at(40))
    assert [(s.name, s.state) for s in done.swept] == [("temp", "revoked")]
    assert peer_names(profile) == ["anna"]
    _clean(acme, 40)


def _run(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NETSETUP_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_cli(acme: Path, state: StateDir) -> None:
    # made in the past so that the real clock of the command sees them long ended
    profile = load_profile(acme)
    past = FixedClock(datetime.now(UTC) - timedelta(days=100))
    service.provision(profile, PeerName("old"), "agency", state=state, expires="7d", clock=past)
    service.provision(profile, PeerName("anna"), "dedicated", state=state, clock=past)
    listed = _run("sweep", str(acme), "--dry-run", "--json", state_dir=state.root)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["schema"] == "netsetup.sweep/1" and document["dry_run"] is True
    assert [p["name"] for p in document["swept"]] == ["old"]
    assert (acme / "peers" / "old.toml").exists()
    done = _run("sweep", str(acme), state_dir=state.root)
    assert done.returncode == 0, done.stderr
    assert "removed 1 peer(s)" in done.stdout and "- old (expired" in done.stdout
    assert not (acme / "peers" / "old.toml").exists()
    bad = _run("sweep", str(acme), "--grace", "soon", state_dir=state.root)
    assert (
        bad.returncode == 2 and "error: duration 'soon'" in bad.stderr and "(--grace)" in bad.stderr
    )
    both = _run("sweep", str(acme), "--apply", "--dry-run", state_dir=state.root)
    assert both.returncode == 2 and "exclude each other" in both.stderr
