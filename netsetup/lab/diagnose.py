"""`netsetup diagnose` run inside the lab, on an assistant's machine (`home` by default)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.errors import InputError
from netsetup.lab.proc import Result

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab


def run_diagnose(
    lab: Lab,
    args: Sequence[str] = (),
    *,
    host: str = "home",
    config: Path | None = None,
    timeout: float = 120.0,
) -> Result:
    """Run `netsetup diagnose [args]` in `host`'s namespace against the client config of the
    assistant connected there (or `config`). Returns the finished process."""
    client = lab.record.clients.get(host)
    chosen = config or (Path(client.config) if client and client.config else None)
    if chosen is None:
        raise InputError(f"no assistant is connected on {host}: run `netsetup lab connect` first")
    argv = [sys.executable, "-m", "netsetup", "diagnose", "--config", str(chosen), *args]
    return lab.exec(host, argv, timeout=timeout)
