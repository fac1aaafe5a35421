"""A retired record (`maria.revoked-<tag>.toml`, the old peer moved aside by `provision
--reuse-name`) only holds its address in quarantine: `list` and `render` never show it. One that
says status = "active" (hand-made, or a hand edit) would hold its address for ever, seen by
nothing: validate says so at its status line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir
from netsetup.validate import validate


def test_a_retired_record_must_be_revoked(acme: Path, state_dir: Path) -> None:
    service.provision(load_profile(acme), PeerName("maria"), "dedicated", state=StateDir())
    text = (acme / "peers" / "maria.toml").read_text()
    text = text.replace("198.18.10.2", "198.18.10.77").replace("10::2", "10::77")
    key = text.split('public_key = "')[1].split('"')[0]
    text = text.replace(key, "K9gGyX8OAK8aH8Myj6djqSaXI8jbj6xPk69x2xhtbpA=")
    retired = acme / "peers" / "maria.revoked-0123456789abcdef.toml"
    retired.write_text(text)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    found = [(f.path, f.line, f.code) for f in validate([acme], now=now).findings]
    status_line = 1 + text.splitlines().index('status = "active"')
    assert (str(retired), status_line, "NS009") in [
        (str(Path(p).resolve()), ln, c) for p, ln, c in found
    ], found
    retired.write_text(
        text.replace('status = "active"', 'status = "revoked"\nrevoked = 2026-12-01T00:00:00Z')
    )
    assert [f for f in validate([acme], now=now).findings if "revoked-" in f.path] == []
