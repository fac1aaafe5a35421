"""The netsetup lab: a throw-away company network on one Linux machine.

Network namespaces joined by veth pairs (internet, gateway, office, the assistant's home router and
home), real WireGuard through wireguard-go with `wg`/`wg-quick`, Kamailio, OpenSSH and dnsmasq
in the office, faults injected with nftables. Nothing here imports Typer: `netsetup.cli.lab` is
the shell.

`Lab` is imported on first use: the CLI reads the fault registry (`netsetup.lab.faults`) for its
help without paying for the whole lab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netsetup.lab.proc import LabError

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

__all__ = ["Lab", "LabError"]


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from netsetup.lab.lab import Lab

        return Lab
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
