"""The lifecycle takes its time from the clock it is given, never from the system's.

`rotate` used to ask the system for the time to decide whether a peer had expired, so the tests
that rotate an agency peer made "now" (30 days of expiry) started failing 30 days after they were
written. CI also runs this whole folder under `faketime -f '+365d'` (see .ci/run).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock, SystemClock
from netsetup.errors import ConflictError
from netsetup.profile.store import load_peer, load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir

LONG_AGO = datetime(2020, 3, 1, 9, 0, tzinfo=UTC)  # its expiries are long past in real time
FAR_AHEAD = datetime(2041, 6, 1, 9, 0, tzinfo=UTC)  # not there yet, in any real time
A = PeerName("temp")


@pytest.mark.parametrize("moment", [LONG_AGO, FAR_AHEAD])
def test_the_whole_lifecycle_runs_on_the_injected_clock(
    acme: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, moment: datetime
) -> None:
    def no_system_time(self: SystemClock) -> datetime:
        raise AssertionError("the system clock was read although a clock was given")

    monkeypatch.setattr(SystemClock, "now", no_system_time)
    profile = load_profile(acme)
    state = StateDir()
    clock = FixedClock(moment)
    made = service.provision(profile, A, "agency", state=state, clock=clock)
    assert made.peer.expires == (moment + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.advance(timedelta(days=29))
    service.rotate(profile, A, state=state, clock=clock)  # not expired yet, at this clock
    assert load_peer(profile, A).rotated == clock.now()
    clock.advance(timedelta(days=2))
    with pytest.raises(ConflictError, match="has expired"):
        service.rotate(profile, A, state=state, clock=clock)  # expired, at this clock
    service.renew(profile, A, "7d", state=state, clock=clock)
    service.rotate(profile, A, state=state, clock=clock)
    service.revoke(profile, A, state=state, clock=clock)
    times = [json.loads(line)["time"] for line in state.audit_path.read_text().splitlines()]
    assert [t[:4] for t in times] == [str(moment.year)] * len(times)
    # the name's quarantine is counted from the revoke, on the same clock
    with pytest.raises(ConflictError, match="quarantine"):
        service.provision(profile, A, "agency", state=state, clock=clock)
    clock.advance(timedelta(days=31))
    service.provision(profile, A, "agency", state=state, clock=clock)


def test_the_default_is_the_system_clock(acme: Path, state_dir: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = service.provision(load_profile(acme), A, "agency", state=StateDir())
    created = load_peer(load_profile(acme), A).created
    assert before <= created <= datetime.now(UTC)
    assert result.peer.created.startswith(str(before.year))
