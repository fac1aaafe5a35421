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
import re
import stat
import tomllib
from typing import Any

from netsetup.profile.schema import SYNTAX, SchemaIssue

# A profile is a few kilobytes and a peer file a few hundred bytes: anything far larger is not one,
# and parsing it (tomllib is pure Python) would hold up the run for nothing.
MAX_TOML_BYTES = 1024 * 1024

_BOM = "\ufeff"


class Unreadable(Exception):
    """A file that cannot be read as a regular file. The text names the reason, never content."""

    def __init__(self, reason: str, kind: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        # "special": not a regular file at all (a FIFO, a directory, a broken link);
        # "large": over the limit; "error": the system refused (permission denied, I/O error)
        self.kind = kind


def read_regular(path: os.PathLike[str] | str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `Unreadable` for anything else.

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the mode is
    checked on the open descriptor, so a file swapped for something else in between is caught too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        gone = exc.errno in (errno.ENOENT, errno.ELOOP)
        raise Unreadable(_os_reason(exc), "special" if gone else "error") from None
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
        raise Unreadable(_os_reason(exc)) from None
    finally:
        os.close(fd)


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes, more than the {limit:,} such a file may have"


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    if exc.errno == errno.ENOENT:
        return "a broken symlink"
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


def parse_toml(text: str) -> tuple[dict[str, Any] | None, SchemaIssue | None]:
    """tomllib's data, or None and the issue that words why not, with its line."""
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        if text.startswith(_BOM):
            return None, _issue(
                "the file starts with a byte order mark (BOM), which TOML does not allow: "
                "save it as UTF-8 without BOM",
                (1, 1),
            )
        message = str(exc)
        match = re.search(r"at line (\d+), column (\d+)", message)
        where = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
        return None, _issue(f"TOML syntax error: {message.split(' (at ')[0]}", where)
    except RecursionError:
        return None, _issue(
            "TOML syntax error: arrays or inline tables nested too deeply to read",
            _deepest(text),
        )
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        return None, _issue("TOML syntax error: a number with too many digits", _long_number(text))


def _issue(message: str, where: tuple[int, int]) -> SchemaIssue:
    return SchemaIssue((), SYNTAX, message, where[0], where[1])


def _position(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


# Strings and comments first, so that brackets inside them do not count.
_TOKENS = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]'
)
_DEEP = 64  # far deeper than any profile needs, far shallower than where tomllib gives up


def _deepest(text: str) -> tuple[int, int]:
    """Where the nesting first goes deeper than any profile would (the bracket that does it)."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > _DEEP:
                return _position(text, match.start())
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
    return 1, 1


def _long_number(text: str) -> tuple[int, int]:
    match = re.search(r"[0-9][0-9_]{1000,}", text)
    return _position(text, match.start()) if match else (1, 1)
