#!/usr/bin/python3 -I
"""netsetup's gateway agent: the only program netsetup runs on a gateway (as root, via sudo).

Installed by `netsetup gateway bootstrap` as /usr/local/sbin/netsetup-gateway. Self-contained and
standard library only (Debian 12's python3): it must not import netsetup. It runs `wg`, `wg-quick`
and `nft` with fixed argument lists (never a shell), validates every argument, and prints exactly
one JSON object on stdout: `{"ok": true, ...}` (exit 0) or `{"ok": false, "error", "step",
"restored"}` (exit 1). `restored` is true when the gateway is as it was before the call (nothing
was changed, or everything was put back). It prints a secret only in `read`, whose output goes to
the admin over SSH.

Verbs: version | read | commit | confirm | rollback | revert-timer (internal).

It serves only netsetup's table for an interface (`table_name`) and, once
/etc/netsetup/agent.allow exists (root's, not group/world-writable; bootstrap writes it), only
the interfaces listed there. `read` also tells the last revert (`reverted`: reverted.json
without its token, or null) and whether its restore worked (`restored`).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

VERSION = 1
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WG_DIR = "/etc/wireguard"
RULESET_DIR = "/etc/netsetup/nftables"
PROFILES_DIR = "/etc/netsetup/profiles"
STATE_ROOT = "/var/lib/netsetup"
STAGE_ROOT = "/var/lib/netsetup/stage"
AUDIT_LOG = "/var/log/netsetup/audit.jsonl"
ALLOW_FILE = "/etc/netsetup/agent.allow"  # the interfaces this gateway serves (bootstrap writes it)
MAX_ALLOW_BYTES = 64 * 1024
KEEP_BACKUPS = 10
STALE_STAGED_SECONDS = 120  # an upload older than this belongs to an apply that never committed
MAX_STAGED_BYTES = 32 * 1024 * 1024
MAX_PROFILE_FILE_BYTES = 1024 * 1024  # one file of profile.tar
MAX_PROFILE_BYTES = 16 * 1024 * 1024  # all of them
LOCK_WAIT_SECONDS = 60.0  # confirm/rollback wait this long for a running revert to finish

# folders of STATE_ROOT that are not an interface's state: an interface with such a name
# would make them its state folder (its lock and backups in the stage root, which prepare()
# would chmod 0700, shutting every admin out of their stage folder)
RESERVED_NAMES = frozenset({"stage"})
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_=+.-]{1,15}$")
TABLE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
PROFILE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # netsetup's profile id
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
BACKUP_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")  # take_backup's stamp
PEER_FILE_RE = re.compile(r"^peers/[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.toml$")
# a WireGuard key (base64 of 32 bytes): scrubbed from any tool output we pass on
KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")

# What a staged wg-quick config may set: netsetup renders only these. PreUp/PostUp/PreDown/
# PostDown run shell commands as root and SaveConfig rewrites the file, so an account allowed
# only this agent could otherwise run anything as root.
INTERFACE_KEYS = {"address", "listenport", "privatekey", "mtu", "fwmark", "table"}
PEER_KEYS = {"publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"}


class AgentError(Exception):
    def __init__(self, step: str, message: str, *, restored: bool = True) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.restored = restored


# -- small helpers -----------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def redact(text: str) -> str:
    return KEY_RE.sub("(key)", text)


def tool_env() -> dict[str, str]:
    # wg-quick refuses wireguard-go without this; harmless when the kernel module is there
    return {"PATH": PATH, "LC_ALL": "C", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


def program(name: str) -> str:
    found = shutil.which(name, path=PATH)
    if found is None:
        raise AgentError("check", f"{name} is not installed on this gateway")
    return found


def run(
    step: str, argv: list[str], *, data: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run one tool (looked up on the fixed PATH) with a fixed argument list, never a shell."""
    full = [program(argv[0]), *argv[1:]]
    try:
        result = subprocess.run(
            full,
            input=data if data is not None else b"",
            capture_output=True,
            env=tool_env(),
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(step, f"{argv[0]} {argv[1]} failed: {exc.__class__.__name__}") from None
    if check and result.returncode != 0 and "-f" in argv and argv[0] == "nft":
        raise AgentError(step, nft_rejected(result.stderr))
    if check and result.returncode != 0:
        said = redact(result.stderr.decode("utf-8", "replace").strip())[-800:]
        raise AgentError(
            step, f"{' '.join(argv[:2])} failed (exit {result.returncode}): {said or 'no message'}"
        )
    return result


def nft_rejected(stderr: bytes) -> str:
    """What nft said about a ruleset, without its words: nft quotes the lines it cannot parse
    (and, through an include, any file root can read), so only the line number is passed on."""
    found = re.search(rb":(\d{1,7}):\d+(?:-\d+)?: Error", stderr)
    if found is None:
        return "nft rejected the ruleset"
    return f"nft rejected the ruleset at line {int(found.group(1))}"


def ensure_dir(path: str, mode: int) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise AgentError("check", f"{path} is not a directory")
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def atomic_write(path: str, data: bytes, mode: int) -> None:
    """Temp file in the same directory (made with `mode` before a byte is written), fsync,
    rename: the file is never seen half-written."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def read_text(path: str) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def read_json(path: str) -> dict[str, Any] | None:
    data = read_bytes(path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


# -- arguments ---------------------------------------------------------------------------------


def parse_options(args: list[str], required: tuple[str, ...]) -> dict[str, str]:
    """`--name value` pairs, exactly the `required` names, each once."""
    options: dict[str, str] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        name = flag[2:] if flag.startswith("--") else ""
        if name not in required:
            raise AgentError("usage", f"unknown argument {flag[:40]!r}")
        if name in options:
            raise AgentError("usage", f"--{name} given twice")
        if not rest:
            raise AgentError("usage", f"--{name} needs a value")
        options[name] = rest.pop(0)
    missing = [f"--{n}" for n in required if n not in options]
    if missing:
        raise AgentError("usage", "missing " + ", ".join(missing))
    return options


def checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise AgentError("usage", f"invalid {what} {value[:80]!r}")
    return value


def interface_name(options: dict[str, str]) -> str:
    value = checked(options["interface"], INTERFACE_RE, "interface name")
    if value in (".", ".."):
        raise AgentError("usage", f"invalid interface name {value!r}")
    if value in RESERVED_NAMES:
        raise AgentError("usage", f"the interface name {value!r} is kept for the agent's use")
    return value


def interface_arg(options: dict[str, str]) -> str:
    """An interface this gateway serves (see ALLOW_FILE)."""
    value = interface_name(options)
    check_allowed(value)
    return value


def table_name(interface: str) -> str:
    """netsetup's table for an interface (netsetup.gateway.firewall.table_name, which this
    file may not import): every character but a letter or digit as `_` and its hex code."""
    return "netsetup_" + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):02x}", interface)


def table_arg(options: dict[str, str], interface: str) -> str:
    """Only netsetup's own table for this interface: any other (`inet filter`) could be
    replaced by a commit and read by `read`."""
    value = checked(options["table"], TABLE_RE, "table name")
    if value != table_name(interface):
        raise AgentError("usage", f"the table of {interface} is {table_name(interface)}")
    return value


def allowed_interfaces(path: str) -> set[str] | None:
    """The interfaces listed in the allow file (None: there is none, every interface is
    served). The file must be root's and writable by nobody else, or nothing is served."""

    def problem(info: os.stat_result) -> str | None:
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            return f"{path} must be a file owned by root and writable only by it: nothing is served"
        return None

    data = read_guarded(
        path,
        MAX_ALLOW_BYTES,
        problem,
        unreadable=f"{path} is a link or unreadable: nothing is served",
        too_large=f"{path} is too large: nothing is served",
    )
    if data is None:
        return None
    text = data.decode("utf-8", "replace")
    return {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}


def read_guarded(
    path: str,
    limit: int,
    problem: Callable[[os.stat_result], str | None],
    *,
    unreadable: str,
    too_large: str,
) -> bytes | None:
    """At most `limit` bytes of `path` (None when absent), opened without following a link and
    judged by `problem` on the open file itself (no race between the check and the read); read
    bounded whatever st_size says, since its owner may still be writing to it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        raise AgentError("check", unreadable) from None
    try:
        said = problem(os.fstat(fd))
        if said:
            raise AgentError("check", said)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise AgentError("check", too_large)
    return data


def check_allowed(interface: str) -> None:
    allowed = allowed_interfaces(ALLOW_FILE)
    if allowed is not None and interface not in allowed:
        raise AgentError("check", f"{interface} is not listed in {ALLOW_FILE}")


class Invoker:
    """The account that asked (sudo's SUDO_UID/SUDO_USER, else the one running the agent)."""

    def __init__(self, uid: int, name: str) -> None:
        self.uid = uid
        self.name = name

    @classmethod
    def current(cls, environ: Mapping[str, str] = os.environ) -> Invoker:
        if os.geteuid() != 0:
            raise AgentError("usage", "the gateway agent must run as root (through sudo)")
        sudo_uid, sudo_user = environ.get("SUDO_UID"), environ.get("SUDO_USER")
        if sudo_uid is not None and sudo_user is not None:
            if not sudo_uid.isdigit() or not USER_RE.fullmatch(sudo_user):
                raise AgentError("usage", "the sudo user is not a plain account name")
            return cls(int(sudo_uid), sudo_user)
        uid = os.getuid()
        return cls(uid, pwd.getpwuid(uid).pw_name)


def check_stage_dir(path: str, invoker: Invoker, stage_root: str | None = None) -> str:
    """`path` must be `<stage_root>/<invoker>`: no symlink anywhere on it, the root owned by
    root and writable by nobody else, the folder owned by the invoker (or root), mode 0700."""
    stage_root = STAGE_ROOT if stage_root is None else stage_root
    expected = os.path.join(stage_root, invoker.name)
    if path != expected:
        raise AgentError("usage", f"the stage folder must be {expected}, not {path[:120]!r}")
    current = "/"
    for part in expected.strip("/").split("/"):
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            raise AgentError("check", f"the stage folder {current} does not exist") from None
        if not stat.S_ISDIR(info.st_mode):
            raise AgentError("check", f"{current} is a link or not a folder")
    root_info = os.lstat(stage_root)
    if root_info.st_uid != 0 or root_info.st_mode & 0o022:
        raise AgentError("check", f"{stage_root} must be owned by root and writable only by it")
    info = os.lstat(expected)
    if info.st_uid not in (invoker.uid, 0):
        raise AgentError("check", f"{expected} is not owned by {invoker.name}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        raise AgentError("check", f"{expected} must have mode 0700")
    return expected


def stage_dir_is_sound(path: str, invoker: Invoker) -> bool:
    try:
        check_stage_dir(path, invoker)
    except (AgentError, OSError):
        return False
    return True


def read_staged(stage: str, name: str, invoker: Invoker) -> bytes | None:
    """A staged file's bytes (None when absent): a regular file, not a link, one name only,
    owned by the invoker (or by root when root invoked)."""

    def problem(info: os.stat_result) -> str | None:
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return f"staged file {name} is not a plain file"
        if info.st_uid != invoker.uid:
            return f"staged file {name} is not owned by {invoker.name}"
        return None

    return read_guarded(
        os.path.join(stage, name),
        MAX_STAGED_BYTES,
        problem,
        unreadable=f"staged file {name} is a link or unreadable",
        too_large=f"staged file {name} is too large",
    )


def remove_staged(stage: str, names: list[str], invoker: Invoker) -> None:
    for name in names:
        path = os.path.join(stage, name)
        with suppress(OSError):
            if os.lstat(path).st_uid == invoker.uid:
                os.unlink(path)


def remove_stale_staged(stage: str, invoker: Invoker, now: float) -> list[str]:
    """Files an apply uploaded but never committed (a cut connection): older than a while."""
    removed = []
    with os.scandir(stage) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            stale = now - info.st_mtime > STALE_STAGED_SECONDS
            if stale and not stat.S_ISDIR(info.st_mode) and info.st_uid == invoker.uid:
                with suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def ensure_stage_dir(invoker: Invoker) -> None:
    """The invoker's stage folder (bootstrap makes it; a read makes it again if it is gone)."""
    ensure_dir(STATE_ROOT, 0o755)
    ensure_dir(STAGE_ROOT, 0o755)
    path = os.path.join(STAGE_ROOT, invoker.name)
    if not os.path.lexists(path):
        os.mkdir(path, 0o700)
        os.chown(path, invoker.uid, -1)
        os.chmod(path, 0o700)


# -- what is staged ----------------------------------------------------------------------------


def check_wg_conf(text: str) -> None:
    """Only the keys netsetup renders (see INTERFACE_KEYS)."""
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.lower()
            if section not in ("[interface]", "[peer]"):
                raise AgentError("check", f"staged config line {number}: unknown section")
            continue
        key = line.split("=", 1)[0].strip().lower()
        allowed = INTERFACE_KEYS if section == "[interface]" else PEER_KEYS
        if "=" not in line or key not in allowed:
            raise AgentError("check", f"staged config line {number}: {key[:30]!r} is not allowed")


# `include` makes root read any file (and nft echoes what it cannot parse), `define` and
# `$variables` hide what a statement says from the checks below, `ruleset` reaches every table
FORBIDDEN_RE = re.compile(r"\b(include|define|ruleset)\b|\$", re.IGNORECASE)


def bare_ruleset(text: str) -> str:
    """The nft source with `#` comments taken out and every quoted string written `""` (nft
    strings have no escapes and never span lines), so no word hides inside either."""
    out: list[str] = []
    index, line = 0, 1
    while index < len(text):
        char = text[index]
        if char == "#":
            stop = text.find("\n", index)
            index = len(text) if stop < 0 else stop
            continue
        if char == '"':
            stop = text.find('"', index + 1)
            if stop < 0 or "\n" in text[index:stop]:
                raise AgentError("check", f"staged ruleset line {line}: an unterminated string")
            out.append('""')
            index = stop + 1
            continue
        line += char == "\n"
        out.append(char)
        index += 1
    return "".join(out)


def ruleset_statements(bare: str) -> list[tuple[int, str]]:
    """The depth-0 statements of a bare nft source (line number, words; a block is written
    `{}`), split on newlines and `;` as nft does."""
    statements: list[tuple[int, str]] = []
    current: list[tuple[int, str]] = []  # (line, character) of the statement being read
    depth, line = 0, 1

    def finish() -> None:
        words = " ".join("".join(char for _, char in current).split())
        if words:
            statements.append((next(n for n, c in current if not c.isspace()), words))
        current.clear()

    for char in bare:
        if char == "{":
            depth += 1
            if depth == 1:
                current.append((line, " {"))
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise AgentError("check", f"staged ruleset line {line}: a }} without its {{")
            if depth == 0:
                current.append((line, "}"))
                finish()
        elif depth == 0 and char in "\n;":
            finish()
        elif depth == 0:
            current.append((line, char))
        line += char == "\n"
    if depth != 0:
        raise AgentError("check", "staged ruleset: a { is never closed")
    finish()
    return statements


def check_ruleset(text: str, table: str) -> None:
    """The staged ruleset may touch only `inet <table>`: a restore puts back exactly that
    table, so a ruleset reaching further could not be undone. Read as nft reads it (statements
    end at a newline or `;`, blocks nest), never line by line."""
    bare = bare_ruleset(text)
    for number, line in enumerate(bare.split("\n"), 1):
        found = FORBIDDEN_RE.search(line)
        if found:
            raise AgentError(
                "check", f"staged ruleset line {number}: {found.group()!r} is not allowed"
            )
    allowed = {
        f"table inet {table}",
        f"delete table inet {table}",
        f"flush table inet {table}",
        f"table inet {table} {{}}",
    }
    for number, statement in ruleset_statements(bare):
        if statement not in allowed:
            raise AgentError(
                "check", f"staged ruleset line {number}: only table inet {table} may be loaded"
            )


def profile_member(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    """A plain file's bytes, at most MAX_PROFILE_FILE_BYTES: a sparse member (GNU or PAX)
    claims any size while the tar stays small, so only plain members are read, and bounded."""
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
        raise AgentError("check", f"profile.tar member {name[:80]!r} is not a plain file")
    if member.size > MAX_PROFILE_FILE_BYTES:
        raise AgentError("check", f"profile.tar member {name[:80]!r} is too large")
    handle = archive.extractfile(member)
    data = handle.read(MAX_PROFILE_FILE_BYTES + 1) if handle is not None else b""
    if len(data) > MAX_PROFILE_FILE_BYTES:
        raise AgentError("check", f"profile.tar member {name[:80]!r} is too large")
    return data


def profile_files(data: bytes) -> dict[str, bytes]:
    """profile.toml and peers/*.toml from the staged tar; anything else is refused."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("./").rstrip("/")
                if member.isdir() and name in ("", ".", "peers"):
                    continue
                if not (name == "profile.toml" or PEER_FILE_RE.fullmatch(name)):
                    raise AgentError("check", f"profile.tar holds {name[:80]!r}")
                files[name] = profile_member(archive, member, name)
                total += len(files[name])
                if total > MAX_PROFILE_BYTES:
                    raise AgentError("check", "profile.tar holds too much")
    except tarfile.TarError:
        raise AgentError("check", "profile.tar is not a tar file") from None
    if "profile.toml" not in files:
        raise AgentError("check", "profile.tar has no profile.toml")
    return files


# -- live state --------------------------------------------------------------------------------


def installed(name: str) -> bool:
    return shutil.which(name, path=PATH) is not None


def interface_up(interface: str) -> bool:
    if not installed("wg"):  # a fresh gateway before bootstrap: nothing can be up
        return False
    names = run("read", ["wg", "show", "interfaces"]).stdout.decode().split()
    return interface in names


def table_listing(table: str, step: str = "read") -> str | None:
    if not installed("nft"):
        return None
    result = run(step, ["nft", "list", "table", "inet", table], check=False)
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace")


def forwarding() -> dict[str, bool]:
    def on(path: str) -> bool:
        return (read_text(path) or "0").strip() == "1"

    return {
        "ipv4": on("/proc/sys/net/ipv4/ip_forward"),
        "ipv6": on("/proc/sys/net/ipv6/conf/all/forwarding"),
    }


class Paths:
    """Where the agent keeps what it manages for one interface."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.conf = os.path.join(WG_DIR, f"{interface}.conf")
        self.ruleset = os.path.join(RULESET_DIR, f"{interface}.nft")
        self.state = os.path.join(STATE_ROOT, interface)
        self.applied = os.path.join(self.state, "applied.json")
        self.pending = os.path.join(self.state, "pending.json")
        self.last = os.path.join(self.state, "last.json")
        self.reverted = os.path.join(self.state, "reverted.json")
        self.lock = os.path.join(self.state, "lock")
        self.backups = os.path.join(self.state, "backups")
        self.scratch = os.path.join(self.state, "tmp")

    def profile_dir(self, profile_id: str) -> str:
        return os.path.join(PROFILES_DIR, profile_id)

    def prepare(self) -> None:
        ensure_dir(STATE_ROOT, 0o755)
        if os.path.basename(self.state) in RESERVED_NAMES:  # never, see interface_name
            raise AgentError("usage", f"{self.interface} is a name the agent keeps for itself")
        ensure_dir(self.state, 0o700)
        ensure_dir(self.backups, 0o700)
        ensure_dir(self.scratch, 0o700)


@contextmanager
def locked(paths: Paths, wait: float) -> Iterator[None]:
    paths.prepare()
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AgentError(
                        "lock", "another apply is in progress on this gateway"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def audit(event: dict[str, Any]) -> None:
    """One line per commit/confirm/rollback/revert (never a secret). Best effort: a full log
    disk must not turn a finished apply into a failed one."""
    line = json.dumps({"at": utc_now(), **event}, sort_keys=True) + "\n"
    try:
        ensure_dir(os.path.dirname(AUDIT_LOG), 0o750)
        fd = os.open(AUDIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except (OSError, AgentError):
        pass


# -- backup and restore ------------------------------------------------------------------------


def copy_tree(source: str, target: str) -> None:
    shutil.copytree(source, target, symlinks=True)


def take_backup(paths: Paths, table: str, profile_id: str) -> str:
    """Everything a commit may change, as it is now, in a new timestamped folder (0700)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = os.path.join(paths.backups, stamp)
    os.mkdir(backup, 0o700)
    was_up = interface_up(paths.interface)
    conf = read_bytes(paths.conf)
    if conf is not None:
        atomic_write(os.path.join(backup, "wg.conf"), conf, 0o600)
    if was_up:
        live = run("backup", ["wg", "showconf", paths.interface]).stdout
        atomic_write(os.path.join(backup, "live.conf"), live, 0o600)
    atomic_write(os.path.join(backup, "was_up"), b"yes\n" if was_up else b"no\n", 0o600)
    listing = table_listing(table, "backup")
    if listing is not None:
        atomic_write(os.path.join(backup, "table.nft"), listing.encode(), 0o600)
    for source, name in ((paths.ruleset, "ruleset.nft"), (paths.applied, "applied.json")):
        data = read_bytes(source)
        if data is not None:
            atomic_write(os.path.join(backup, name), data, 0o600)
    if os.path.isdir(paths.profile_dir(profile_id)):
        copy_tree(paths.profile_dir(profile_id), os.path.join(backup, "profile"))
    meta = {"interface": paths.interface, "table": table, "profile_id": profile_id}
    atomic_write(os.path.join(backup, "meta.json"), json.dumps(meta).encode(), 0o600)
    prune_backups(paths)
    return stamp


def prune_backups(paths: Paths) -> None:
    names = sorted(n for n in os.listdir(paths.backups) if not n.startswith("."))
    for name in names[:-KEEP_BACKUPS]:
        shutil.rmtree(os.path.join(paths.backups, name), ignore_errors=True)


def backup_dir(paths: Paths, name: str) -> str:
    if not BACKUP_RE.fullmatch(name):
        raise AgentError("restore", "the backup name is not one of ours")
    path = os.path.join(paths.backups, name)
    if not os.path.isdir(path):
        raise AgentError("restore", f"backup {name} is gone")
    return path


def restore(paths: Paths, name: str) -> None:
    """Put back what `take_backup` saved; every part is tried, the problems are reported
    together (AgentError with restored=False)."""
    backup = backup_dir(paths, name)
    meta = read_json(os.path.join(backup, "meta.json")) or {}
    table = str(meta.get("table", ""))
    profile_id = str(meta.get("profile_id", ""))
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except AgentError as exc:
            problems.append(f"{what}: {exc.message}")
        except OSError as exc:
            problems.append(f"{what}: {exc.strerror or exc.__class__.__name__}")

    was_up = read_bytes(os.path.join(backup, "was_up")) == b"yes\n"
    # down first, with the config that brought it up (the old one may not exist)
    attempt("interface", lambda: _down_if_it_was(paths, was_up))
    attempt("config file", lambda: _put_back(os.path.join(backup, "wg.conf"), paths.conf, 0o600))
    attempt("interface", lambda: _wireguard_back(paths, backup, was_up))
    if TABLE_RE.fullmatch(table):
        attempt("ruleset", lambda: _table_back(table, os.path.join(backup, "table.nft")))
    else:
        problems.append("ruleset: the backup does not name its table")
    ruleset_file = os.path.join(backup, "ruleset.nft")
    attempt("ruleset file", lambda: _put_back(ruleset_file, paths.ruleset, 0o644))
    if PROFILE_ID_RE.fullmatch(profile_id):
        source = os.path.join(backup, "profile")
        attempt("profile", lambda: _tree_back(source, paths.profile_dir(profile_id)))
    attempt(
        "applied", lambda: _put_back(os.path.join(backup, "applied.json"), paths.applied, 0o600)
    )
    if problems:
        raise AgentError("restore", "; ".join(problems), restored=False)


def _down_if_it_was(paths: Paths, was_up: bool) -> None:
    if not was_up and interface_up(paths.interface):
        run("restore", ["wg-quick", "down", paths.interface])


def _wireguard_back(paths: Paths, backup: str, was_up: bool) -> None:
    if not was_up:
        return
    if interface_up(paths.interface):
        run("restore", ["wg", "syncconf", paths.interface, os.path.join(backup, "live.conf")])
    else:
        run("restore", ["wg-quick", "up", paths.interface])


def _table_back(table: str, saved: str) -> None:
    # `table` first so `delete` never fails; the listing loads back as it was; one transaction
    listing = read_bytes(saved) or b""
    script = f"table inet {table}\ndelete table inet {table}\n".encode() + listing
    run("restore", ["nft", "-f", "-"], data=script)


def _put_back(saved: str, target: str, mode: int) -> None:
    data = read_bytes(saved)
    if data is None:
        remove(target)
        return
    ensure_dir(os.path.dirname(target), 0o755 if mode == 0o644 else 0o700)
    atomic_write(target, data, mode)


def _tree_back(saved: str, target: str) -> None:
    if os.path.isdir(saved):
        staging = target + f".restore-{secrets.token_hex(4)}"
        copy_tree(saved, staging)
        replace_tree(staging, target)
    elif os.path.lexists(target):
        shutil.rmtree(target)


def replace_tree(new: str, target: str) -> None:
    """`new` becomes `target` (the old one is moved aside and removed after)."""
    old = target + f".old-{secrets.token_hex(4)}"
    if os.path.lexists(target):
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


# -- verbs -------------------------------------------------------------------------------------


def verb_read(args: list[str]) -> dict[str, Any]:
    options = parse_options(args, ("interface", "table"))
    interface = interface_arg(options)
    table = table_arg(options, interface)
    invoker = Invoker.current()
    ensure_stage_dir(invoker)
    stage = check_stage_dir(os.path.join(STAGE_ROOT, invoker.name), invoker)
    remove_stale_staged(stage, invoker, time.time())
    paths = Paths(interface)
    up = interface_up(interface)
    dump = run("read", ["wg", "show", interface, "dump"]).stdout.decode() if up else None
    tables = run("read", ["nft", "list", "tables"]).stdout.decode() if installed("nft") else ""
    pending = read_json(paths.pending)
    if pending is not None:
        pending.pop("token", None)
    reverted = read_json(paths.reverted)
    if reverted is not None:
        reverted.pop("token", None)
    return {
        "ok": True,
        "interface": interface,
        "up": up,
        "dump": dump,
        "conf": read_text(paths.conf),
        "ruleset_file": read_text(paths.ruleset),
        "listing": table_listing(table),
        "tables": [
            t.removeprefix("table ").strip() for t in tables.splitlines() if t.startswith("table ")
        ],
        "tools": {name: installed(name) for name in ("wg", "wg-quick", "nft")},
        "applied": read_json(paths.applied),
        "pending": pending,
        "reverted": reverted,
        "forwarding": forwarding(),
    }


STAGED = ("{interface}.conf", "{interface}.nft", "profile.tar")


def verb_commit(args: list[str]) -> dict[str, Any]:
    names = ("interface", "table", "profile-id", "stage", "confirm-within")
    options = parse_options(args, names)
    interface = interface_arg(options)
    invoker = Invoker.current()
    staged = [n.format(interface=interface) for n in STAGED]
    try:
        table = table_arg(options, interface)
        profile_id = checked(options["profile-id"], PROFILE_ID_RE, "profile id")
        window = options["confirm-within"]
        if not window.isdigit() or not 5 <= int(window) <= 3600:
            raise AgentError("usage", "--confirm-within must be 5 to 3600 seconds")
        stage = check_stage_dir(options["stage"], invoker)
        conf, ruleset, profile = (read_staged(stage, n, invoker) for n in staged)
    finally:
        # success or failure, nothing staged is left behind (only ever in the invoker's own
        # folder, whatever --stage said)
        own = os.path.join(STAGE_ROOT, invoker.name)
        if stage_dir_is_sound(own, invoker):
            remove_staged(own, staged, invoker)
    if conf is None or ruleset is None:
        raise AgentError("check", f"the stage folder lacks {staged[0]} or {staged[1]}")
    check_wg_conf(conf.decode("utf-8", "replace"))
    check_ruleset(ruleset.decode("utf-8", "replace"), table)
    files = profile_files(profile) if profile is not None else None
    paths = Paths(interface)
    with locked(paths, wait=0):
        refuse_if_pending(paths)
        run("check", ["nft", "-c", "-f", "-"], data=ruleset)
        try:
            backup = take_backup(paths, table, profile_id)
        except (AgentError, OSError) as exc:
            raise AgentError("backup", _said(exc)) from None
        step = "conf"
        try:
            step = install(paths, table, profile_id, conf, ruleset, files)
            step = "arm"
            token = secrets.token_hex(16)
            deadline = time.time() + int(window)
            arm(paths, token, backup, deadline, invoker)
        except (AgentError, OSError) as exc:
            failure = step if not isinstance(exc, AgentError) else _step_of(exc, step)
            restored = _restore_after(paths, backup)
            audit(_event("commit", invoker, paths, backup, ok=False, step=failure))
            raise AgentError(failure, _said(exc), restored=restored) from None
        audit(_event("commit", invoker, paths, backup, ok=True))
    return {"ok": True, "token": token, "backup": backup, "deadline": _iso(deadline)}


def _said(exc: BaseException) -> str:
    if isinstance(exc, AgentError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc.__class__.__name__}: {exc.filename or ''}".strip(": ")
    return exc.__class__.__name__


def _step_of(exc: AgentError, step: str) -> str:
    return step if exc.step in ("read", "check", "restore") else exc.step


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _restore_after(paths: Paths, backup: str) -> bool:
    try:
        restore(paths, backup)
    except AgentError:
        return False
    return True


def _event(
    verb: str, invoker: Invoker, paths: Paths, backup: str, *, ok: bool, step: str | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": verb,
        "user": invoker.name,
        "interface": paths.interface,
        "backup": backup,
        "ok": ok,
    }
    if step is not None:
        event["step"] = step
    return event


def refuse_if_pending(paths: Paths) -> None:
    pending = read_json(paths.pending)
    if pending is None:
        return
    if timer_alive(pending):
        raise AgentError(
            "check",
            "the last apply is not confirmed yet (its revert is armed): confirm or roll it back",
        )
    # the timer died (a reboot, a kill): do what it should have done, then let the admin look
    backup = str(pending.get("backup", ""))
    restored = _restore_after(paths, backup)
    remove(paths.pending)
    audit({"event": "revert", "interface": paths.interface, "backup": backup, "ok": restored})
    raise AgentError(
        "check",
        "the last apply was never confirmed and its revert timer was gone: it was reverted "
        "now; plan again",
        restored=restored,
    )


def timer_alive(pending: dict[str, Any]) -> bool:
    pid = pending.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except OSError:
        return False
    backup = str(pending.get("backup", ""))
    return b"revert-timer" in cmdline and bool(backup) and backup.encode() in cmdline


def install(
    paths: Paths,
    table: str,
    profile_id: str,
    conf: bytes,
    ruleset: bytes,
    files: dict[str, bytes] | None,
) -> str:
    """Install the staged files and make them live; returns the last step reached."""
    ensure_dir(WG_DIR, 0o700)
    atomic_write(paths.conf, conf, 0o600)
    if interface_up(paths.interface):
        syncconf(paths)
    else:
        run("up", ["wg-quick", "up", paths.interface])
    load_ruleset(table, ruleset)
    try:
        ensure_dir(os.path.dirname(RULESET_DIR), 0o755)
        ensure_dir(RULESET_DIR, 0o755)
        atomic_write(paths.ruleset, ruleset, 0o644)
        applied = {
            "source_sha256": _sha256(ruleset),
            "listing": table_listing(table, "nft"),
            "at": utc_now(),
        }
        atomic_write(paths.applied, json.dumps(applied).encode(), 0o600)
    except OSError as exc:
        raise AgentError("nft", _said(exc)) from None
    if files is not None:
        try:
            install_profile(paths.profile_dir(profile_id), files)
        except OSError as exc:
            raise AgentError("profile", _said(exc)) from None
    return "arm"


def nft_tables(step: str) -> set[str]:
    listed = run(step, ["nft", "list", "tables"]).stdout.decode("utf-8", "replace")
    return {
        " ".join(line.split()[1:3]) for line in listed.splitlines() if line.startswith("table ")
    }


def load_ruleset(table: str, ruleset: bytes) -> None:
    """`nft -f`, then a look at the tables: should anything but `inet <table>` have appeared
    or gone (what check_ruleset refuses, were it ever fooled), the ones that appeared are
    deleted and the commit fails (and restores)."""
    before = nft_tables("nft")
    run("nft", ["nft", "-f", "-"], data=ruleset)
    after = nft_tables("nft")
    others = sorted((before ^ after) - {f"inet {table}"})
    if not others:
        return
    for name in sorted(after - before - {f"inet {table}"}):
        family, _, bare = name.partition(" ")
        if re.fullmatch(r"[a-z0-9]{1,8}", family) and TABLE_RE.fullmatch(bare):
            run("nft", ["nft", "delete", "table", family, bare], check=False)
    shown = ", ".join(o for o in others[:5] if re.fullmatch(r"[a-z0-9]{1,8} \w{1,64}", o))
    raise AgentError("nft", f"the ruleset changed other tables than inet {table}: {shown}")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def syncconf(paths: Paths) -> None:
    """`wg syncconf` with the installed config stripped of wg-quick's keys, through a 0600 file
    in a 0700 folder that is removed whatever happens."""
    stripped = run("syncconf", ["wg-quick", "strip", paths.interface]).stdout
    temporary = os.path.join(paths.scratch, f"{secrets.token_hex(8)}.conf")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(stripped)
        run("syncconf", ["wg", "syncconf", paths.interface, temporary])
    finally:
        remove(temporary)


def install_profile(target: str, files: dict[str, bytes]) -> None:
    ensure_dir(os.path.dirname(PROFILES_DIR), 0o755)
    ensure_dir(PROFILES_DIR, 0o755)
    staging = target + f".new-{secrets.token_hex(4)}"
    os.mkdir(staging, 0o755)
    try:
        if any(n.startswith("peers/") for n in files):
            os.mkdir(os.path.join(staging, "peers"), 0o755)
        for name, data in files.items():
            atomic_write(os.path.join(staging, name), data, 0o644)
        replace_tree(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def timer_argv(paths: Paths, backup: str) -> list[str]:
    # no token: argv is visible to every account (ps); the timer reads it from pending.json
    argv = [sys.executable, "-I", os.path.abspath(__file__), "revert-timer"]
    return [*argv, "--interface", paths.interface, "--backup", backup]


def arm(paths: Paths, token: str, backup: str, deadline: float, invoker: Invoker) -> None:
    """Record the revert, then start its timer (a detached child in a session of its own,
    which takes the token and deadline from pending.json, 0600) and record its pid."""
    pending: dict[str, Any] = {"token": token, "backup": backup, "deadline": _iso(deadline)}
    pending.update(pid=None, user=invoker.name)
    atomic_write(paths.pending, json.dumps(pending).encode(), 0o600)
    try:
        child = subprocess.Popen(
            timer_argv(paths, backup),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
            env=tool_env(),
            cwd="/",
        )
    except OSError:
        remove(paths.pending)
        raise
    pending["pid"] = child.pid
    atomic_write(paths.pending, json.dumps(pending).encode(), 0o600)
    atomic_write(paths.last, json.dumps({"token": token, "backup": backup}).encode(), 0o600)


def verb_confirm(args: list[str]) -> dict[str, Any]:
    options = parse_options(args, ("interface", "token"))
    paths = Paths(interface_arg(options))
    token = checked(options["token"], TOKEN_RE, "token")
    invoker = Invoker.current()
    with locked(paths, wait=LOCK_WAIT_SECONDS):
        pending = read_json(paths.pending)
        if pending is None or pending.get("token") != token:
            reverted = read_json(paths.reverted)
            if reverted is not None and reverted.get("token") == token:
                return {
                    "ok": False,
                    "step": "confirm",
                    "error": "the gateway had already reverted this apply (its confirm window "
                    "ran out)",
                    "reverted": True,
                    "restored": reverted.get("restored") is True,
                }
            raise AgentError("confirm", "no apply with this token is waiting for a confirm")
        stop_timer(pending)
        remove(paths.pending)
        audit(_event("confirm", invoker, paths, str(pending.get("backup")), ok=True))
    return {"ok": True}


def stop_timer(pending: dict[str, Any]) -> None:
    if timer_alive(pending):
        with suppress(OSError):
            os.kill(int(pending["pid"]), signal.SIGTERM)


def verb_rollback(args: list[str]) -> dict[str, Any]:
    options = parse_options(args, ("interface", "token"))
    paths = Paths(interface_arg(options))
    token = checked(options["token"], TOKEN_RE, "token")
    invoker = Invoker.current()
    with locked(paths, wait=LOCK_WAIT_SECONDS):
        pending = read_json(paths.pending)
        last = read_json(paths.last)
        reverted = read_json(paths.reverted)
        if reverted is not None and reverted.get("token") == token:
            # the revert already ran: whether it put everything back is what it recorded
            restored = reverted.get("restored") is True
            if not restored:
                raise AgentError(
                    "rollback",
                    "the gateway had already reverted this apply, but its restore failed",
                    restored=False,
                )
            return {"ok": True, "restored": True, "reverted": True}
        record = next(
            (r for r in (pending, last) if r is not None and r.get("token") == token), None
        )
        if record is None:
            raise AgentError("rollback", "this token is not the gateway's last apply")
        backup = str(record.get("backup", ""))
        if pending is not None:
            stop_timer(pending)
        restore(paths, backup)
        remove(paths.pending)
        remove(paths.last)
        audit(_event("rollback", invoker, paths, backup, ok=True))
    return {"ok": True, "restored": True}


def verb_revert_timer(args: list[str]) -> dict[str, Any]:
    """Sleep until the deadline; then, unless confirmed meanwhile, put the backup back."""
    options = parse_options(args, ("interface", "backup"))
    paths = Paths(interface_name(options))
    backup_name = checked(options["backup"], BACKUP_RE, "backup")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    armed = read_json(paths.pending)
    if armed is None or armed.get("backup") != backup_name:
        return {"ok": True, "reverted": False}  # confirmed or rolled back already
    token = checked(str(armed.get("token", "")), TOKEN_RE, "token")
    try:
        when = datetime.strptime(str(armed.get("deadline")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise AgentError("usage", "pending.json has no deadline") from None
    deadline = when.replace(tzinfo=UTC).timestamp()
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 5.0))
        pending = read_json(paths.pending)
        if pending is None or pending.get("token") != token:
            return {"ok": True, "reverted": False}  # confirmed or rolled back: nothing to do
    with locked(paths, wait=LOCK_WAIT_SECONDS * 5):
        pending = read_json(paths.pending)
        if pending is None or pending.get("token") != token:
            return {"ok": True, "reverted": False}
        backup = str(pending.get("backup", ""))
        restored = _restore_after(paths, backup)
        record = {"token": token, "backup": backup, "at": utc_now(), "restored": restored}
        atomic_write(paths.reverted, json.dumps(record).encode(), 0o600)
        remove(paths.pending)
        remove(paths.last)
        audit({"event": "revert", "interface": paths.interface, "backup": backup, "ok": restored})
    return {"ok": True, "reverted": True}


VERBS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "version": lambda args: {"ok": True, "version": VERSION},
    "read": verb_read,
    "commit": verb_commit,
    "confirm": verb_confirm,
    "rollback": verb_rollback,
    "revert-timer": verb_revert_timer,
}


def main(argv: list[str]) -> int:
    os.umask(0o077)
    # a cut SSH connection must not stop a commit half-way: it finishes (or restores), and
    # the revert timer undoes it when no confirm comes
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        if not argv or argv[0] not in VERBS:
            raise AgentError(
                "usage", "usage: netsetup-gateway version|read|commit|confirm|rollback"
            )
        answer = VERBS[argv[0]](argv[1:])
    except AgentError as exc:
        answer = {"ok": False, "error": exc.message, "step": exc.step, "restored": exc.restored}
    except Exception as exc:  # a bug: say which, never what it held (could be a secret)
        answer = {
            "ok": False,
            "error": f"internal error in the gateway agent ({exc.__class__.__name__})",
            "step": "internal",
            "restored": False,
        }
    try:
        sys.stdout.write(json.dumps(answer, sort_keys=True) + "\n")
        sys.stdout.flush()
    except OSError:  # the admin's connection is gone: the work above is done (or reverted)
        pass
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
