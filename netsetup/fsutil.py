"""Atomic, permission-safe file writes and a per-directory lock.

Every file netsetup writes goes through `atomic_write`: a temporary file in the same directory,
fsync, rename, fsync of the directory. A crash at any moment leaves either the old or the new file,
never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from netsetup.errors import EnvironmentProblem, InputError

SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create `path` (and parents). A secret directory is forced to `mode` even if it existed."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if mode == SECRET_DIR_MODE:
        os.chmod(path, mode)
    return path


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; the file has `mode` from its first byte.

    durable=False skips the fsyncs (still atomic, but may roll back after a power loss): only
    for caches that can be rebuilt."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent
    # O_EXCL on a random name is what tempfile.mkstemp does, without importing tempfile/random
    tmp_name = str(directory / f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """A folder for secrets: created 0700 when missing; an existing one must already be private.

    An existing folder is never chmodded behind the user's back (`--out .` must not change the
    mode of their working directory); a folder others can enter is refused with the fix.
    """
    if not path.exists():
        ensure_dir(path, SECRET_DIR_MODE)
        return path
    if not path.is_dir():
        raise EnvironmentProblem("not a folder: a file is in the way", where=str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(
            f"the folder is open to other users (mode {mode:o}) and would hold a secret; "
            f"use a private folder (chmod 700) or a new path",
            where=str(path),
        )
    return path


def write_secret(path: Path, data: str | bytes) -> None:
    """Write a secret file (0600) inside a private (0700) folder."""
    private_dir(path.parent)
    atomic_write(path, data, mode=SECRET_FILE_MODE)


def append_line(path: Path, line: str, *, mode: int = 0o600) -> None:
    """Append one line with a single write(2) on an O_APPEND descriptor, then fsync.

    Lines shorter than PIPE_BUF-ish sizes from concurrent writers never interleave.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if needed) for the block.

    The kernel drops the lock when the process dies, so a SIGKILL never leaves a stale lock.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
