"""NS000: a check that failed with an exception, which is a bug in netsetup, never bad input.

Validate reads whatever is under profiles/; no file may stop the run. If a check still raises, the
run goes on with the other checks and files, and this finding says where it happened. Only the
exception's type is shown: its text could carry what the check was reading, and that may be a key.
"""

from __future__ import annotations

from netsetup.validate.context import Context
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define

CHECK_FAILED = define(
    "NS000",
    "check-failed",
    Severity.ERROR,
    "A check of netsetup failed with an internal error on this file: a bug in netsetup, not a "
    "problem of the file as such.",
    "The other checks and files were still checked, but this one was not, so a real problem may "
    "hide behind it. Report it (rerun with NETSETUP_DEBUG=1 for the traceback); meanwhile the "
    "finding keeps CI from passing a profile that was not fully checked.",
    """
    # any input that makes a check raise, such as one found by the fuzz test
    """,
    """
    # the same input once the bug is fixed: no NS000
    """,
)


def report_check_failed(ctx: Context, path: str, what: str, exc: Exception) -> None:
    """Report a check that raised; NETSETUP_DEBUG=1 lets the exception through instead."""
    import os

    if os.environ.get("NETSETUP_DEBUG") == "1":
        raise exc
    ctx.report_at(
        path,
        1,
        1,
        CHECK_FAILED.code,
        f"internal error while {what} ({type(exc).__name__}): a bug in netsetup, please "
        "report it; rerun with NETSETUP_DEBUG=1 for a traceback",
    )
