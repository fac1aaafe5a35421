"""Exit codes and the exceptions the core raises; the CLI maps one to the other in one place."""

from __future__ import annotations

import enum
import errno
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1  # validate found problems, diagnose found failed checks
    USAGE = 2  # bad arguments or bad input files
    REMOTE = 3  # a remote apply failed and was rolled back
    ENVIRONMENT = 4  # the machine is in the way: disk full, permissions, a missing tool
    INTERNAL = 70  # a bug in netsetup (EX_SOFTWARE): the user should report it
    INTERRUPTED = 130


class NetsetupError(Exception):
    """Base of every error the core raises. The message never contains a secret."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message} ({self.where})" if self.where else self.message


class InputError(NetsetupError):
    """A file, profile or argument is wrong. `where` names the file and line when known."""

    @classmethod
    def at(cls, message: str, path: Path | str, line: int | None = None) -> InputError:
        where = f"{path}:{line}" if line else str(path)
        return cls(message, where=where)


class ProfileError(InputError):
    """A profile or peer file breaks the schema."""


class NotFoundError(InputError):
    """A profile, peer or file that was asked for does not exist."""


class ConflictError(InputError):
    """The change would clash with what exists (a name taken, no free address)."""


class RemoteError(NetsetupError):
    exit_code = ExitCode.REMOTE


class ChecksFailed(NetsetupError):
    """Something the user asked to be checked or brought up did not work (a lab teardown left
    an interface behind, a tunnel made no handshake). Exit 1, like failed diagnose checks."""

    exit_code = ExitCode.FINDINGS


class PermissionNeeded(NetsetupError):
    """The command needs privileges it does not have (the lab needs root)."""


# What to do about the OS errors people meet most; strerror alone says what, not what next.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "free some space and run again",
    errno.EACCES: "check the owner and mode of the path",
    errno.EPERM: "check the owner and mode of the path",
    errno.EROFS: "choose a writable path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder is in the way; give a file name",
}


def _is_program_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name


class EnvironmentProblem(NetsetupError):
    """The machine is in the way, not the input and not a bug: disk full, no permission, a
    read-only folder, a file where a folder should be, a missing tool. Exit 4."""

    exit_code = ExitCode.ENVIRONMENT

    @classmethod
    def from_os_error(cls, exc: OSError, *, where: Path | str | None = None) -> EnvironmentProblem:
        """`<what failed> (<path>)` from the error's strerror and file name only: its full text
        could carry whatever the failing call was given. `where` replaces the file name the
        OS reported (a temporary file's, say) with the one the user knows."""
        what = exc.strerror or type(exc).__name__
        what = what[:1].lower() + what[1:]
        hint = _OS_ERROR_HINTS.get(exc.errno or 0)
        if exc.errno == errno.ENOENT and _is_program_name(exc.filename):
            # what subprocess raises for a tool that is not installed
            what, hint = "program not found", "install it or put it on PATH"
        if hint:
            what = f"{what}: {hint}"
        if where is None:
            names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
            where = " -> ".join(names) or None
        return cls(what, where=str(where) if where is not None else None)


def one_line(text: str) -> str:
    """`text` with every character that is not printable (a line break, an escape sequence, a
    line separator) written as its Python escape: a file name holding one must not split a
    reported line in two (CI would read the second as its own) nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
