"""Whether the lab (or a test that makes network namespaces like it) can run here.

Without root, the programs or /dev/net/tun such a test skips, unless NETSETUP_REQUIRE_LAB=1 is
set: then a missing prerequisite fails the test instead (CI sets it, so nothing is skipped there
by accident). Used by tests/lab and by every other test marked `lab`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from netsetup.lab.proc import REQUIRED_PROGRAMS, missing_programs


def lab_required() -> bool:
    return os.environ.get("NETSETUP_REQUIRE_LAB") == "1"


def require_lab(programs: Iterable[str] | None = None) -> None:
    """Skip (or, with NETSETUP_REQUIRE_LAB=1, fail) when root, `programs` (default: every
    program the lab uses) or /dev/net/tun are missing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    wanted = set(REQUIRED_PROGRAMS if programs is None else programs)
    missing = [m for m in missing_programs() if m.split()[0] in wanted]
    missing += [p for p in sorted(wanted - set(REQUIRED_PROGRAMS)) if not _installed(p)]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if not Path("/dev/net/tun").exists():
        problems.append("no /dev/net/tun")
    if problems:
        reason = "the lab needs: " + "; ".join(problems)
        if lab_required():
            pytest.fail(f"NETSETUP_REQUIRE_LAB=1 but {reason}")
        pytest.skip(reason)


def _installed(program: str) -> bool:
    import shutil

    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(program, path=path) is not None
