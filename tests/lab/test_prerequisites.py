"""Missing prerequisites are one clear error naming the Debian package, before `up` builds
anything; a failing `ss` is reported as such, not blamed on the first service."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from netsetup.lab import Lab, LabError, services
from netsetup.lab.proc import (
    REQUIRED_PROGRAMS,
    missing_programs,
    pid_alive,
    require_kamailio_tls,
    require_programs,
)

from .conftest import BRIGHTDESK, require_lab


def _path_without(tmp_path: Path, *left_out: str) -> str:
    """A directory with every program the lab needs except `left_out` (links to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for program in REQUIRED_PROGRAMS:
        real = shutil.which(program, path=system)
        if program not in left_out and real is not None:
            (bin_dir / program).symlink_to(real)
    return str(bin_dir)


def test_ss_and_sysctl_are_required_programs(tmp_path: Path) -> None:
    path = _path_without(tmp_path, "ss", "sysctl")
    assert missing_programs(path) == ["ss (iproute2)", "sysctl (procps)"]
    with pytest.raises(LabError, match=r"ss \(iproute2\), sysctl \(procps\)"):
        require_programs(path)


def test_kamailio_tls_module_is_checked(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="kamailio-tls-modules") as raised:
        require_kamailio_tls([tmp_path])
    assert str(tmp_path) in str(raised.value)
    (tmp_path / "tls.so").write_bytes(b"")
    require_kamailio_tls([tmp_path])


def test_a_tls_profile_checks_the_module_before_up() -> None:
    require_lab()
    Lab.create(BRIGHTDESK).check_prerequisites()  # installed here (see .ci/lab-setup.sh)


def test_a_failing_ss_is_reported_at_once(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no `ss` to run, starting a service says so at once (instead of waiting 10 s and
    blaming the service), and the service it started is stopped again."""
    monkeypatch.setenv("PATH", _path_without(tmp_path, "ss"))
    service = services.Service(
        "waiter",
        lab.ns("office"),
        [sys.executable, "-c", "import time; time.sleep(30)"],
        str(tmp_path / "waiter.log"),
        listens=["tcp:192.0.2.31:2222"],
    )
    started = time.monotonic()
    with pytest.raises(LabError, match=r"`ss` \(package iproute2\)"):
        services.start(service)
    assert time.monotonic() - started < 5
    assert not pid_alive(service.pid)
