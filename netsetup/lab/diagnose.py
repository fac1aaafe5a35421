"""`netsetup diagnose` run inside the lab, on an assistant's machine (`home` by default), as root
or as an unprivileged user.

An assistant runs diagnose without admin rights, so the lab does too (`user="nobody"`): WireGuard's
state is then not readable, as on most assistants' machines. On these machines the default
python3 lives in root's home, which other users cannot enter, so the unprivileged run uses a venv
made from Debian's own /usr/bin/python3 with netsetup installed (not editable) from this source
tree, in a world-readable place keyed by a hash of the sources (built once per change of the
sources; later runs reuse it). The config is copied into a 0700 folder owned by that user, removed
after the run.

Every run is offline (NETSETUP_OFFLINE=1): the public internet speed test skips, so nothing a
lab run does reaches the internet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.errors import InputError
from netsetup.lab.proc import LabError, Result, run

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

SYSTEM_PYTHON = Path("/usr/bin/python3")
VENV_CACHE = Path("/var/cache/netsetup-lab")
LAB_USER = "netsetup-lab"  # created on first use when asked for; "nobody" needs nothing
STALE_VENV_S = 7 * 24 * 3600  # venvs of older sources unused this long are removed
KEEP_VENVS = 3  # ... and beyond the newest three, those unused for IN_USE_S
IN_USE_S = 3600.0
INSTALL_TIMEOUT_S = 600.0
OFFLINE = "NETSETUP_OFFLINE=1"  # netsetup.diagnose.context.OFFLINE_ENV: no public speed test


def run_diagnose(
    lab: Lab,
    args: Sequence[str] = (),
    *,
    host: str = "home",
    config: Path | None = None,
    timeout: float = 120.0,
    user: str | None = None,
) -> Result:
    """Run `netsetup diagnose [args]` in `host`'s namespace against the client config of the
    assistant connected there (or `config`). With `user`, as that unprivileged user (see the
    module's doc). Returns the finished process."""
    client = lab.record.clients.get(host)
    chosen = config or (Path(client.config) if client and client.config else None)
    if chosen is None:
        raise InputError(f"no assistant is connected on {host}: run `netsetup lab connect` first")
    if user is None:
        netsetup = [sys.executable, "-m", "netsetup", "diagnose", "--config", str(chosen)]
        return lab.exec(host, ["env", OFFLINE, *netsetup, *args], timeout=timeout)
    python = unprivileged_python()
    account = ensure_user(user)
    with config_for(account, chosen) as copied:
        argv = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "env",
            "-i",
            f"--chdir={copied.parent}",
            f"HOME={copied.parent}",
            "PATH=/usr/bin:/bin",
            "LANG=C.UTF-8",
            OFFLINE,
            str(python),
            "-I",  # isolated: no PYTHONPATH, no user site, not the current folder
            "-m",
            "netsetup",
            "diagnose",
            "--config",
            str(copied),
            *args,
        ]
        return lab.exec(host, argv, timeout=timeout)


# -- the user and their copy of the config ------------------------------------------------------


def ensure_user(name: str) -> pwd.struct_passwd:
    """The account `name`; the lab's own system user is created when missing (others must
    exist). Root is refused: the point is to run without privileges."""
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        if name != LAB_USER:
            raise InputError(f"no user {name!r} on this machine (try nobody)") from None
        run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ]
        )
        account = pwd.getpwnam(name)
    if account.pw_uid == 0:
        raise InputError(f"user {name} is root: diagnose as a user needs an unprivileged one")
    return account


COPY_PREFIX = "netsetup-diagnose-"


@contextlib.contextmanager
def config_for(
    account: pwd.struct_passwd, source: Path, base: Path | None = None
) -> Iterator[Path]:
    """A copy of the config (0600) in a 0700 folder owned by `account`, removed afterwards.
    The folder's name carries this process's id: copies left by a process that died before it
    could remove them (SIGKILL, a test runner's SIGTERM) hold a private key readable by that
    user, and are removed by the next run."""
    base = base or Path(tempfile.gettempdir())
    remove_orphans(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-", dir=base))
    try:
        target = folder / source.name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(source.read_bytes())
        for path in (target, folder):
            os.chown(path, account.pw_uid, account.pw_gid)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphans(base: Path) -> None:
    """Remove the config copies in `base` whose process is gone (see `config_for`)."""
    for folder in base.glob(f"{COPY_PREFIX}*"):
        pid = folder.name[len(COPY_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or folder.is_symlink():
            continue
        shutil.rmtree(folder, ignore_errors=True)  # never follows a link planted inside


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


# -- the venv -----------------------------------------------------------------------------------


def source_root() -> Path:
    """The source tree this netsetup was imported from (it has pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise LabError(
            f"diagnose as a user installs netsetup from its source tree; {root} has no "
            "pyproject.toml (run the lab from a checkout of the repository)"
        )
    return root


def sources_hash(root: Path) -> str:
    """A hash of what the install is made of: pyproject.toml and every file of the package."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", *sorted((root / "netsetup").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def unprivileged_python(cache: Path = VENV_CACHE) -> Path:
    """The python of a venv (from Debian's python3) that has this netsetup installed, readable
    by every user: built when the sources changed, else reused."""
    if not SYSTEM_PYTHON.exists():
        raise LabError(f"{SYSTEM_PYTHON} is missing (Debian package python3)")
    root = source_root()
    venv = cache / f"venv-{sources_hash(root)}"
    python = venv / "bin" / "python3"
    if (venv / ".complete").exists():
        os.utime(venv / ".complete")  # in use: not stale
        return python
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    with _locked(cache / ".lock"):
        if not (venv / ".complete").exists():
            _build_venv(root, venv)
            _remove_stale(cache, keep=venv)
    return python


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (two test sessions may ask at once)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_venv(root: Path, venv: Path) -> None:
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="netsetup-src-") as scratch:
        # a copy, so that building leaves nothing (build/, *.egg-info) in the source tree
        source = Path(scratch) / "netsetup"
        shutil.copytree(
            root,
            source,
            ignore=shutil.ignore_patterns(
                ".git", "__pycache__", "*.egg-info", "build", "dist", ".*cache"
            ),
            symlinks=True,
        )
        try:
            run([str(SYSTEM_PYTHON), "-m", "venv", str(building)], timeout=120)
            pip = [str(building / "bin" / "python3"), "-m", "pip"]
            quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
            run([*pip, "install", *quiet, str(source)], timeout=INSTALL_TIMEOUT_S)
        except LabError:
            shutil.rmtree(building, ignore_errors=True)
            raise
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(building)], check=True)
    (building / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    os.chmod(building / ".complete", 0o644)
    # scripts in bin/ name the building path; `python3 -m netsetup` does not need them
    building.rename(venv)


def _remove_stale(cache: Path, keep: Path) -> None:
    """Venvs of older sources: the KEEP_VENVS most recently used stay (another checkout may use
    them), the rest go once unused for an hour (a run in progress keeps its own), and any unused
    for STALE_VENV_S."""
    now = time.time()
    others = [(_last_used(v), v) for v in cache.glob("venv-*") if v != keep]
    others.sort(reverse=True)
    for index, (used, other) in enumerate(others):
        idle = now - used
        if idle > STALE_VENV_S or (index >= KEEP_VENVS - 1 and idle > IN_USE_S):
            shutil.rmtree(other, ignore_errors=True)


def _last_used(venv: Path) -> float:
    for path in (venv / ".complete", venv):  # no marker: an abandoned build
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0
