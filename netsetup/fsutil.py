"""Atomic, permission-safe file writes and a per-directory lock.

Every file netsetup writes goes through `atomic_write`: a temporary file in the same directory,
fsync, rename, fsync of the directory. A crash at any moment leaves either the old or the new file,
never half of one.

Every change to the file system (a write, an append, a rename, a removal) passes one
`change_point()`. That is where the crash tests stop the process: with the environment variable
NETSETUP_TEST_CRASH_AT_CHANGE=N set, the Nth change point ends the process at once with
`os._exit(CRASH_EXIT_CODE)` (no cleanup, no `finally`: what SIGKILL or a power loss does), so a test
can stop a command before every single change in turn. The variable is read once at import; it is
for tests only and nothing else sets it. Unset, `change_point()` only counts.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from netsetup.errors import EnvironmentProblem, InputError

SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700

CRASH_ENV = "NETSETUP_TEST_CRASH_AT_CHANGE"  # for tests only: see the module docstring
CRASH_EXIT_CODE = 86


class _ChangeCounter:
    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.count = 0


def _crash_at() -> int:
    value = os.environ.get(CRASH_ENV, "")
    return int(value) if value.isdigit() else 0


_CHANGES = _ChangeCounter(_crash_at())


def change_point() -> None:
    """Called before every change to the file system (and once inside each atomic write)."""
    _CHANGES.count += 1
    if _CHANGES.count == _CHANGES.crash_at:
        os._exit(CRASH_EXIT_CODE)


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create `path` (and parents). A secret directory is forced to `mode` even if it existed."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if mode == SECRET_DIR_MODE:
        os.chmod(path, mode)
    return path


# O_CLOEXEC is POSIX; O_BINARY is Windows' (bytes as they are)
_WRITE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; the file has `mode` from its first byte.

    durable=False skips the fsyncs (still atomic, but may roll back after a power loss): only
    for caches that can be rebuilt."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    change_point()
    directory = path.parent
    # O_EXCL on a random name is what tempfile.mkstemp does, without importing tempfile/random
    tmp_name = str(directory / f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp_name, _WRITE_FLAGS, 0o600)
    try:
        if hasattr(os, "fchmod"):  # not on Windows (diagnose's reports are written there)
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        change_point()  # a crash here leaves the temp file behind, never a half-written `path`
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # a folder cannot be opened, nor synced, on Windows
        return
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
    change_point()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def rename(source: Path, target: Path) -> None:
    """Move `source` over `target` atomically (same folder or file system) and make it durable."""
    change_point()
    os.replace(source, target)
    fsync_dir(target.parent)


def remove_file(path: Path) -> bool:
    """Remove a file if it is there; True when one was removed."""
    if not os.path.lexists(path):
        return False
    change_point()
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it, if it is there."""
    import shutil

    if not os.path.lexists(path):
        return
    change_point()
    shutil.rmtree(path, ignore_errors=True)


def remove_empty_dir(path: Path) -> None:
    """Remove a folder only if it is empty (undoing a folder a failed command created)."""
    with contextlib.suppress(OSError):
        os.rmdir(path)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if needed) for the block.

    The kernel drops the lock when the process dies, so a SIGKILL never leaves a stale lock.
    """
    import fcntl  # POSIX only: the admin's side, never diagnose's on Windows

    # never through a link: O_CREAT would make its target
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
