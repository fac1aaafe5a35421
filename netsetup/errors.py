"""Exit codes and the exceptions the core raises; the CLI maps one to the other in one place."""

from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1  # validate found problems, diagnose found failed checks
    USAGE = 2  # bad arguments or bad input files
    REMOTE = 3  # a remote apply failed and was rolled back
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


class PermissionNeeded(NetsetupError):
    """The command needs privileges it does not have (the lab needs root)."""
