"""What the lab proofs of `apply` (tests/lab/test_apply_*.py) and benchmarks/apply_bench.py share:
the gateway as its sshd sees it (its own mount namespace), many peers written at once, the
gateway's state taken apart from counters and handshakes, the faults (failing `wg` / `nft`, an SSH
connection cut mid-upload, a changed host key), a second gateway, and a pinger that counts.

No pytest here: the benchmark imports it too. Nothing secret is ever put into a value a test
could print (a failed assert shows it): keys and files are compared by their SHA-256.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsetup.fsutil import atomic_write, write_secret
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.lab import services, tomlwrite
from netsetup.lab.proc import LabError, Result, in_ns, ns_run, run
from netsetup.profile.model import Peer
from netsetup.profile.store import load_peers, peer_to_toml
from netsetup.profile.values import PeerName, ProfileId
from netsetup.state import StateDir

if TYPE_CHECKING:
    from netsetup.lab import Lab

REPO = Path(__file__).resolve().parents[2]
AGENT_SOURCE = REPO / "netsetup" / "gateway" / "agent.py"
AGENT_PATH = "/usr/local/sbin/netsetup-gateway"
GATEWAY_AUDIT = "/var/log/netsetup/audit.jsonl"
GATEWAY_SSHD = "gateway-sshd"
# where a shadowing wrapper goes: the agent's fixed PATH searches /usr/local/bin before the
# real programs' directories, and only root may write there
WRAPPER_DIR = "/usr/local/bin"
# the wrappers' "fired" markers, inside the gateway's own /var/lib overlay (never the host's)
FAULT_MARKS = "/var/lib/netsetup-lab-faults"


# -- the gateway as its sshd sees it ----------------------------------------------------------


def sshd_pid(lab: Lab, service: str = GATEWAY_SSHD) -> int:
    """The pid of a gateway's sshd: the process whose mount namespace apply's sessions get."""
    record = lab.record.service(service)
    if not record.running:
        raise LabError(f"{service} of lab {lab.prefix} is not running")
    return record.pid


def gateway_run(
    lab: Lab,
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    service: str = GATEWAY_SSHD,
    timeout: float = 60.0,
) -> Result:
    """`argv` on the gateway with its sshd's network and mount namespaces (its /etc, /usr/local,
    /var/lib, /var/log overlays and /etc/wireguard), as a root login over SSH would run it."""
    pid = sshd_pid(lab, service)
    enter = ["nsenter", f"--target={pid}", "--mount", "--net", "--"]
    return run([*enter, *argv], input=input, check=check, timeout=timeout)


def install_agent(lab: Lab, service: str = GATEWAY_SSHD) -> None:
    """The gateway agent in place as `gateway bootstrap` installs it (root 0755), and the root
    login's stage folder (0700): what a bootstrapped gateway has."""
    script = (
        "set -e; umask 022; mkdir -p /usr/local/sbin; "
        f"cat > {AGENT_PATH}.new; chmod 0755 {AGENT_PATH}.new; mv {AGENT_PATH}.new {AGENT_PATH}; "
        "install -d -m 0700 /var/lib/netsetup/stage/root"
    )
    gateway_run(lab, ["sh", "-c", script], input=AGENT_SOURCE.read_text(), service=service)


def gateway_audit_lines(lab: Lab, service: str = GATEWAY_SSHD) -> list[str]:
    """The agent's audit log on the gateway (one line per commit/confirm/rollback/revert)."""
    result = gateway_run(lab, ["cat", GATEWAY_AUDIT], check=False, service=service)
    return result.stdout.splitlines() if result.ok else []


def stage_files(lab: Lab, service: str = GATEWAY_SSHD) -> list[str]:
    """Whatever is left in the root login's stage folder (staged files hold secrets)."""
    result = gateway_run(
        lab, ["ls", "-A", "/var/lib/netsetup/stage/root"], check=False, service=service
    )
    return result.stdout.split() if result.ok else []


def sshd_accepted_logins(lab: Lab, service: str = GATEWAY_SSHD) -> int:
    """How many logins the gateway's sshd accepted so far (its log, LogLevel INFO)."""
    log = Path(lab.record.service(service).log)
    return log.read_text(errors="replace").count("Accepted publickey")


# -- netsetup as the admin runs it ------------------------------------------------------------


def admin(lab: Lab, *args: str, timeout: float = 600.0) -> Result:
    """`netsetup ARGS` from the office LAN, never raising on a non-zero exit (the exit code is
    what the tests check). The child sees this checkout first on its path."""
    from netsetup.lab.admin import netsetup_as_admin

    env = {"PYTHONPATH": str(REPO)}
    return netsetup_as_admin(lab, *args, check=False, timeout=timeout, env=env)


def apply(lab: Lab, *extra: str) -> Result:
    return admin(lab, "apply", str(lab.profile_dir), *extra)


def plan(lab: Lab, *extra: str) -> Result:
    return admin(lab, "plan", str(lab.profile_dir), *extra)


def explain(result: Result) -> str:
    """A failed command's output for an assert message (netsetup never prints a secret)."""
    out, err = result.stdout[-3000:], result.stderr[-3000:]
    return f"exit {result.returncode}\nstdout:\n{out}\nstderr:\n{err}"


# -- many peers at once -----------------------------------------------------------------------


def add_peers(
    lab: Lab,
    count: int,
    *,
    stem: str = "bulk",
    mode: str = "dedicated",
    site: str | None = None,
) -> list[Peer]:
    """`count` peer files and their preshared keys (in the lab's state folder), written in this
    process as `provision` would leave them: a fresh key pair each (the private key is dropped:
    nobody connects as these), the next free addresses of the site's tunnel subnets."""
    profile = lab.profile()
    view = profile.site(site)
    peers = load_peers(profile)
    taken = {p.address_v4 for p in peers} | {view.network.gateway_address_v4}
    state = StateDir(lab.state_dir)
    profile_id = ProfileId(profile.id)
    now = datetime.now(UTC).replace(microsecond=0)
    hosts = (a for a in view.network.tunnel_v4.hosts() if a not in taken)
    first = len([p for p in peers if p.name.startswith(f"{stem}-")])
    made = []
    profile.peers_dir.mkdir(exist_ok=True)
    for index in range(first, first + count):
        address = next(hosts)
        offset = int(address) - int(view.network.tunnel_v4.network_address)
        v6 = view.network.tunnel_v6
        address_v6 = ipaddress.IPv6Address(int(v6.network_address) + offset) if v6 else None
        name = PeerName(f"{stem}-{index}")
        public = generate_keypair().public
        peer = Peer(name, mode, public, address, address_v6, now, gateway=site)
        state.save_psk(profile_id, name, public, generate_preshared_key())
        atomic_write(profile.peers_dir / f"{name}.toml", peer_to_toml(peer), mode=0o644)
        made.append(peer)
    return made


def set_gateway_keys(lab: Lab, site_index: int | None = None, **values: Any) -> None:
    """Change keys of `[gateway]` (or of the n-th `[[gateway]]`) in the lab's profile copy."""
    path = lab.profile_dir / "profile.toml"
    data = tomllib.loads(path.read_text())
    table = data["gateway"] if site_index is None else data["gateway"][site_index]
    table.update(values)
    atomic_write(path, tomlwrite.dumps(data), mode=0o644)


def gateway_table(lab: Lab, site_index: int | None = None) -> dict[str, Any]:
    data = tomllib.loads((lab.profile_dir / "profile.toml").read_text())
    table = data["gateway"] if site_index is None else data["gateway"][site_index]
    return dict(table)


# -- the gateway's state, apart from what runs on by itself ------------------------------------


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def wg_dump(namespace: str, interface: str) -> list[list[str]]:
    result = ns_run(namespace, ["wg", "show", interface, "dump"])
    return [line.split("\t") for line in result.stdout.splitlines() if line.strip()]


def wg_state(namespace: str, interface: str) -> tuple[str, ...]:
    """`wg show dump` without counters, handshakes and endpoints, peers sorted, the private and
    preshared keys replaced by their digests (equal when the keys are)."""
    rows = wg_dump(namespace, interface)
    if not rows:
        return ()
    private, public, port, fwmark = rows[0][:4]
    head = "\t".join([_digest(private), public, port, fwmark])
    peers = sorted(
        "\t".join([key, _digest(psk) if psk != "(none)" else psk, allowed, keepalive])
        for key, psk, _endpoint, allowed, _handshake, _rx, _tx, keepalive in (
            row[:8] for row in rows[1:]
        )
    )
    return (head, *peers)


@dataclass(frozen=True)
class Session:
    """What the gateway knows of a peer's live session (`wg show dump`), nothing secret."""

    endpoint: str
    handshake: int
    rx: int
    tx: int


def sessions(namespace: str, interface: str) -> dict[str, Session]:
    """The peers with a session (a handshake), by public key."""
    rows = wg_dump(namespace, interface)[1:]
    found = {row[0]: Session(row[2], int(row[4]), int(row[5]), int(row[6])) for row in rows}
    return {key: session for key, session in found.items() if session.handshake > 0}


def sessions_reset(before: dict[str, Session], after: dict[str, Session]) -> list[str]:
    """The peers of `before` whose session the gateway reset or dropped: gone, no handshake or
    endpoint any more, or transfer counters that went back (a re-created peer starts at 0).
    A new handshake alone is no reset: sessions rekey every two minutes."""
    reset = []
    for key, was in before.items():
        now = after.get(key)
        if now is None or now.endpoint == "(none)" or now.rx < was.rx or now.tx < was.tx:
            reset.append(key)
    return reset


_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def normalise_ruleset(text: str) -> str:
    """`nft list ruleset` apart from the elements of timed sets (the kernel adds and expires
    them on its own: who sent to WireGuard's port lately) and rule counters."""
    out: list[str] = []
    block: list[str] = []
    in_set = False
    for line in text.splitlines():
        stripped = line.strip()
        if not in_set and re.match(r"(set|map) \S+ \{$", stripped):
            in_set, block = True, [line]
            continue
        if in_set:
            block.append(line)
            if stripped == "}":
                out += _without_timed_elements(block)
                in_set = False
            continue
        out.append(_COUNTER.sub("counter", line))
    return "\n".join(out)


def _without_timed_elements(block: list[str]) -> list[str]:
    timed = any(re.search(r"^\s*(flags .*timeout|timeout )", line) for line in block)
    if not timed:
        return block
    kept: list[str] = []
    in_elements = False
    for line in block:
        if line.strip().startswith("elements = {"):
            in_elements = not line.rstrip().endswith("}")
            continue
        if in_elements:
            in_elements = not line.rstrip().endswith("}")
            continue
        kept.append(line)
    return kept


@dataclass(frozen=True)
class GatewaySnapshot:
    """A gateway as `apply` must leave it after a fault: its files (as its sshd sees them, by
    digest), its live WireGuard state and its ruleset, each apart from what runs on by itself."""

    files: dict[str, str]
    wireguard: tuple[str, ...]
    ruleset: str

    def differences(self, other: GatewaySnapshot) -> list[str]:
        found = []
        for path in sorted(set(self.files) | set(other.files)):
            if self.files.get(path) != other.files.get(path):
                found.append(f"file {path}: {self.files.get(path)} -> {other.files.get(path)}")
        before, after = set(self.wireguard), set(other.wireguard)
        found += [f"wg lost: {line}" for line in sorted(before - after)]
        found += [f"wg gained: {line}" for line in sorted(after - before)]
        if self.ruleset != other.ruleset:
            import difflib

            diff = difflib.unified_diff(
                self.ruleset.splitlines(), other.ruleset.splitlines(), lineterm="", n=1
            )
            found.append("ruleset:\n" + "\n".join(list(diff)[:60]))
        return found


def gateway_files(root: Path, interface: str) -> dict[str, str]:
    """The files apply manages, read where the gateway's sshd keeps them (`lab.gateway_root`):
    /etc/wireguard, /etc/netsetup and the interface's applied.json."""
    places = [
        (root / "wireguard", "/etc/wireguard"),
        (root / "etc" / "upper" / "netsetup", "/etc/netsetup"),
    ]
    files: dict[str, str] = {}
    for directory, seen_as in places:
        for path in sorted(directory.rglob("*")) if directory.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                relative = path.relative_to(directory)
                files[f"{seen_as}/{relative}"] = _file_digest(path)
    applied = root / "var-lib" / "upper" / "netsetup" / interface / "applied.json"
    if applied.is_file():
        files[f"/var/lib/netsetup/{interface}/applied.json"] = _file_digest(applied)
    return files


def _file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def snapshot(
    lab: Lab,
    *,
    namespace: str | None = None,
    interface: str | None = None,
    root: Path | None = None,
) -> GatewaySnapshot:
    namespace = namespace or lab.ns("gateway")
    interface = interface or lab.gateway_interface
    root = root or lab.gateway_root
    ruleset = ns_run(namespace, ["nft", "list", "ruleset"]).stdout
    return GatewaySnapshot(
        gateway_files(root, interface), wg_state(namespace, interface), normalise_ruleset(ruleset)
    )


def settled_snapshot(lab: Lab, **where: Any) -> GatewaySnapshot:
    """A snapshot taken twice until two agree (a revert timer may still be finishing)."""
    previous = snapshot(lab, **where)
    for _ in range(20):
        time.sleep(0.5)
        current = snapshot(lab, **where)
        if current == previous:
            return current
        previous = current
    return previous


def peer_keys(namespace: str, interface: str) -> set[str]:
    return {row[0] for row in wg_dump(namespace, interface)[1:]}


def add_hand_peer(lab: Lab, address: str) -> str:
    """A peer a colleague added by hand on the gateway, the way wg-quick users do: `wg set` on
    the live interface and a [Peer] section (with a comment) appended to its config file.
    Returns its public key; its preshared key exists only on the gateway."""
    keys, psk = generate_keypair(), generate_preshared_key()
    psk_file = lab.run_dir / "hand-peer.psk"
    write_secret(psk_file, psk.reveal() + "\n")
    try:
        ns_run(
            lab.ns("gateway"),
            ["wg", "set", lab.gateway_interface, "peer", keys.public,
             "preshared-key", str(psk_file), "allowed-ips", f"{address}/32"],
        )  # fmt: skip
    finally:
        psk_file.unlink()
    section = (
        "\n# added by hand on the gateway\n[Peer]\n"
        f"PublicKey = {keys.public}\nPresharedKey = {psk.reveal()}\nAllowedIPs = {address}/32\n"
    )
    with open(lab.gateway_config, "a") as config:
        config.write(section)
    return keys.public


# -- faults -----------------------------------------------------------------------------------

# A wrapper that shadows a real program on the gateway: the first call that matches runs the
# real program (so there is something to undo) and then fails; every later call (the restore)
# is the real program. The mark says it fired.
_WRAPPER = """#!/bin/sh
# netsetup lab fault: {what}
if {condition} && mkdir {mark} 2>/dev/null; then
    {real} "$@"
    echo "netsetup lab fault: {what}" >&2
    exit 1
fi
exec {real} "$@"
"""

WG_SYNCCONF = ("wg", '[ "$1" = syncconf ]', "the first wg syncconf fails after running")
# `nft -f FILE` that is not a check (`-c`): the first real load fails after loading
NFT_LOAD = (
    "nft",
    'case " $* " in *" -c "*|*" --check "*) false;; *" -f "*|*" --file "*) true;; *) false;; esac',
    "the first nft -f fails after loading",
)


@contextmanager
def failing_program(
    lab: Lab, fault: tuple[str, str, str], service: str = GATEWAY_SSHD
) -> Iterator[Path]:
    """A wrapper of `wg` or `nft` in the gateway's /usr/local/bin for the duration; yields the
    mark (in the gateway's /var/lib, as the lab's gateway root holds it) that shows it fired."""
    program, condition, what = fault
    real = subprocess.run(["which", program], capture_output=True, text=True, check=True)
    mark = f"{FAULT_MARKS}/{program}.fired"
    script = _WRAPPER.format(what=what, condition=condition, mark=mark, real=real.stdout.strip())
    wrapper = f"{WRAPPER_DIR}/{program}"
    install = (
        f"set -e; mkdir -p {WRAPPER_DIR} {FAULT_MARKS}; rm -rf {mark}; "
        f"cat > {wrapper}; chmod 0755 {wrapper}"
    )
    gateway_run(lab, ["sh", "-c", install], input=script, service=service)
    try:
        yield Path(mark)
    finally:
        gateway_run(lab, ["rm", "-f", wrapper], service=service)


def fault_fired(lab: Lab, mark: Path, service: str = GATEWAY_SSHD) -> bool:
    return gateway_run(lab, ["test", "-d", str(mark)], check=False, service=service).ok


def ssh_bytes_of(lab: Lab, action: Any) -> int:
    """Bytes the office sent to the gateway's SSH port while `action()` ran (a counter rule in
    a table of the gateway namespace's own, removed after)."""
    office = str(lab.plan.office_lan.v4.ip)
    table = "netsetup_labcount"
    ruleset = (
        f"table inet {table} {{\n"
        "\tcounter office_ssh { }\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority -10; policy accept;\n"
        f'\t\tip saddr {office} tcp dport 22 counter name "office_ssh"\n'
        "\t}\n}\n"
    )
    ns_run(lab.ns("gateway"), ["nft", "-f", "-"], input=ruleset)
    try:
        action()
        listed = ns_run(
            lab.ns("gateway"), ["nft", "-j", "list", "counter", "inet", table, "office_ssh"]
        )
        counters = [
            item["counter"] for item in json.loads(listed.stdout)["nftables"] if "counter" in item
        ]
        return int(counters[0]["bytes"])
    finally:
        ns_run(lab.ns("gateway"), ["nft", "delete", "table", "inet", table], check=False)


@contextmanager
def ssh_cut_after(lab: Lab, limit: int) -> Iterator[Any]:
    """Every SSH connection from the office to the gateway is reset once its client has sent
    more than `limit` bytes (conntrack's count of the original direction): both ends get a TCP
    reset, the admin's at its next packet in, the gateway's sshd at its next packet out (the
    resets themselves pass: they belong to the same connection). Yields
    a function that tells how many packets the cut rejected."""
    gateway = lab.ns("gateway")
    office = str(lab.plan.office_lan.v4.ip)
    table = "netsetup_labcut"
    acct = ns_run(gateway, ["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).stdout.strip()
    ns_run(gateway, ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"])
    ruleset = (
        f"table inet {table} {{\n"
        "\tcounter cut { }\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority -10; policy accept;\n"
        f"\t\tip saddr {office} tcp dport 22 tcp flags & rst == 0 "
        f"ct original bytes > {limit} "
        'counter name "cut" reject with tcp reset\n'
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority -10; policy accept;\n"
        f"\t\tip daddr {office} tcp sport 22 tcp flags & rst == 0 "
        f"ct original bytes > {limit} "
        'counter name "cut" reject with tcp reset\n'
        "\t}\n}\n"
    )
    ns_run(gateway, ["nft", "-f", "-"], input=ruleset)

    def rejected() -> int:
        listed = ns_run(gateway, ["nft", "-j", "list", "counter", "inet", table, "cut"])
        items = json.loads(listed.stdout)["nftables"]
        return int(next(i["counter"]["packets"] for i in items if "counter" in i))

    try:
        yield rejected
    finally:
        ns_run(gateway, ["nft", "delete", "table", "inet", table], check=False)
        ns_run(gateway, ["sysctl", "-q", "-w", f"net.netfilter.nf_conntrack_acct={acct}"])


def other_host_key(lab: Lab) -> str:
    """A real host key's fingerprint that is not the gateway's: the office sshd's."""
    from netsetup.lab.labprofile import host_key_fingerprint

    key = lab.run_dir / "services" / "sshd-office" / "ssh_host_ed25519_key.pub"
    return host_key_fingerprint(key)


# -- pinging through a tunnel, every packet counted ----------------------------------------------


@dataclass(frozen=True)
class PingCount:
    transmitted: int
    received: int
    output: str


class Pinger:
    """`ping -c COUNT -i INTERVAL` from a lab host: a fixed count, so ping itself waits for the
    last reply and its summary counts exactly what was sent and what came back."""

    def __init__(self, namespace: str, target: str, *, count: int, interval: float = 0.05) -> None:
        self.count, self.interval = count, interval
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "2", target]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            in_ns(namespace, argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    @property
    def sending_until(self) -> float:
        """When (time.monotonic) the last request goes out."""
        return self.started + self.count * self.interval

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> PingCount:
        output, _ = self.process.communicate(timeout=self.count * self.interval + 60)
        found = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        if not found:
            raise LabError(f"no ping summary: {output[-400:]}")
        return PingCount(int(found.group(1)), int(found.group(2)), output)

    def stop(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGINT)
            self.process.communicate(timeout=10)


# -- a second gateway (site) ------------------------------------------------------------------


@dataclass(frozen=True)
class SecondGateway:
    """Another gateway in its own lab namespace (`<prefix>-gw2`, removed with the lab): linked to
    the office only (where the admin runs), its own sshd in a mount namespace of its own (its own
    /etc, /usr/local, /var/lib, /var/log overlays and /etc/wireguard under `root`), its own
    WireGuard interface up with a key that only its config holds."""

    namespace: str
    interface: str
    address: str
    office_address: str
    network: str
    root: Path
    sshd: str
    host_key: str
    public_key: str
    listen_port: int

    @property
    def config(self) -> Path:
        return self.root / "wireguard" / f"{self.interface}.conf"


def add_second_gateway(
    lab: Lab, *, tunnel_v4: str, listen_port: int, service: str = "gateway2-sshd"
) -> SecondGateway:
    """Build the second gateway (see SecondGateway). Everything is named by the lab's prefix, so
    `lab.down()` removes the namespace, its processes and its files with the rest."""
    from netsetup.lab import topology
    from netsetup.lab.labprofile import host_key_fingerprint

    namespace = f"{lab.prefix}-gw2"
    interface = f"{lab.prefix}g2"
    # the last spare /24 of the lab's plan: client hosts take them from the first
    link = lab.plan.spare_v4[-1]
    hosts = list(link.hosts())
    office_address, address = str(hosts[0]), str(hosts[1])
    topology.create_namespace(namespace, forwarding=True)
    office_end, gateway_end = f"{lab.prefix}o2", f"{lab.prefix}w2"
    run(["ip", "-n", lab.ns("office"), "link", "add", office_end, "type", "veth", "peer", "name",
         gateway_end, "netns", namespace])  # fmt: skip
    run(["ip", "-n", lab.ns("office"), "addr", "add", f"{office_address}/24", "dev", office_end])
    run(["ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", gateway_end])
    run(["ip", "-n", lab.ns("office"), "link", "set", office_end, "up"])
    run(["ip", "-n", namespace, "link", "set", gateway_end, "up"])
    root = lab.run_dir / "gateway2-root"
    directory = lab.run_dir / "services" / "sshd-gateway2"
    sshd = services.sshd_service(
        service,
        namespace,
        [address],
        [22],
        directory,
        lab.run_dir / "ssh-client" / "authorized_keys",
        private_root=root,
    )
    lab.record.add_service(sshd)
    lab.save()  # recorded before it starts: `down` stops it even if we die meanwhile
    services.start(sshd)
    lab.save()
    keys = generate_keypair()
    network = ipaddress.IPv4Network(tunnel_v4)
    gateway_address = next(network.hosts())
    config = root / "wireguard" / f"{interface}.conf"
    write_secret(
        config,
        "[Interface]\n"
        f"PrivateKey = {keys.private.reveal()}\n"
        f"ListenPort = {listen_port}\n"
        f"Address = {gateway_address}/{network.prefixlen}\n",
    )
    ns_run(namespace, ["wg-quick", "up", str(config)], timeout=30)
    return SecondGateway(
        namespace=namespace,
        interface=interface,
        address=address,
        office_address=office_address,
        network=tunnel_v4,
        root=root,
        sshd=service,
        host_key=host_key_fingerprint(directory / "ssh_host_ed25519_key.pub"),
        public_key=keys.public,
        listen_port=listen_port,
    )
