"""Checks of the `tunnel` family (to be written)."""

from __future__ import annotations

from collections.abc import Iterable

from netsetup.diagnose.context import DiagnoseContext
from netsetup.diagnose.engine import Check, register_family


@register_family("tunnel")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return ()
