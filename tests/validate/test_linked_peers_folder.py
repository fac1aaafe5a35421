"""A `peers` folder that is a symbolic link (git commits links) is an error for validate as it is
for provision, which refuses to write through it: CI must not pass a profile the admin's next
command stops on, nor read peer files from wherever the link points."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from netsetup.validate import validate


def test_a_linked_peers_folder_is_a_finding(acme: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.toml").write_text('name = "x"\n')
    (acme / "peers").symlink_to(elsewhere)
    report = validate([acme], now=datetime(2026, 1, 1, tzinfo=UTC))
    where = [(f.path, f.message) for f in report.findings]
    assert [m for p, m in where if p.endswith("acme-dental/peers") and "symbolic link" in m], where
    assert not [p for p, _ in where if p.endswith("x.toml")], "read through the link"
