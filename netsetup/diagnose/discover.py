"""Finding the active netsetup tunnel when the assistant gives no --config."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from netsetup.diagnose.clientconfig import ClientConfig, candidate_configs
from netsetup.errors import InputError


def search_folders() -> list[Path]:
    """Where an assistant's config usually is: the current folder, Downloads, Documents, home,
    netsetup's own folder, and /etc/wireguard (readable by root only, so often skipped)."""
    home = Path.home()
    folders = [Path.cwd(), home / "Downloads", home / "Documents", home, home / ".config/netsetup"]
    if sys.platform.startswith("linux"):
        folders.append(Path("/etc/wireguard"))
    elif sys.platform == "darwin":
        folders.append(Path("/usr/local/etc/wireguard"))
        folders.append(Path("/opt/homebrew/etc/wireguard"))
    extra = os.environ.get("NETSETUP_CONFIG_DIRS")
    if extra:
        folders = [Path(p) for p in extra.split(os.pathsep) if p] + folders
    seen: set[Path] = set()
    return [f for f in folders if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


def local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    import psutil

    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            try:
                found.add(ipaddress.ip_address(a.address.split("%", 1)[0]))
            except ValueError:
                continue
    return found


def find_active_config(folders: list[Path] | None = None) -> Path:
    """The one netsetup config whose tunnel address is on this machine now."""
    folders = folders or search_folders()
    candidates = candidate_configs(folders)
    present = local_addresses()
    active: list[Path] = []
    for path in candidates:
        try:
            config = ClientConfig.read(path)
            if any(a.ip in present for a in config.addresses):
                active.append(path)
        except (InputError, ValueError):  # not a config, or an Address that is not one
            continue
    if len(active) == 1:
        return active[0]
    if not active:
        found = ", ".join(str(p) for p in candidates) or "none"
        looked = ", ".join(str(f) for f in folders)
        raise InputError(
            "no active netsetup tunnel found on this machine (netsetup configs found: "
            f"{found}; looked for *.conf in {looked}). Start the tunnel in WireGuard, or name "
            "your config: netsetup diagnose --config FILE.conf"
        )
    names = ", ".join(str(p) for p in active)
    raise InputError(
        f"several netsetup tunnels are active ({names}): choose one with --config FILE.conf"
    )
