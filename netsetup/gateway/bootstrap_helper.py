"""What `gateway bootstrap` runs on the gateway (as root) to change one file, folder, link or
unit at a time, idempotently: `python3 -I -c <this file> <verb> <args...>`.

Stdlib only (it runs with the gateway's own python3, before netsetup's agent is there), and
self-contained: it is sent whole as the program text and never imports netsetup. Every argument
arrives in argv (never through a shell); file contents arrive on stdin. It prints one JSON object
on stdout: `{"status": "ok"}` (already as wanted), `{"status": "changed"}`, or
`{"error": "<plain words>"}` with exit status 1.

Verbs:
- `put PATH MODE OWNER [--visudo]`: the file holds stdin's bytes, mode and owner (temporary file
  in the same folder, fsync, rename; with --visudo, `visudo -cf` checks it before the rename).
- `dir PATH MODE OWNER`: the folder exists (parents root 0755) with that mode and owner.
- `line PATH MODE LINE`: LINE is a whole line of PATH (appended once; stdin is the header of a
  file that does not exist yet).
- `enable UNIT...`: each unit enabled, as `systemctl enable` does: by systemctl when systemd
  runs, else the `.wants/` links of the unit's [Install] WantedBy= (the gateway has no systemd
  running: a container, the lab).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable

UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
LOCAL_UNITS = "/etc/systemd/system"


class Refused(Exception):
    """What the helper will not do, in plain words."""


def _owner(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Refused(f"no user {name!r} on the gateway") from None
    return entry.pw_uid, entry.pw_gid


def _current(path: str) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise Refused(f"{path} is a symbolic link; netsetup does not write through links")
    return info


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: str, data: bytes, mode: int, uid: int, gid: int, visudo: bool) -> None:
    directory, name = os.path.split(path)
    # a dot and no other: sudo skips such names in sudoers.d, so a half-checked file never counts
    temporary = os.path.join(directory, f".{name}.{os.urandom(6).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if visudo:
            check = subprocess.run(
                ["visudo", "-cf", temporary], capture_output=True, text=True, check=False
            )
            if check.returncode != 0:
                raise Refused("visudo rejects the sudoers line: " + check.stdout + check.stderr)
        os.rename(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    _fsync_dir(directory)


def put(path: str, mode_text: str, owner: str, *flags: str) -> str:
    data = sys.stdin.buffer.read()
    mode = int(mode_text, 8)
    uid, gid = _owner(owner)
    info = _current(path)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise Refused(f"{path} is not a regular file")
    if info is not None and (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (
        mode,
        uid,
        gid,
    ):
        with open(path, "rb") as handle:
            if handle.read() == data:
                return "ok"
    _write(path, data, mode, uid, gid, "--visudo" in flags)
    return "changed"


def make_dir(path: str, mode_text: str, owner: str) -> str:
    mode = int(mode_text, 8)
    uid, gid = _owner(owner)
    changed = False
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
        changed = True
    info = _current(path)
    if info is None:
        os.mkdir(path, mode)
        info = os.lstat(path)
        changed = True
    if not stat.S_ISDIR(info.st_mode):
        raise Refused(f"{path} is not a folder")
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return "changed" if changed else "ok"


def ensure_line(path: str, mode_text: str, line: str) -> str:
    info = _current(path)
    if info is None:
        header = sys.stdin.buffer.read()
        _write(path, header + line.encode() + b"\n", int(mode_text, 8), 0, 0, False)
        return "changed"
    with open(path, "rb") as handle:
        text = handle.read()
    if line.encode() in (existing.strip() for existing in text.splitlines()):
        return "ok"
    ending = b"" if text.endswith(b"\n") or not text else b"\n"
    mode = stat.S_IMODE(info.st_mode)
    _write(path, text + ending + line.encode() + b"\n", mode, info.st_uid, info.st_gid, False)
    return "changed"


def _unit_file(unit: str) -> str:
    """The file of `unit`; for an instance (`wg-quick@wg0.service`) its template's."""
    names = [unit]
    if "@" in unit:
        prefix, _, rest = unit.partition("@")
        names.append(f"{prefix}@.{rest.rpartition('.')[2]}")
    for name in names:
        for directory in UNIT_DIRS:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    raise Refused(f"no unit file for {unit} (looked in {', '.join(UNIT_DIRS)})")


def _wanted_by(unit_file: str) -> list[str]:
    targets: list[str] = []
    section = ""
    with open(unit_file, encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.strip()
            if line.startswith("["):
                section = line
            elif section == "[Install]" and line.split("=", 1)[0].strip() == "WantedBy":
                targets += line.split("=", 1)[1].split()
    if not targets:
        raise Refused(f"{unit_file} has no [Install] WantedBy=: it cannot be enabled")
    return targets


def _link(path: str, target: str) -> bool:
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    if os.path.lexists(path):
        if not os.path.islink(path):
            raise Refused(f"{path} is in the way (not a link)")
        os.unlink(path)
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    os.symlink(target, path)
    return True


def enable(*units: str) -> str:
    if os.path.isdir("/run/systemd/system"):  # systemd runs: let it do its own bookkeeping
        changed = False
        subprocess.run(["systemctl", "daemon-reload"], check=True, capture_output=True)
        for unit in units:
            enabled = subprocess.run(["systemctl", "is-enabled", "--quiet", unit], check=False)
            if enabled.returncode != 0:
                subprocess.run(["systemctl", "enable", unit], check=True, capture_output=True)
                changed = True
        return "changed" if changed else "ok"
    changed = False
    for unit in units:
        unit_file = _unit_file(unit)
        for target in _wanted_by(unit_file):
            wants = os.path.join(LOCAL_UNITS, f"{target}.wants", unit)
            changed = _link(wants, unit_file) or changed
    return "changed" if changed else "ok"


VERBS: dict[str, Callable[..., str]] = {
    "put": put,
    "dir": make_dir,
    "line": ensure_line,
    "enable": enable,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in VERBS:
        print(json.dumps({"error": "usage: put|dir|line|enable ARGS"}))
        return 1
    try:
        status = VERBS[argv[0]](*argv[1:])
    except (Refused, OSError, subprocess.CalledProcessError, TypeError, ValueError) as exc:
        print(json.dumps({"error": str(exc) or type(exc).__name__}))
        return 1
    print(json.dumps({"status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
