"""`netsetup gateway bootstrap`: a fresh Debian or Ubuntu gateway prepared over SSH.

Every step is idempotent and reports `ok` (already as wanted), `changed`, `skipped: why` or
`warning: what to do`. Every remote command is an argv list the session quotes with
`shlex.join`; file contents travel on stdin or by SFTP, never inside a command line. Files,
folders, lines and unit links are changed by one small stdlib program sent whole
(`bootstrap_helper.py`, run with the gateway's python3), which writes atomically (temporary
file in the same folder, fsync, rename) and says whether anything changed.

The login must be root or have full sudo for this one command (it installs packages and writes
/etc); afterwards `plan` and `apply` need only the sudoers line bootstrap writes for a non-root
login: `<user> ALL=(root) NOPASSWD: /usr/local/sbin/netsetup-gateway`.
"""

from __future__ import annotations

import io
import json
import posixpath
import string
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsetup.errors import (
    EnvironmentProblem,
    ExitCode,
    InputError,
    NetsetupError,
    RemoteError,
)
from netsetup.gateway.witness_service import NO_CRYPTOGRAPHY
from netsetup.profile.model import Gateway, Profile
from netsetup.state import StateDir

if TYPE_CHECKING:
    from netsetup.gateway.remote import GatewaySession

AGENT_PATH = "/usr/local/sbin/netsetup-gateway"
STAGE_ROOT = "/var/lib/netsetup/stage"
SYSCTL_FILE = "/etc/sysctl.d/60-netsetup.conf"
SUDOERS_FILE = "/etc/sudoers.d/netsetup"
NFT_DIR = "/etc/netsetup/nftables"
# the interfaces the agent serves on this gateway (one a line): each bootstrap adds its site's
ALLOW_FILE = "/etc/netsetup/agent.allow"
ALLOW_HEADER = (
    "# netsetup: the WireGuard interfaces netsetup-gateway serves here, one a line.\n"
    "# `netsetup gateway bootstrap` adds its site's; an interface not listed is refused.\n"
)
NFT_CONF = "/etc/nftables.conf"
NFT_INCLUDE = f'include "{NFT_DIR}/*.nft"'
# what Debian's nftables package ships as the start of /etc/nftables.conf
NFT_HEADER = "#!/usr/sbin/nft -f\n\nflush ruleset\n\n"
PROFILES_DIR = "/etc/netsetup/profiles"
WITNESS_DIR = "/usr/local/lib/netsetup"
WITNESS_APP = f"{WITNESS_DIR}/netsetup-witness.pyz"
WITNESS_UNIT = "netsetup-witness@.service"
WITNESS_UNIT_FILE = f"/etc/systemd/system/{WITNESS_UNIT}"
PYTHON = "/usr/bin/python3"
# the programs bootstrap and the agent run, and the Debian package of each
PROGRAMS = (
    ("/usr/bin/wg", "wireguard-tools"),
    ("/usr/bin/wg-quick", "wireguard-tools"),
    ("/usr/sbin/nft", "nftables"),
    (PYTHON, "python3"),
)
APT_ENV = ["env", "DEBIAN_FRONTEND=noninteractive"]
SUPPORTED = ("debian", "ubuntu")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same netsetup makes the same zipapp, byte for byte


def sudoers_line(user: str) -> str:
    """The README's sudoers line: the agent, as root, without a password, and nothing else."""
    return f"{user} ALL=(root) NOPASSWD: {AGENT_PATH}"


def witness_unit() -> str:
    return (
        "# netsetup: the gateway witness of one profile (instance = profile id). It answers\n"
        "# assistants' `netsetup diagnose` from outside the tunnel; see `netsetup responder`.\n"
        "[Unit]\n"
        "Description=netsetup gateway witness (%i)\n"
        "After=network-online.target nftables.service\n"
        "Wants=network-online.target\n"
        f"ConditionPathExists={PROFILES_DIR}/%i/profile.toml\n"
        "\n"
        "[Service]\n"
        f"ExecStart={PYTHON} -I {WITNESS_APP} --profile {PROFILES_DIR}/%i\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


@dataclass(frozen=True)
class Step:
    """One bootstrap step: `ok`, `changed`, `skipped` or `warning`, and why (for the last two)."""

    name: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"step": self.name, "status": self.status, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status


@dataclass
class BootstrapResult:
    """The steps one gateway went through, in order."""

    gateway: str
    target: str
    steps: list[Step] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(s.status == "changed" for s in self.steps)

    @property
    def warnings(self) -> list[Step]:
        return [s for s in self.steps if s.status == "warning"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "target": self.target,
            "changed": self.changed,
            "steps": [s.as_dict() for s in self.steps],
        }


def agent_program() -> bytes:
    """The gateway agent (`netsetup/gateway/agent.py`), as bootstrap installs it."""
    path = Path(__file__).with_name("agent.py")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EnvironmentProblem(
            "this netsetup has no gateway agent to install", where=str(path)
        ) from None


def helper_program() -> str:
    return Path(__file__).with_name("bootstrap_helper.py").read_text()


def witness_zipapp() -> bytes:
    """netsetup's own modules as one zipapp whose entry point is the witness service: the
    same netsetup gives the same bytes (fixed times, sorted names), so a second bootstrap
    finds it unchanged."""
    package = Path(__file__).resolve().parent.parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = path.relative_to(package.parent).as_posix()
            archive.writestr(_zip_entry(name), path.read_bytes())
        main = "import sys\nfrom netsetup.gateway.witness_service import main\nsys.exit(main())\n"
        archive.writestr(_zip_entry("__main__.py"), main)
    return buffer.getvalue()


def _zip_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, ZIP_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    return entry


def describe_os(os_release: str) -> tuple[str, bool]:
    """The system's name from /etc/os-release, and whether bootstrap prepares it (Debian,
    Ubuntu and their derivatives, by ID or ID_LIKE)."""
    fields = {}
    for line in os_release.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    ids = {fields.get("ID", "")} | set(fields.get("ID_LIKE", "").split())
    name = fields.get("PRETTY_NAME") or fields.get("NAME") or "an unknown system"
    return name, bool(ids & set(SUPPORTED))


# what systemd accepts in a unit name without escaping
_UNIT_NAME_SAFE = frozenset(string.ascii_letters + string.digits + ":_.-")


class Bootstrap:
    """The steps against one gateway over one session."""

    def __init__(self, session: GatewaySession, site: Profile, gateway: Gateway) -> None:
        self.session = session
        self.site = site
        self.gateway = gateway
        self.user = session.target.user
        self._helper = helper_program()
        self.witness_runs = False  # the witness step found it can run with the gateway's python

    # -- remote primitives -------------------------------------------------------------------

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 120.0) -> str:
        """Run one program as root; its stdout. A failure is a RemoteError naming it."""
        result = self.session.run(argv, stdin=stdin, timeout=timeout)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit status {result.status}"
            raise RemoteError(f"`{' '.join(argv[:3])}` failed on the gateway: {last}")
        return result.stdout

    def helper(self, *args: str, stdin: bytes | None = None) -> str:
        """One change by the helper: `ok` or `changed`; its refusal is a RemoteError."""
        result = self.session.run([PYTHON, "-I", "-c", self._helper, *args], stdin=stdin)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            text = (result.stderr or result.stdout).strip().splitlines()
            raise RemoteError(
                f"could not change {args[1]} on the gateway: "
                + (text[-1] if text else f"exit status {result.status}")
            )
        if "error" in answer:
            raise RemoteError(f"could not change {args[1]} on the gateway: {answer['error']}")
        return str(answer["status"])

    def exists(self, path: str) -> bool:
        return self.session.run(["test", "-e", path]).ok

    @staticmethod
    def combined(*statuses: str) -> str:
        return "changed" if "changed" in statuses else "ok"

    # -- the steps ---------------------------------------------------------------------------

    def privileges(self) -> Step:
        if self.session.is_root:
            return Step("privileges", "ok", "logged in as root")
        result = self.session.run(["true"])
        if not result.ok:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise EnvironmentProblem(
                f"bootstrap needs root or full sudo for {self.user!r} (sudo -n said: "
                f"{said[-1] if said else result.status}); plan and apply need only the sudoers "
                "line bootstrap writes",
                where=str(self.session.target),
            )
        return Step("privileges", "ok", f"{self.user} has sudo")

    def os_release(self) -> Step:
        result = self.session.run(["cat", "/etc/os-release"], sudo=False)
        name, supported = describe_os(result.stdout)
        if not supported:
            raise EnvironmentProblem(
                f"the gateway runs {name}; bootstrap prepares Debian or Ubuntu only (on another "
                "system, set up WireGuard, nftables and the agent by hand: see the README)",
                where=str(self.session.target),
            )
        return Step("os", "ok", name)

    def packages(self) -> Step:
        missing = sorted({pkg for path, pkg in PROGRAMS if not self.exists(path)})
        if not missing:
            return Step("packages", "ok", "wireguard-tools, nftables and python3 are there")
        self.run([*APT_ENV, "apt-get", "update"], timeout=600)
        self.run([*APT_ENV, "apt-get", "install", "-y", *missing], timeout=900)
        return Step("packages", "changed", "installed " + ", ".join(missing))

    def forwarding(self) -> Step:
        keys = ["net.ipv4.ip_forward"]
        if self.site.network.tunnel_v6 is not None:
            keys.append("net.ipv6.conf.all.forwarding")
        text = "# netsetup: the gateway forwards the tunnel's packets\n"
        text += "".join(f"{key} = 1\n" for key in keys)
        wrote = self.helper("put", SYSCTL_FILE, "644", "root", stdin=text.encode())
        live = self.run(["sysctl", "-n", *keys]).split()
        if wrote == "changed" or any(value != "1" for value in live):
            self.run(["sysctl", "-q", "-p", SYSCTL_FILE])
            return Step("forwarding", "changed", ", ".join(keys))
        return Step("forwarding", "ok", ", ".join(keys))

    def agent(self) -> Step:
        statuses = [self.helper("dir", posixpath.dirname(AGENT_PATH), "755", "root")]
        statuses.append(self.helper("put", AGENT_PATH, "755", "root", stdin=agent_program()))
        stage = posixpath.join(STAGE_ROOT, self.user)
        statuses.append(self.helper("dir", STAGE_ROOT, "755", "root"))
        statuses.append(self.helper("dir", stage, "700", self.user))
        return Step("agent", self.combined(*statuses), f"{AGENT_PATH}, stage {stage}")

    def sudoers(self) -> Step:
        if self.session.is_root:
            return Step("sudoers", "skipped", "root logs in: no sudo needed")
        line = sudoers_line(self.user) + "\n"
        status = self.helper("put", SUDOERS_FILE, "440", "root", "--visudo", stdin=line.encode())
        return Step("sudoers", status, f"{SUDOERS_FILE}: {line.strip()}")

    def nftables_at_boot(self) -> Step:
        statuses = [
            self.helper("dir", NFT_DIR, "755", "root"),
            self.helper("line", NFT_CONF, "755", NFT_INCLUDE, stdin=NFT_HEADER.encode()),
        ]
        return Step("nftables-boot", self.combined(*statuses), f"{NFT_CONF}: {NFT_INCLUDE}")

    def agent_allow(self) -> Step:
        """This site's interface in the agent's allow file (a line added, the others kept:
        several profiles may share a gateway). Root's, 0644: the agent refuses any other."""
        interface = self.gateway.interface
        statuses = [
            self.helper("dir", posixpath.dirname(ALLOW_FILE), "755", "root"),
            self.helper("line", ALLOW_FILE, "644", interface, stdin=ALLOW_HEADER.encode()),
        ]
        return Step("agent-allow", self.combined(*statuses), f"{ALLOW_FILE}: {interface}")

    def witness(self) -> Step:
        """The witness's runtime (the zipapp) and its unit, checked with the gateway's python3;
        when it cannot run there, a warning says what is missing."""
        if not self.gateway.witness_port:
            return Step("witness", "skipped", "the profile turns the witness off")
        statuses = [
            self.helper("dir", WITNESS_DIR, "755", "root"),
            self.helper("put", WITNESS_APP, "644", "root", stdin=witness_zipapp()),
            self.helper("put", WITNESS_UNIT_FILE, "644", "root", stdin=witness_unit().encode()),
        ]
        status, problem = self._witness_check()
        if status == NO_CRYPTOGRAPHY:
            self.run([*APT_ENV, "apt-get", "install", "-y", "python3-cryptography"], timeout=900)
            statuses.append("changed")
            status, problem = self._witness_check()
        self.witness_runs = problem is None
        if problem:
            return Step(
                "witness",
                "warning",
                f"the witness cannot run with the gateway's python3 ({problem}): it needs "
                "Python 3.11 and python3-cryptography (`apt-get install python3-cryptography`)",
            )
        return Step("witness", self.combined(*statuses), f"{WITNESS_APP}, {WITNESS_UNIT_FILE}")

    def _witness_check(self) -> tuple[int, str | None]:
        """The zipapp's own `--check` with the gateway's python3: its status and, when it
        cannot run, why."""
        result = self.session.run([PYTHON, "-I", WITNESS_APP, "--check"])
        if result.ok:
            return 0, None
        lines = (result.stdout + result.stderr).strip().splitlines()
        return result.status, lines[-1] if lines else f"exit status {result.status}"

    def units(self) -> Step:
        units = ["nftables.service"]
        notes = []
        if set(self.gateway.interface) <= _UNIT_NAME_SAFE:
            units.insert(0, f"wg-quick@{self.gateway.interface}.service")
        else:
            notes.append(
                f"interface {self.gateway.interface!r} cannot be a systemd unit's instance "
                "(only letters, digits and :_.-): wg-quick@ cannot bring it up at boot; rename it"
            )
        if self.gateway.witness_port and self.witness_runs:
            units.append(f"netsetup-witness@{self.site.id}.service")
        elif self.gateway.witness_port:
            notes.append("the witness is not enabled: it cannot run here (see the witness step)")
        status = self.helper("enable", *units)
        if notes:
            return Step("units", "warning", "; ".join([", ".join(units), *notes]))
        return Step("units", status, ", ".join(units))

    def start_witness(self) -> Step:
        """With systemd running: the witness (re)started once apply installed the profile."""
        if not self.gateway.witness_port:
            return Step("witness-start", "skipped", "the profile turns the witness off")
        if not self.witness_runs:
            return Step("witness-start", "skipped", "the witness cannot run here")
        if not self.exists("/run/systemd/system"):
            return Step("witness-start", "skipped", "systemd does not run here: it starts at boot")
        unit = f"netsetup-witness@{self.site.id}.service"
        if self.session.run(["systemctl", "is-active", "--quiet", unit]).ok:
            self.run(["systemctl", "try-restart", unit])  # the zipapp or profile may be new
            return Step("witness-start", "ok", f"{unit} runs")
        self.run(["systemctl", "start", unit])
        return Step("witness-start", "changed", f"{unit} started")

    def preparation(self) -> list[Callable[[], Step]]:
        """The steps before the apply, in order."""
        return [
            self.privileges,
            self.os_release,
            self.packages,
            self.forwarding,
            self.agent,
            self.agent_allow,
            self.sudoers,
            self.nftables_at_boot,
            self.witness,
            self.units,
        ]


def sites_to_bootstrap(profile: Profile, name: str | None) -> list[Gateway]:
    """The gateways `--gateway NAME` picks (every site without it), each with `ssh` set."""
    try:
        chosen = [profile.gateway_named(name)] if name else list(profile.gateways)
    except KeyError:
        names = ", ".join(g.name for g in profile.gateways)
        raise InputError(
            f"no gateway {name!r} in the profile (it has: {names})", where="--gateway"
        ) from None
    for gateway in chosen:
        if gateway.ssh is None:
            raise InputError(
                f'gateway {gateway.name!r} has no ssh = "user@host:port": netsetup cannot reach it',
                where=str(profile.profile_file),
            )
    return chosen


Progress = Callable[[str, Step], None]


def bootstrap_gateway(
    profile: Profile,
    gateway: Gateway,
    *,
    identity: Path | None,
    apply: Callable[[Profile, Gateway], Step] | None,
    progress: Progress | None = None,
) -> BootstrapResult:
    """Every step against one gateway; `apply` (the same as `netsetup apply` of that gateway)
    runs once the gateway is prepared. A step that fails raises: what was done before stays
    (each step is safe to run again)."""
    from netsetup.gateway.remote import GatewaySession

    assert gateway.ssh is not None
    site = profile.site(gateway.name)
    result = BootstrapResult(gateway.name, str(gateway.ssh))

    def record(step: Step) -> None:
        result.steps.append(step)
        if progress is not None:
            progress(gateway.name, step)

    with GatewaySession(gateway.ssh, host_key=gateway.host_key, identity=identity) as session:
        work = Bootstrap(session, site, gateway)
        for step in work.preparation():
            record(_named(step))
        if apply is not None:
            record(apply(profile, gateway))
            record(work.start_witness())
    return result


def _named(step: Callable[[], Step]) -> Step:
    try:
        return step()
    except RemoteError as exc:
        name = getattr(step, "__name__", "step")
        raise RemoteError(
            f"bootstrap stopped at {name}: {exc.message} (the steps before it are done; each "
            "is safe to run again)",
            where=exc.where,
        ) from None


class ApplyRefused(NetsetupError):
    """`apply` would not change the gateway (drift, a peer without a preshared key): exit 1,
    as `netsetup apply` itself."""

    exit_code = ExitCode.FINDINGS


def apply_step(
    identity: Path | None, state: StateDir, progress: Callable[[str, str], None] | None = None
) -> Callable[[Profile, Gateway], Step]:
    """Bootstrap's last step: what `netsetup apply --gateway NAME` does (netsetup.gateway.apply)."""

    def apply(profile: Profile, gateway: Gateway) -> Step:
        from netsetup.gateway.apply import ApplyOptions, apply_profile

        options = ApplyOptions(identity=identity, gateway=gateway.name)
        if progress is not None:
            options = replace(options, progress=progress)
        (result,) = apply_profile(profile, state, options).results
        if result.status == "unchanged":
            return Step("apply", "ok", result.outcome)
        if result.status == "applied":
            return Step("apply", "changed", result.outcome)
        what = f"apply {result.status} at {result.step}: {result.error} ({result.outcome})"
        if result.status == "refused":
            raise ApplyRefused(
                what + "; see `netsetup plan PROFILE`, then run `netsetup apply` with what it "
                "asks for (--adopt or --prune for peers already on the gateway)",
                where=result.target,
            )
        raise RemoteError(what, where=result.target)

    return apply
