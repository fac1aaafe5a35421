"""Shared by the provisioning tests: snapshots of whole folder trees, the CLI in a process."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

Snapshot = dict[str, tuple[str, int, str]]


def snapshot(*roots: Path) -> Snapshot:
    """Every folder, file and link under `roots`: kind, mode and the hash of its content."""
    out: Snapshot = {}
    for root in roots:
        if not root.exists():
            continue
        for path in [root, *sorted(root.rglob("*"))]:
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if path.is_symlink():
                out[str(path)] = ("link", mode, os.readlink(path))
            elif path.is_dir():
                out[str(path)] = ("dir", mode, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path)] = ("file", mode, digest)
    return out


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, for an assertion message."""
    keys = sorted(set(before) | set(after))
    return [key for key in keys if before.get(key) != after.get(key)]


def netsetup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def audit_lines(state_dir: Path) -> list[str]:
    path = state_dir / "audit.jsonl"
    return path.read_text().splitlines() if path.exists() else []
