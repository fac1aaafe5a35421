"""Reading and parsing one file for validate, so that no input can stop the whole run.

A file under profiles/ can be anything: a FIFO that would block `open()` forever, a symlink loop,
a directory called `alice.toml`, 10 MB of text, bytes that are not UTF-8, TOML nested deeper than
tomllib's recursion can go, an integer with more digits than Python converts. Each of these ends
here as a reason or a `SchemaIssue` with a line, which the loader reports as a finding on that
file; the other files are still checked.
"""

from __future__ import annotations

import errno
import os
import stat

from netsetup.profile.schema import SYNTAX, SchemaIssue, parse_toml

__all__ = ["MAX_TOML_BYTES", "Unreadable", "decode", "parse_toml", "read_regular"]

# A profile is a few kilobytes and a peer file a few hundred bytes: anything far larger is not one,
# and parsing it (tomllib is pure Python) would hold up the run for nothing.
MAX_TOML_BYTES = 1024 * 1024


class Unreadable(Exception):
    """A file that cannot be read as a regular file. The text names the reason, never content."""

    def __init__(self, reason: str, kind: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        # "special": not a regular file at all (a FIFO, a directory, a broken link);
        # "large": over the limit; "error": the system refused (permission denied, I/O error)
        self.kind = kind


# Windows has neither O_NONBLOCK nor O_CLOEXEC (diagnose reads the assistant's config there), and
# needs O_BINARY for bytes as they are.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def read_regular(path: os.PathLike[str] | str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `Unreadable` for anything else.

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the mode is
    checked on the open descriptor, so a file swapped for something else in between is caught too.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        gone = exc.errno in (errno.ENOENT, errno.ELOOP)
        raise Unreadable(_os_reason(exc, path), "special" if gone else "error") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"not a regular file but {_kind(info.st_mode)}", "special")
        if info.st_size > limit:
            raise Unreadable(_too_large(info.st_size, limit), "large")
        want = info.st_size + 1
        chunks = [os.read(fd, want)]
        size = len(chunks[0])
        while len(chunks[-1]) == want:  # a short read is the end of a regular file; this grew
            chunks.append(os.read(fd, 65536))
            size += len(chunks[-1])
            if size > limit:
                raise Unreadable(_too_large(size, limit), "large")
            want = 65536
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(_os_reason(exc, path)) from None
    finally:
        os.close(fd)


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes, more than the {limit:,} such a file may have"


def _os_reason(exc: OSError, path: os.PathLike[str] | str) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    if exc.errno == errno.ENOENT:
        # a file found in a listing that cannot be opened is a link to nothing; a path someone
        # named (diagnose --config) may simply not be there
        return "a broken symlink" if os.path.lexists(path) else "no such file"
    return (exc.strerror or type(exc).__name__).lower()


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def decode(raw: bytes) -> tuple[str, SchemaIssue | None]:
    """The text (bad bytes replaced, so the secret scan still reads the rest) and the issue."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        issue = SchemaIssue((), SYNTAX, f"not UTF-8 text (byte {exc.start})", line, column)
        return raw.decode("utf-8", errors="replace"), issue
