"""WireGuard in the lab: userspace `wireguard-go` driven by the real `wg` and `wg-quick`.

wg-quick names the interface after the config file, and every interface's control socket lives in
the host-wide /var/run/wireguard, so each lab host gets a config file named after its own unique
interface (`<prefix>gw`; `<prefix>c0` for home, `<prefix>c<n>` for further client hosts); the
content is exactly what `netsetup` wrote.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from netsetup.lab.proc import LabError, ns_run, run

WG_RUN_DIR = Path("/var/run/wireguard")


def install_config(source: Path, directory: Path, interface: str) -> Path:
    """Copy a wg-quick config to `<directory>/<interface>.conf` (0600)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{interface}.conf"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(source.read_text())
    return target


def set_allowed_ips(config: Path, allowed: str) -> None:
    """Give every [Peer] of a wg-quick config exactly `allowed` as its AllowedIPs (what an
    assistant might do to "get more access"). The config is read as sections of `key = value`
    lines, as `wg` reads it (keys case-insensitive, a key may repeat and then adds up), so every
    spelling of the key is replaced; the [Interface] section and comments are kept."""
    config.write_text(with_allowed_ips(config.read_text(), allowed))


def with_allowed_ips(text: str, allowed: str) -> str:
    """`text` (a wg-quick config) with each [Peer]'s AllowedIPs replaced by `allowed` (one line,
    right under the section's header)."""
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip().lower()
            out.append(line)
            if section == "peer":
                out.append(f"AllowedIPs = {allowed}")
        elif section != "peer" or _key(stripped) != "allowedips":
            out.append(line)
    return "\n".join(out) + "\n"


def _key(line: str) -> str | None:
    """The key of a `key = value` line, lower-cased (None for comments and blank lines)."""
    if not line or line.startswith("#") or "=" not in line:
        return None
    return line.split("=", 1)[0].strip().lower()


def up(namespace: str, config: Path) -> None:
    ns_run(namespace, ["wg-quick", "up", str(config)], timeout=30)


def down(namespace: str, config: Path) -> None:
    ns_run(namespace, ["wg-quick", "down", str(config)], check=False, timeout=30)


def syncconf(namespace: str, interface: str, config: Path) -> None:
    """Apply a re-rendered config to a running interface without dropping live sessions."""
    stripped = ns_run(namespace, ["wg-quick", "strip", str(config)]).stdout
    plain = config.with_suffix(".stripped")
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(stripped)
    try:
        ns_run(namespace, ["wg", "syncconf", interface, str(plain)])
    finally:
        plain.unlink(missing_ok=True)


def set_private_key(namespace: str, interface: str, key_file: Path) -> None:
    ns_run(namespace, ["wg", "set", interface, "private-key", str(key_file)])


def latest_handshake(namespace: str, interface: str) -> int:
    """Unix time of the newest handshake on `interface` (0: none yet)."""
    result = ns_run(namespace, ["wg", "show", interface, "latest-handshakes"], check=False)
    if not result.ok:
        return 0
    times = [int(line.split()[-1]) for line in result.stdout.splitlines() if line.strip()]
    return max(times, default=0)


def wait_handshake(namespace: str, interface: str, timeout: float, after: int = 0) -> float | None:
    """Seconds until a handshake newer than `after` shows up, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if latest_handshake(namespace, interface) > after:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def interface_exists(namespace: str, interface: str) -> bool:
    return ns_run(namespace, ["ip", "link", "show", interface], check=False).ok


def remove_sockets(prefix: str) -> None:
    """Control sockets of the lab's interfaces that a killed wireguard-go left behind."""
    if not WG_RUN_DIR.is_dir():
        return
    for entry in WG_RUN_DIR.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith((".sock", ".name")):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def require_userspace() -> None:
    result = run(["wireguard-go", "--version"], check=False)
    if not result.ok:
        raise LabError("wireguard-go does not run: " + (result.stderr or result.stdout).strip())
