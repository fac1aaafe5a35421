"""Run every rule over the loaded tree and build the report."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

from netsetup.errors import NotFoundError
from netsetup.validate.context import Context, Tree, display
from netsetup.validate.findings import CheckedProfile, Finding, Report, Severity
from netsetup.validate.ignores import apply_ignores
from netsetup.validate.loader import load_tree
from netsetup.validate.registry import PROFILE_CHECKS, TREE_CHECKS, all_rules
from netsetup.validate.rules.internal import report_check_failed


def validate(
    paths: list[Path], *, now: datetime | None = None, fail_on: Severity = Severity.ERROR
) -> Report:
    """Check every profile under `paths`. Raises NotFoundError when there is no profile at all.

    `now` decides expiry and quarantine; pass it for reproducible results.
    """
    all_rules()  # make sure every rule module has registered its checks
    ctx = Context(now or datetime.now(UTC))
    # Validation makes many small objects and no cycles; the cyclic GC would rescan them all, again
    # and again, as the heap grows (a third of the time at 10,000 peers). Reference counting still
    # frees everything.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        findings, tree = _run(paths, ctx)
    finally:
        if was_enabled:
            gc.enable()
    return Report(
        findings=findings,
        profiles=[CheckedProfile(e.id, display(e.directory), len(e.peers)) for e in tree.profiles],
        files=tree.file_count(),
        fail_on=fail_on,
    )


def _run(paths: list[Path], ctx: Context) -> tuple[list[Finding], Tree]:
    tree = load_tree(paths, ctx)
    if not tree.profiles:
        names = ", ".join(display(p) for p in paths)
        raise NotFoundError("no profile found: no profile.toml anywhere under", where=names)
    for entry in tree.profiles:
        for profile_check in PROFILE_CHECKS:
            try:
                profile_check(entry, ctx)
            except Exception as exc:  # a bug: it costs this check on this profile, not the run
                report_check_failed(ctx, display(entry.file.path), _name(profile_check), exc)
    for tree_check in TREE_CHECKS:
        try:
            tree_check(tree, ctx)
        except Exception as exc:  # no single file to blame: the first profile carries it
            report_check_failed(ctx, display(tree.profiles[0].file.path), _name(tree_check), exc)
    texts = {display(path): text for path, text in tree.files()}
    return sorted(set(apply_ignores(ctx.findings, texts))), tree


def _name(check: object) -> str:
    module = getattr(check, "__module__", "").rpartition(".")[2]
    return f"running the check {module}.{getattr(check, '__name__', '?')}"
