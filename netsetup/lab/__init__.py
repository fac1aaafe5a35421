"""The netsetup lab: a throw-away company network on one Linux machine.

Network namespaces joined by veth pairs (internet, gateway, office, the assistant's home router and
home), real WireGuard through wireguard-go with `wg`/`wg-quick`, Kamailio, OpenSSH and dnsmasq
in the office, faults injected with nftables. Nothing here imports Typer: `netsetup.cli.lab` is
the shell.
"""

from __future__ import annotations

from netsetup.lab.lab import Lab
from netsetup.lab.proc import LabError

__all__ = ["Lab", "LabError"]
