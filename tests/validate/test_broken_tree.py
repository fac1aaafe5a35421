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
    """.ci/validate.sh adds runtime secrets to the tree, hence NS201 on top of the markers."""
    materialize(BROKEN, in_tmp / "profiles")
    leak = in_tmp / "profiles" / "clinic" / "peers" / "alice.conf"
    leak.write_text(f"[Interface]\nprivatekey = {runtime_secret()}\n")
    (in_tmp / "profiles" / "clinic" / ".handoff").mkdir()
    (in_tmp / "profiles" / "clinic" / ".handoff" / "private.key").write_text(runtime_secret())
    report = validate([Path("profiles")], now=NOW)
    expected = (FIXTURES / "broken-codes.txt").read_text().split()
    assert sorted({f.code for f in report.findings}) == expected
    secrets = [(f.path, f.line) for f in report.findings if f.code == "NS201"]
    assert secrets == [
        ("profiles/clinic/.handoff/private.key", 1),
        ("profiles/clinic/peers/alice.conf", 2),
    ]
    # NS114 (a warning since the calendar alone must not fail CI) is not what fails the tree
    errors = {f.code for f in report.findings if f.severity >= report.fail_on}
    assert report.failed and "NS114" not in errors
