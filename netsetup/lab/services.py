"""The office's real services: Kamailio (SIP), OpenSSH, dnsmasq (the company zone) and a TCP port
standing in for the file server and portal. Each runs in the foreground under the lab's control,
with its config, keys, pid file and log in the lab's run directory.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.lab.plan import LabPlan
from netsetup.lab.proc import LabError, pid_belongs, process_start_time, run, spawn, stop_pids

if TYPE_CHECKING:
    from netsetup.profile.model import Profile

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and insists on an absolute path
PRIVSEP_DIR = Path("/run/sshd")


@dataclass
class Service:
    """A long-running program inside one namespace. `argv` is kept so it can be restarted."""

    name: str
    namespace: str
    argv: list[str]
    log: str
    pid: int = 0
    listens: list[str] = field(default_factory=list)  # "proto:address:port", for readiness
    started: float = 0.0  # the pid's start time (epoch seconds): whose pid it still is

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "argv": self.argv,
            "log": self.log,
            "pid": self.pid,
            "listens": self.listens,
            "started": self.started,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Service:
        return cls(
            name=str(data["name"]),
            namespace=str(data["namespace"]),
            argv=[str(a) for a in data["argv"]],  # type: ignore[attr-defined]
            log=str(data["log"]),
            pid=int(data["pid"]),  # type: ignore[call-overload]
            listens=[str(a) for a in data["listens"]],  # type: ignore[attr-defined]
            started=float(data.get("started", 0)),  # type: ignore[arg-type]
        )

    @property
    def running(self) -> bool:
        """The recorded pid is alive and still the lab's own process (not a reused pid)."""
        return self.pid > 0 and pid_belongs(self.pid, self.namespace, self.started)


def start(service: Service, timeout: float = 10.0) -> None:
    """Start `service` and wait until every socket it should open is listening."""
    process = spawn(service.namespace, service.argv, Path(service.log))
    service.pid = process.pid
    service.started = process_start_time(process.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise LabError(
                    f"{service.name} exited at start (status {process.returncode}): "
                    + _log_tail(Path(service.log))
                )
            if _listening(service):
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"{service.name} did not open its ports: " + _log_tail(Path(service.log))
                )
            time.sleep(0.05)
    except BaseException:
        stop_pids([process.pid])
        raise


def stop(service: Service) -> None:
    if service.running:  # never signal a pid that is no longer the service's
        stop_pids([service.pid])
    service.pid = service.started = 0


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(lines[-3:]) or "(empty log)"


def _listening(service: Service) -> bool:
    if not service.listens:
        return True
    result = run(["ip", "netns", "exec", service.namespace, "ss", "-Hlntu"], check=False)
    if not result.ok:
        # not the service's fault: say what failed instead of waiting and blaming the service
        detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise LabError(
            f"could not list the listening sockets in {service.namespace} with `ss` "
            f"(package iproute2): {detail}"
        )
    table = result.stdout
    sockets = set()
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 5:
            sockets.add((parts[0], parts[4]))
    for want in service.listens:
        proto, rest = want.split(":", 1)
        address, port = rest.rsplit(":", 1)
        host = f"[{address}]" if ":" in address else address
        if (proto, f"{host}:{port}") not in sockets and (proto, f"*:{port}") not in sockets:
            wildcard = "0.0.0.0" if ":" not in address else "[::]"
            if (proto, f"{wildcard}:{port}") not in sockets:
                return False
    return True


# -- TLS certificate for Kamailio -----------------------------------------------------------


def make_certificate(
    directory: Path, common_name: str, addresses: list[str], now: datetime
) -> tuple[Path, Path]:
    """A self-signed certificate (EC P-256, valid one day from `now`) for the SIP server's TLS
    port. TLS clients check it against the kernel's clock, so the lab passes the real time."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt: list[x509.GeneralName] = [x509.DNSName(common_name)]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "sip-key.pem", directory / "sip-cert.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


# -- Kamailio -------------------------------------------------------------------------------


def kamailio_service(
    namespace: str,
    plan: LabPlan,
    transports: list[str],
    sip_port: int,
    tls_port: int,
    domain: str,
    directory: Path,
    now: datetime,
) -> Service:
    """Kamailio answering OPTIONS with 200 on the SIP server's address (UDP, TCP, TLS)."""
    assert plan.sip_server is not None
    directory.mkdir(parents=True, exist_ok=True)
    address = str(plan.sip_server)
    host = f"[{address}]" if ":" in address else address
    listens, listen_lines = [], []
    for transport in transports:
        port = tls_port if transport == "tls" else sip_port
        listen_lines.append(f"listen={transport}:{host}:{port}")
        listens.append(f"{'udp' if transport == 'udp' else 'tcp'}:{address}:{port}")
    tls = "tls" in transports
    lines = [
        "#!KAMAILIO",
        "# netsetup lab: a SIP server that answers OPTIONS (the PBX's health check)",
        "debug=2",
        "log_stderror=yes",
        "fork=yes",
        "children=2",
        "tcp_children=2",
        "auto_aliases=no",
        f"alias={domain}",
        f"enable_tls={'yes' if tls else 'no'}",
        *listen_lines,
    ]
    if tls:
        key, cert = make_certificate(directory, domain, [address], now)
        (directory / "tls.cfg").write_text(
            "[server:default]\n"
            "method = TLSv1.2+\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
            f"private_key = {key}\n"
            f"certificate = {cert}\n"
            "\n[client:default]\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
        )
        lines += ['loadmodule "tls.so"', f'modparam("tls", "config", "{directory / "tls.cfg"}")']
    lines += [
        'loadmodule "sl.so"',
        "",
        "request_route {",
        '\tif (method == "OPTIONS") {',
        '\t\tsl_send_reply("200", "OK");',
        "\t\texit;",
        "\t}",
        '\tsl_send_reply("501", "Not Implemented");',
        "\texit;",
        "}",
    ]
    config = directory / "kamailio.cfg"
    config.write_text("\n".join(lines) + "\n")
    runtime = directory / "run"
    runtime.mkdir(exist_ok=True)
    argv = [
        "kamailio",
        "-f",
        str(config),
        "-DD",
        "-E",
        "-Y",
        str(runtime),
        "-P",
        str(directory / "kamailio.pid"),
        "-m",
        "32",
        "-M",
        "4",
    ]
    return Service("kamailio", namespace, argv, str(directory / "kamailio.log"), listens=listens)


# -- OpenSSH --------------------------------------------------------------------------------


def ensure_client_key(directory: Path) -> Path:
    """The lab's SSH client key (what `apply` and the tests log in with)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = directory / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netsetup-lab", "-f", str(key)])
    authorized = directory / "authorized_keys"
    authorized.write_text((directory / "id_ed25519.pub").read_text())
    os.chmod(authorized, 0o600)
    return key


def sshd_service(
    name: str,
    namespace: str,
    addresses: list[str],
    ports: list[int],
    directory: Path,
    authorized_keys: Path,
    private_root: Path | None = None,
) -> Service:
    """OpenSSH with key authentication only, its own host key, config and pid file; with
    `private_root`, in a mount namespace of its own (`private_root_argv`)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    host_key = directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)  # Debian's sshd needs it; tmpfiles.d owns it
    listen = [f"ListenAddress {a}" for a in addresses]
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "# netsetup lab: key authentication only",
                *[f"Port {p}" for p in ports],
                *listen,
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n"
    )
    argv = [SSHD, "-D", "-e", "-f", str(config)]
    if private_root is not None:
        argv = private_root_argv(private_root, argv)
    listens = [f"tcp:{a}:{p}" for a in addresses for p in ports]
    return Service(name, namespace, argv, str(directory / "sshd.log"), listens=listens)


# The directories a gateway's admin tools write (`gateway bootstrap`, the gateway agent): the
# lab gateway's sshd sees each through an overlay whose changes land in the lab's run directory.
GATEWAY_PRIVATE_DIRS = ("/etc", "/usr/local", "/var/lib", "/var/log")


def gateway_root_layers(root: Path, directory: str) -> tuple[Path, Path]:
    """The overlay's upper (what the gateway wrote) and work directories for `directory`."""
    slug = directory.strip("/").replace("/", "-")
    return root / slug / "upper", root / slug / "work"


def private_root_argv(root: Path, argv: list[str]) -> list[str]:
    """`argv` run in a mount namespace of its own where GATEWAY_PRIVATE_DIRS are overlays kept
    under `root`, and /etc/wireguard is `root`/wireguard itself (bound, so the lab and the
    gateway see one file: an overlay's layers must not change under it). Whatever the sshd's
    sessions write there (bootstrap, apply) never reaches the host's /etc."""
    import shlex

    lines = ["set -e"]
    for directory in GATEWAY_PRIVATE_DIRS:
        upper, work = gateway_root_layers(root, directory)
        upper.mkdir(parents=True, exist_ok=True, mode=0o755)
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        options = f"lowerdir={directory},upperdir={upper},workdir={work}"
        lines.append(f"mount -t overlay netsetup-lab -o {shlex.quote(options)} {directory}")
    wireguard = gateway_wireguard_dir(root)
    bind = f"mount --bind {shlex.quote(str(wireguard))} /etc/wireguard"
    lines += ["mkdir -p /etc/wireguard", bind]
    lines.append('exec "$@"')
    script = "\n".join(lines)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv]


def gateway_wireguard_dir(root: Path) -> Path:
    """What the lab gateway's sshd sees as /etc/wireguard (made here, 0700)."""
    directory = root / "wireguard"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


# -- dnsmasq --------------------------------------------------------------------------------


def dnsmasq_service(
    namespace: str,
    servers: list[str],
    records: list[tuple[str, str]],
    domains: list[str],
    directory: Path,
) -> Service:
    """dnsmasq answering the company zone, authoritative for its domains, with no upstream."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--log-facility=-",
        "--user=root",
        "--group=root",
        f"--pid-file={directory / 'dnsmasq.pid'}",
        "--port=53",
    ]
    argv += [f"--listen-address={s}" for s in servers]
    argv += [f"--host-record={name},{address}" for name, address in records]
    argv += [f"--local=/{d}/" for d in domains]
    listens = [f"{proto}:{s}:53" for s in servers for proto in ("udp", "tcp")]
    return Service("dnsmasq", namespace, argv, str(directory / "dnsmasq.log"), listens=listens)


# -- the file server and portal stand-in -----------------------------------------------------


def tcp_service(namespace: str, endpoints: list[tuple[str, int]], directory: Path) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "netsetup.lab.fileservice"]
    for address, port in endpoints:
        argv += ["--listen", f"[{address}]:{port}" if ":" in address else f"{address}:{port}"]
    listens = [f"tcp:{a}:{p}" for a, p in endpoints]
    return Service("files", namespace, argv, str(directory / "files.log"), listens=listens)


# -- the gateway witness ---------------------------------------------------------------------


def witness_service(
    namespace: str,
    profile_dir: Path,
    state_dir: Path,
    key_file: Path,
    port: int,
    directory: Path,
) -> Service:
    """`netsetup responder --role gateway` on the lab's gateway: it reads the live interface's
    key (a `wrong-key` fault is what it answers with), with the lab's key file as the fallback."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "netsetup",
        "responder",
        "--profile",
        str(profile_dir),
        "--role",
        "gateway",
        "--state-dir",
        str(state_dir),
        "--key-file",
        str(key_file),
    ]
    listens = [f"udp:0.0.0.0:{port}", f"udp:{'::'}:{port}"]
    return Service("witness", namespace, argv, str(directory / "witness.log"), listens=listens)


def office_responder_service(
    namespace: str,
    profile_dir: Path,
    state_dir: Path,
    address: str,
    port: int,
    directory: Path,
) -> Service:
    """`netsetup responder --role office` in the office, on the profile's `[diagnose] responder`,
    with the lab state's token; its media address is the PBX's (in the office too). The speed
    endpoint on the same TCP port when this build has it."""
    import importlib.util

    directory.mkdir(parents=True, exist_ok=True)
    endpoint = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    argv = [sys.executable, "-m", "netsetup", "responder", "--profile", str(profile_dir)]
    argv += ["--role", "office", "--listen", endpoint, "--state-dir", str(state_dir)]
    listens = [f"udp:{address}:{port}"]
    if importlib.util.find_spec("netsetup.responder.speedhttp") is not None:
        listens.append(f"tcp:{address}:{port}")
    return Service(
        "office-responder", namespace, argv, str(directory / "office.log"), listens=listens
    )


# -- which services one lab runs ---------------------------------------------------------------


@dataclass(frozen=True)
class ServiceHosts:
    """Where a lab's services run and keep their files."""

    office: str  # the office's namespace
    gateway: str  # the gateway's namespace
    directory: Path  # the lab's `services` directory
    authorized_keys: Path  # the lab's SSH client key, accepted by every sshd
    gateway_root: Path | None = None  # the gateway sshd's private /etc etc. (private_root_argv)


def lab_services(
    profile: Profile, plan: LabPlan, hosts: ServiceHosts, now: datetime
) -> list[Service]:
    """Every service a lab for `profile` runs, in the order they start: the company's DNS and SIP
    server when the profile has them, SSH in the office and on the gateway, and the TCP stand-in
    for the file server and portals."""
    wanted = [_dns_service(profile, plan, hosts), _sip_service(profile, plan, hosts, now)]
    wanted += [
        sshd_service(
            "sshd",
            hosts.office,
            [str(h) for h in plan.office_hosts],
            plan.ssh_ports,
            hosts.directory / "sshd-office",
            hosts.authorized_keys,
        ),
        sshd_service(
            "gateway-sshd",
            hosts.gateway,
            [str(plan.gateway_wan.v4.ip), str(plan.gateway_lan.v4.ip)],
            [22],
            hosts.directory / "sshd-gateway",
            hosts.authorized_keys,
            hosts.gateway_root,
        ),
    ]
    https = target_endpoints(profile, plan, "https")
    endpoints = sorted({(str(s.host), s.port) for s in plan.tcp_services} - set(https))
    if endpoints:
        wanted.append(tcp_service(hosts.office, endpoints, hosts.directory / "files"))
    wanted += _target_services(profile, plan, hosts, now)
    return [s for s in wanted if s is not None]


def _dns_service(profile: Profile, plan: LabPlan, hosts: ServiceHosts) -> Service | None:
    if not plan.dns_servers:
        return None
    domains = list(profile.dns.search)
    if profile.voip and profile.voip.sip_domain:
        domains.append(profile.voip.sip_domain)
    return dnsmasq_service(
        hosts.office,
        [str(s) for s in plan.dns_servers],
        [(n, str(a)) for n, a in plan.dns_records],
        sorted(set(domains)),
        hosts.directory / "dnsmasq",
    )


def _sip_service(
    profile: Profile, plan: LabPlan, hosts: ServiceHosts, now: datetime
) -> Service | None:
    voip = profile.voip
    if voip is None:
        return None
    return kamailio_service(
        hosts.office,
        plan,
        list(voip.transports),
        voip.sip_port,
        voip.tls_port,
        voip.sip_domain or profile.id,
        hosts.directory / "kamailio",
        now,
    )


# -- diagnose targets of kind https (the portal over TLS) and rdp (xrdp) -----------------------

TARGET_DEFAULT_PORTS = {"https": 443, "rdp": 3389}
XRDP_INI = Path("/etc/xrdp/xrdp.ini")


def target_endpoints(profile: Profile, plan: LabPlan, kind: str) -> list[tuple[str, int]]:
    """(address, port) of the profile's diagnose targets of `kind`, names looked up in the
    lab's DNS records."""
    records = {name: str(address) for name, address in plan.dns_records}
    found: set[tuple[str, int]] = set()
    for target in profile.diagnose.targets:
        if target.kind != kind:
            continue
        host = str(target.host)
        address = records.get(host, host)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            continue  # a name the lab does not serve
        found.add((address, target.port or TARGET_DEFAULT_PORTS[kind]))
    return sorted(found)


def _target_services(
    profile: Profile, plan: LabPlan, hosts: ServiceHosts, now: datetime
) -> list[Service]:
    wanted: list[Service] = []
    https = target_endpoints(profile, plan, "https")
    if https:
        wanted.append(portal_service(hosts.office, https, hosts.directory / "portal", now))
    for index, (address, port) in enumerate(target_endpoints(profile, plan, "rdp")):
        name = "xrdp" if index == 0 else f"xrdp-{index}"
        wanted.append(xrdp_service(name, hosts.office, address, port, hosts.directory / name))
    return wanted


def portal_service(
    namespace: str, endpoints: list[tuple[str, int]], directory: Path, now: datetime
) -> Service:
    """The web portal over TLS (the lab's self-signed certificate) on the https targets."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = make_certificate(directory, "portal.lab.example", [a for a, _ in endpoints], now)
    argv = [sys.executable, "-m", "netsetup.lab.portalservice", "--cert", str(cert)]
    argv += ["--key", str(key)]
    for address, port in endpoints:
        argv += ["--listen", f"[{address}]:{port}" if ":" in address else f"{address}:{port}"]
    listens = [f"tcp:{a}:{p}" for a, p in endpoints]
    return Service("portal", namespace, argv, str(directory / "portal.log"), listens=listens)


def xrdp_ini(source: str, address: str, port: int, log: Path) -> str:
    """Debian's xrdp.ini with the lab's listening address, no fork and its own log file."""
    listen = f"tcp6://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"
    changes = {
        "port": listen,
        "fork": "false",
        "LogFile": str(log),
        "EnableSyslog": "false",
    }
    lines = []
    for line in source.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith((";", "#")) and key in changes:
            line = f"{key}={changes.pop(key)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def xrdp_service(name: str, namespace: str, address: str, port: int, directory: Path) -> Service:
    """xrdp in the foreground on the rdp target's address: enough for the X.224 handshake
    (no xrdp-sesman: nobody logs in to the lab's desktop)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "xrdp.ini"
    config.write_text(xrdp_ini(XRDP_INI.read_text(), address, port, directory / "xrdp.log"))
    argv = ["xrdp", "--nodaemon", "--config", str(config)]
    listens = [f"tcp:{address}:{port}"]
    return Service(name, namespace, argv, str(directory / "xrdp.out"), listens=listens)


# -- the assistant's machine trusts the lab's portal certificate ----------------------------------

HOST_SSL_DIR = Path("/etc/ssl")
CA_BUNDLE = Path("certs") / "ca-certificates.crt"


def trust_portal_certificate(namespace: str, portal_directory: Path) -> Path | None:
    """Let programs run in `namespace` (`ip netns exec`) trust the lab portal's certificate, as a
    company hands its certificate to its assistants' machines: a copy of the host's /etc/ssl
    with the certificate added to the CA bundle, under /etc/netns/<namespace>/ssl (which
    `ip netns exec` mounts over /etc/ssl; it goes with the namespace's other files at `down`).
    The host's own /etc/ssl is never written. Returns the bundle (None: no portal)."""
    import shutil

    from netsetup.lab.topology import NETNS_ETC

    cert = portal_directory / "sip-cert.pem"  # make_certificate's name for it
    if not cert.exists():
        return None
    copy = NETNS_ETC / namespace / "ssl"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(HOST_SSL_DIR, copy, symlinks=True)
    bundle = copy / CA_BUNDLE
    existing = bundle.read_text() if bundle.exists() else ""
    bundle.unlink(missing_ok=True)  # a symlink on some systems: never write through it
    bundle.write_text(existing.rstrip("\n") + "\n" + cert.read_text())
    return bundle
