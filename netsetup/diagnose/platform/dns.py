"""Which DNS servers the system sends a company's names to, as far as the system shows it.

- Linux and macOS: /etc/resolv.conf (nameservers and search domains). systemd-resolved's stub
  (127.0.0.53) hides its per-link routing from the file: then the policy says it cannot be read.
- macOS also routes a domain to its own servers with /etc/resolver/<domain> files (read here);
  `scutil --dns` shows the merged view and is read when present.
- Windows: the Name Resolution Policy Table (NRPT) from `Get-DnsClientNrptPolicy` (PowerShell).
  Without an NRPT entry Windows asks the DNS servers of every adapter, the home router's too.

`missing_rule(...)` names the setting that would send the company's domain to the tunnel's DNS
on this platform (what the `dns` check's warning tells IT to add).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESOLV_CONF = Path("/etc/resolv.conf")
MACOS_RESOLVER_DIR = Path("/etc/resolver")
SYSTEMD_STUB = "127.0.0.53"


@dataclass(frozen=True)
class DnsPolicy:
    """The system's DNS policy. `readable` False: `note` says why nothing more is known."""

    readable: bool
    source: str  # where it was read ("/etc/resolv.conf", "NRPT", ...)
    servers: tuple[str, ...] = ()  # the servers every name goes to (in order)
    search: tuple[str, ...] = ()
    # domain (without dots around it) -> the servers names under it go to
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""

    def servers_for(self, name: str) -> tuple[str, ...]:
        """The servers a name goes to: the longest routed domain it is under, else the default."""
        name = name.rstrip(".").lower()
        best = ""
        for domain in self.routes:
            if (name == domain or name.endswith("." + domain)) and len(domain) > len(best):
                best = domain
        return self.routes[best] if best else self.servers


def read_policy(platform: str | None = None, runner: Runner | None = None) -> DnsPolicy:
    """The DNS policy of this system (`platform` as in sys.platform; for tests)."""
    platform = platform or sys.platform
    runner = runner or _run
    if platform.startswith("win"):
        return _windows(runner)
    if platform == "darwin":
        return _macos(RESOLV_CONF, MACOS_RESOLVER_DIR)
    if platform.startswith("linux") or "bsd" in platform:
        return read_resolv_conf(RESOLV_CONF)
    return DnsPolicy(False, "none", note=f"the DNS policy of {platform} is not read by netsetup")


def missing_rule(domain: str, servers: list[str], platform: str | None = None) -> str:
    """The setting that sends `domain` to `servers` on this platform, in words."""
    platform = platform or sys.platform
    listed = ", ".join(servers)
    if platform.startswith("win"):
        return (
            f"an NRPT entry for .{domain} pointing at {listed} "
            f"(Add-DnsClientNrptRule -Namespace .{domain} -NameServers {listed})"
        )
    if platform == "darwin":
        return f"a file /etc/resolver/{domain} with 'nameserver {servers[0]}'"
    return (
        f"a DNS route for {domain} to {listed}: with systemd-resolved "
        f"`resolvectl domain <tunnel> ~{domain}`, otherwise wg-quick's DNS = line through "
        "resolvconf (openresolv) so that the tunnel's server comes first"
    )


# -- reading ------------------------------------------------------------------------------------

Runner = Callable[[list[str], float], str | None]


def _run(argv: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_resolv_conf(text: str) -> tuple[list[str], list[str]]:
    """(nameservers, search domains) of a resolv.conf text."""
    servers: list[str] = []
    search: list[str] = []
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1])
        elif parts and parts[0] in ("search", "domain"):
            search = [d.rstrip(".").lower() for d in parts[1:]]
    return servers, search


def read_resolv_conf(path: Path) -> DnsPolicy:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return DnsPolicy(False, str(path), note=f"{path} cannot be read ({exc.strerror})")
    servers, search = parse_resolv_conf(text)
    if servers == [SYSTEMD_STUB]:
        return DnsPolicy(
            False,
            str(path),
            (SYSTEMD_STUB,),
            tuple(search),
            note="systemd-resolved decides per link (`resolvectl status` shows it)",
        )
    return DnsPolicy(True, str(path), tuple(servers), tuple(search))


def _macos(resolv_conf: Path, resolver_dir: Path) -> DnsPolicy:
    base = read_resolv_conf(resolv_conf)
    routes: dict[str, tuple[str, ...]] = {}
    try:
        files = sorted(p for p in resolver_dir.iterdir() if p.is_file())
    except OSError:
        files = []
    for file in files:
        try:
            servers, _ = parse_resolv_conf(file.read_text(errors="replace"))
        except OSError:
            continue
        if servers:
            routes[file.name.lower()] = tuple(servers)
    return DnsPolicy(
        base.readable or bool(routes),
        f"{resolv_conf} and {resolver_dir}",
        base.servers,
        base.search,
        routes,
        base.note,
    )


_NRPT_SCRIPT = (
    "Get-DnsClientNrptPolicy | ForEach-Object { $_.Namespace + '=' + ($_.NameServers -join ',') }"
)
_SERVERS_SCRIPT = (
    "Get-DnsClientServerAddress -AddressFamily IPv4 | ForEach-Object { $_.ServerAddresses }"
)


def _windows(runner: Runner) -> DnsPolicy:
    powershell = ["powershell", "-NoProfile", "-NonInteractive", "-Command"]
    nrpt = runner([*powershell, _NRPT_SCRIPT], 3.0)
    if nrpt is None:
        return DnsPolicy(False, "NRPT", note="PowerShell's Get-DnsClientNrptPolicy did not answer")
    servers = runner([*powershell, _SERVERS_SCRIPT], 3.0)
    return parse_windows(nrpt, servers)


def parse_windows(nrpt: str, servers: str | None) -> DnsPolicy:
    """The NRPT lines (`.domain=server,server`) and every adapter's servers (one a line)."""
    routes: dict[str, tuple[str, ...]] = {}
    for line in nrpt.splitlines():
        namespace, sep, listed = line.strip().partition("=")
        if sep and namespace.strip("."):
            found = tuple(s for s in listed.split(",") if s)
            routes[namespace.strip(".").lower()] = found
    every = tuple(dict.fromkeys(s.strip() for s in (servers or "").splitlines() if s.strip()))
    return DnsPolicy(True, "NRPT", every, (), routes)
