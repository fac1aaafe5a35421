"""The broken tree .ci/validate.sh checks: every marked finding at its line, and nothing else."""

from __future__ import annotations

from pathlib import Path

from netsetup.validate import validate
from tests.validate.validate_support import (
    BROKEN,
    FIXTURES,
    NOW,
    located,
    markers,
    materialize,
    runtime_secret,
)


def test_broken_tree_findings_match_the_markers(in_tmp: Path) -> None:
    materialize(BROKEN, in_tmp / "profiles")
    report = validate([Path("profiles")], now=NOW)
    assert located(report) == markers(in_tmp / "profiles", "profiles")
    assert report.failed


def test_broken_codes_file_matches_what_ci_expects(in_tmp: Path) -> None:
    """.ci/validate.sh adds a runtime secret to the tree, hence NS201 on top of the markers."""
    materialize(BROKEN, in_tmp / "profiles")
    leak = in_tmp / "profiles" / "clinic" / "peers" / "alice.conf"
    leak.write_text(f"[Interface]\nprivatekey = {runtime_secret()}\n")
    report = validate([Path("profiles")], now=NOW)
    expected = (FIXTURES / "broken-codes.txt").read_text().split()
    assert sorted({f.code for f in report.findings}) == expected
