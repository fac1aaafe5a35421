"""Running programs, in the host or inside one of the lab's network namespaces.

Every call takes an argument list (never a shell string). Failures raise `LabError` with the
command and its stderr, so a broken step says what broke.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from netsetup.errors import NetsetupError, PermissionNeeded

WG_USERSPACE_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}

# program -> Debian package, checked before `up` so a missing tool is one clear error
REQUIRED_PROGRAMS = {
    "ip": "iproute2",
    "nft": "nftables",
    "wg": "wireguard-tools",
    "wg-quick": "wireguard-tools",
    "wireguard-go": "wireguard-go",
    "kamailio": "kamailio",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "dnsmasq": "dnsmasq-base",
    "resolvconf": "openresolv",
    "ping": "iputils-ping",
    "ss": "iproute2",  # readiness of every service
    "sysctl": "procps",  # forwarding in the namespaces
}

# Kamailio's TLS transport is a module in its own Debian package
KAMAILIO_TLS_MODULE = "tls.so"
KAMAILIO_TLS_PACKAGE = "kamailio-tls-modules"
KAMAILIO_MODULE_GLOBS = (
    "/usr/lib/*/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
)


class LabError(NetsetupError):
    """The lab could not be built, changed or measured."""


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionNeeded(
            "the lab needs root (network namespaces, veth pairs, nftables): run it with sudo"
        )


def missing_programs(path: str | None = None) -> list[str]:
    """`program (package)` for every required program that is not installed (searched in `path`,
    default: $PATH and the usual system directories)."""
    search = (
        path if path is not None else os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    )
    return [
        f"{program} ({package})"
        for program, package in REQUIRED_PROGRAMS.items()
        if shutil.which(program, path=search) is None
    ]


def require_programs(path: str | None = None) -> None:
    missing = missing_programs(path)
    if missing:
        raise LabError(
            "the lab needs these programs: " + ", ".join(missing) + " (see .ci/lab-setup.sh)"
        )


def kamailio_module_dirs() -> list[Path]:
    import glob

    return [Path(d) for pattern in KAMAILIO_MODULE_GLOBS for d in sorted(glob.glob(pattern))]


def require_kamailio_tls(module_dirs: Sequence[Path] | None = None) -> None:
    """Kamailio can serve SIP over TLS: its tls.so is in one of `module_dirs` (default: where
    Debian and source builds put Kamailio's modules)."""
    directories = list(kamailio_module_dirs() if module_dirs is None else module_dirs)
    if not any((d / KAMAILIO_TLS_MODULE).is_file() for d in directories):
        where = ", ".join(str(d) for d in directories) or "no Kamailio module directory found"
        raise LabError(
            f"the profile offers SIP over TLS and the lab needs Kamailio's TLS module "
            f"{KAMAILIO_TLS_MODULE}: install the Debian package {KAMAILIO_TLS_PACKAGE} "
            f"(looked in {where})"
        )


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WG_USERSPACE_ENV)
    path = env.get("PATH", "")
    for directory in ("/usr/sbin", "/sbin"):
        if directory not in path.split(":"):
            path = f"{path}:{directory}" if path else directory
    env["PATH"] = path
    if extra:
        env.update(extra)
    return env


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run a program to completion and capture its output."""
    argv = tuple(str(a) for a in args)
    try:
        done = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(env),
            check=False,
        )
    except FileNotFoundError:
        raise LabError(f"program not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    result = Result(argv, done.returncode, done.stdout, done.stderr)
    if check and not result.ok:
        lines = (result.stderr or result.stdout).strip().splitlines()
        # wg-quick echoes each command as "[#] ..."; the error is the last line that is not one
        detail = [line for line in lines if not line.startswith("[#]")] or lines
        tail = detail[-1] if detail else f"exit status {result.returncode}"
        raise LabError(f"`{' '.join(argv)}` failed: {tail}")
    return result


def in_ns(namespace: str, args: Sequence[str]) -> list[str]:
    """The argument list that runs `args` inside `namespace`."""
    return ["ip", "netns", "exec", namespace, *args]


def ns_run(namespace: str, args: Sequence[str], **kwargs: object) -> Result:
    return run(in_ns(namespace, args), **kwargs)  # type: ignore[arg-type]


def nft_load(namespace: str, ruleset: str) -> None:
    """Load an nftables ruleset (`nft -f -`) inside `namespace`."""
    ns_run(namespace, ["nft", "-f", "-"], input=ruleset)


def spawn(
    namespace: str, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running service inside `namespace`; its output goes to `log`."""
    with open(log, "ab") as handle:
        return subprocess.Popen(
            in_ns(namespace, args),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=_env(env),
            start_new_session=True,  # Ctrl-C in the terminal reaches the lab, not the services
        )


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone, and is reaped if it is our child)."""
    import psutil

    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # gone (NoSuchProcess), or not ours to look at
        return False


def process_start_time(pid: int) -> float:
    """When `pid` started (seconds since the epoch); 0 if it is gone. With the pid it identifies
    one process: a reused pid has a later start time."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def pid_in_namespace(pid: int, namespace: str) -> bool:
    """True when `pid` runs in the named network namespace (/run/netns/NAME, as `ip netns` keeps
    it): same nsfs inode. psutil has no view of namespaces, so this one stays with os.stat on
    /proc/PID/ns/net."""
    try:
        mine = os.stat(f"/proc/{pid}/ns/net")
        named = os.stat(f"/run/netns/{namespace}")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


def pid_belongs(pid: int, namespace: str, started: float = 0.0) -> bool:
    """True only for the process the lab started: alive, and either the start time recorded
    when it was spawned matches, or it runs inside the lab's namespace. A pid from a record may
    have been reused by an unrelated process, which must never be signalled."""
    if pid <= 1 or not pid_alive(pid):
        return False
    if started and process_start_time(pid) == started:
        return True
    return pid_in_namespace(pid, namespace)


def stop_pids(pids: Sequence[int], grace: float = 3.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL whatever is left."""
    pending = [p for p in pids if p > 1 and pid_alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pending = _signal_and_wait(pending, sig, grace)


def _signal_and_wait(pids: list[int], sig: signal.Signals, grace: float) -> list[int]:
    """Send `sig` to each pid; return those still alive after up to `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        if pids:
            time.sleep(0.05)
    return pids


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C: whatever the SIGINT handler raises (the CLI's `Interrupted`,
    else KeyboardInterrupt), so every `finally` that removes a lab runs."""
    on_sigint = signal.getsignal(signal.SIGINT)
    if callable(on_sigint) and on_sigint is not _interrupt:
        on_sigint(signal.SIGINT, frame)
    raise KeyboardInterrupt


def install_sigterm_interrupt() -> None:
    """From now on, SIGTERM in this process unwinds like Ctrl-C (for a whole command body or a
    test session). Only the main thread can install signal handlers; elsewhere this does nothing."""
    if _on_main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """`install_sigterm_interrupt` for the body of a `with`, restoring the previous handler."""
    if not _on_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the body (a teardown) is done: a second Ctrl-C or a SIGTERM
    can't leave a lab half removed. The handlers are restored afterwards, and a signal that came in
    meanwhile is delivered then."""
    if not _on_main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Any] = {}
    for deferred in (signal.SIGINT, signal.SIGTERM):
        previous[deferred] = signal.signal(deferred, remember)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])
