"""One lab: build it from a profile, drive netsetup against it, inject faults, tear it down.

The lab works on its own copy of the profile (under its run directory) with a freshly generated
gateway key, and on its own state directory, so nothing under the repository's `profiles/` and
nothing of the admin's real state is touched. netsetup itself is driven exactly as an admin would
drive it: `python -m netsetup provision|revoke|renew|render ...` as subprocesses.

A record of the lab (`lab.json` in its run directory) lets `status`, `exec`, `fault` and `down`
work from another process; teardown also works from the unique prefix alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from netsetup.errors import InputError, NotFoundError
from netsetup.lab import cleanup, faults, services, topology, wireguard
from netsetup.lab.faults import Fault
from netsetup.lab.plan import LabPlan, plan_lab
from netsetup.lab.proc import (
    LabError,
    Result,
    ns_run,
    require_kamailio_tls,
    require_programs,
    require_root,
    run,
    signals_deferred,
    sigterm_interrupts,
)
from netsetup.lab.services import Service
from netsetup.profile.model import Profile

RUN_BASE_ENV = "NETSETUP_LAB_RUN_BASE"
RECORD_FILE = "lab.json"


def run_base() -> Path:
    return Path(os.environ.get(RUN_BASE_ENV, "/run"))


def new_prefix() -> str:
    return "nl" + secrets.token_hex(3)


@dataclass
class ClientHost:
    """A machine an assistant works on (`home`, or extra ones such as `home2`)."""

    role: str
    interface: str
    peer: str | None = None
    config: str | None = None
    index: int = 0  # names its interfaces (`<prefix>c<index>`, `lan-c<index>`), home is 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "index": self.index,
            "interface": self.interface,
            "peer": self.peer,
            "config": self.config,
        }


@dataclass
class LabRecord:
    prefix: str
    run_dir: str
    source_profile: str
    profile_dir: str
    state_dir: str
    plan: LabPlan
    created: str
    services: dict[str, Service] = field(default_factory=dict)
    clients: dict[str, ClientHost] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    fault_serial: int = 0
    spare_used: int = 0
    ready: bool = False
    created_dirs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "netsetup.lab-record/1",
            "prefix": self.prefix,
            "run_dir": self.run_dir,
            "source_profile": self.source_profile,
            "profile_dir": self.profile_dir,
            "state_dir": self.state_dir,
            "created": self.created,
            "ready": self.ready,
            "plan": self.plan.to_dict(),
            "services": {k: v.to_dict() for k, v in self.services.items()},
            "clients": {k: v.to_dict() for k, v in self.clients.items()},
            "faults": [f.to_dict() for f in self.faults],
            "fault_serial": self.fault_serial,
            "spare_used": self.spare_used,
            "created_dirs": self.created_dirs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabRecord:
        return cls(
            prefix=data["prefix"],
            run_dir=data["run_dir"],
            source_profile=data["source_profile"],
            profile_dir=data["profile_dir"],
            state_dir=data["state_dir"],
            plan=LabPlan.from_dict(data["plan"]),
            created=data["created"],
            services={k: Service.from_dict(v) for k, v in data["services"].items()},
            clients={k: ClientHost(**v) for k, v in data["clients"].items()},
            faults=[Fault.from_dict(f) for f in data["faults"]],
            fault_serial=data.get("fault_serial", 0),
            spare_used=data.get("spare_used", 0),
            ready=data.get("ready", False),
            created_dirs=list(data.get("created_dirs", [])),
        )


def write_lab_profile(
    source: Profile, destination_root: Path, public_key: str, interface: str
) -> Path:
    """Copy `source`'s profile.toml, with the lab's gateway key and interface name in
    [gateway]. Peers are not copied: the lab provisions its own."""
    text = source.profile_file.read_text()
    out: list[str] = []
    in_gateway = seen = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_gateway = stripped == "[gateway]"
            out.append(line)
            if in_gateway:
                seen = True
                out += [f'public_key = "{public_key}"', f'interface = "{interface}"']
            continue
        if in_gateway and re.match(r"(public_key|interface)\s*=", stripped):
            continue
        out.append(line)
    if not seen:
        raise InputError(
            "the lab needs a [gateway] table in profile.toml", where=str(source.profile_file)
        )
    directory = destination_root / source.id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.toml").write_text("\n".join(out) + "\n")
    return directory


class Lab:
    """A running (or planned) lab. Use `Lab.create(profile).up()` or `with Lab.create(p) as lab`."""

    def __init__(self, record: LabRecord) -> None:
        self.record = record
        self.names = topology.Names(record.prefix)

    # -- identity and paths ------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.record.prefix

    @property
    def run_dir(self) -> Path:
        return Path(self.record.run_dir)

    @property
    def plan(self) -> LabPlan:
        return self.record.plan

    @property
    def profile_dir(self) -> Path:
        return Path(self.record.profile_dir)

    @property
    def state_dir(self) -> Path:
        return Path(self.record.state_dir)

    @property
    def gateway_key_file(self) -> Path:
        return self.run_dir / "gateway" / "private.key"

    @property
    def gateway_interface(self) -> str:
        return self.names.gateway_wg

    @property
    def gateway_config(self) -> Path:
        return self.run_dir / "gateway" / f"{self.gateway_interface}.conf"

    def ns(self, role: str) -> str:
        return self.names.ns(role)

    def profile(self) -> Profile:
        from netsetup.profile.store import load_profile

        return load_profile(self.profile_dir)

    # -- create, load, save ------------------------------------------------------------------

    @classmethod
    def create(cls, profile_ref: str | Path, *, base: Path | None = None) -> Lab:
        """Plan a lab for a profile; nothing is built until `up()`."""
        from netsetup.profile.store import load_profile

        source = load_profile(profile_ref)
        plan = plan_lab(source)
        prefix = new_prefix()
        run_dir = (base or run_base()) / f"netsetup-lab-{prefix}"
        record = LabRecord(
            prefix=prefix,
            run_dir=str(run_dir),
            source_profile=str(source.directory.resolve()),
            profile_dir=str(run_dir / "profiles" / source.id),
            state_dir=str(run_dir / "state"),
            plan=plan,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return cls(record)

    @classmethod
    def load(cls, prefix: str | None = None, *, base: Path | None = None) -> Lab:
        """The lab with `prefix`, or the only lab on this machine."""
        root = base or run_base()
        if prefix is None:
            found = sorted(root.glob(f"netsetup-lab-*/{RECORD_FILE}"))
            if not found:
                raise NotFoundError("no lab is running (start one with `netsetup lab up`)")
            if len(found) > 1:
                prefixes = ", ".join(p.parent.name.removeprefix("netsetup-lab-") for p in found)
                raise InputError(f"several labs are running ({prefixes}): choose one with --lab")
            path = found[0]
        else:
            path = root / f"netsetup-lab-{prefix}" / RECORD_FILE
            if not path.is_file():
                raise NotFoundError(f"no lab {prefix!r}", where=str(path))
        return cls(LabRecord.from_dict(json.loads(path.read_text())))

    @staticmethod
    def running(base: Path | None = None) -> list[str]:
        root = base or run_base()
        return sorted(
            p.parent.name.removeprefix("netsetup-lab-")
            for p in root.glob(f"netsetup-lab-*/{RECORD_FILE}")
        )

    def save(self) -> None:
        path = self.run_dir / RECORD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record.to_dict(), indent=2))
        os.replace(tmp, path)

    # -- up and down -------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> Lab:
        """Build everything. On any failure, Ctrl-C or SIGTERM, what was built is removed."""
        require_root()
        self.check_prerequisites()
        with sigterm_interrupts():
            try:
                self._up()
            except BaseException:
                self.down()
                raise
        return self

    def check_prerequisites(self) -> None:
        """Every program and module this lab will use is installed, or one error naming the
        missing Debian packages, before anything is built."""
        from netsetup.profile.store import load_profile

        require_programs()
        voip = load_profile(self.record.source_profile).voip
        if voip is not None and "tls" in voip.transports:
            require_kamailio_tls()

    def _up(self) -> None:
        self.run_dir.mkdir(parents=True, mode=0o700)
        # host directories the lab's tools need; the ones that did not exist go again at `down`
        self.record.created_dirs = [str(d) for d in cleanup.HOST_DIRS if not d.exists()]
        cleanup.note_created_dirs(run_base(), [Path(d) for d in self.record.created_dirs])
        self.save()  # from here on, `down` finds this lab even if we die
        plan = self.plan
        topology.build(self.names, plan, self.run_dir)
        self._prepare_profile()
        self._start_gateway()
        self._start_services()
        self.record.clients["home"] = ClientHost("home", self.names.client_wg(0), index=0)
        self.check_interface_names()
        self.record.ready = True
        self.save()

    def _prepare_profile(self) -> None:
        from netsetup.keys import generate_keypair
        from netsetup.profile.store import load_profile

        keypair = generate_keypair()
        (self.run_dir / "gateway").mkdir(mode=0o700)
        fd = os.open(self.gateway_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(keypair.private.reveal() + "\n")
        self.state_dir.mkdir(mode=0o700)
        source = load_profile(self.record.source_profile)
        write_lab_profile(source, self.profile_dir.parent, keypair.public, self.gateway_interface)
        copy = load_profile(self.profile_dir)
        if copy.gateway.public_key != keypair.public:
            raise LabError("the lab's profile copy did not take the lab's gateway key")

    def _start_gateway(self) -> None:
        self.render_gateway()
        wireguard.up(self.ns("gateway"), self.gateway_config)
        self.load_firewall()

    def _start_services(self) -> None:
        profile = self.profile()
        plan = self.plan
        svc_dir = self.run_dir / "services"
        services.ensure_client_key(self.run_dir / "ssh-client")
        authorized = self.run_dir / "ssh-client" / "authorized_keys"
        office = self.ns("office")
        wanted: list[Service] = []
        if plan.dns_servers:
            domains = list(profile.dns.search)
            if profile.voip and profile.voip.sip_domain:
                domains.append(profile.voip.sip_domain)
            records = [(n, str(a)) for n, a in plan.dns_records]
            wanted.append(
                services.dnsmasq_service(
                    office,
                    [str(s) for s in plan.dns_servers],
                    records,
                    sorted(set(domains)),
                    svc_dir / "dnsmasq",
                )
            )
        if profile.voip is not None:
            wanted.append(
                services.kamailio_service(
                    office,
                    plan,
                    list(profile.voip.transports),
                    profile.voip.sip_port,
                    profile.voip.tls_port,
                    profile.voip.sip_domain or profile.id,
                    svc_dir / "kamailio",
                )
            )
        office_addresses = [str(h) for h in plan.office_hosts]
        wanted.append(
            services.sshd_service(
                "sshd",
                office,
                office_addresses,
                plan.ssh_ports,
                svc_dir / "sshd-office",
                authorized,
            )
        )
        gateway_addresses = [str(plan.gateway_wan.v4.ip), str(plan.gateway_lan.v4.ip)]
        wanted.append(
            services.sshd_service(
                "gateway-sshd",
                self.ns("gateway"),
                gateway_addresses,
                [22],
                svc_dir / "sshd-gateway",
                authorized,
            )
        )
        endpoints = sorted({(str(s.host), s.port) for s in plan.tcp_services})
        if endpoints:
            wanted.append(services.tcp_service(office, endpoints, svc_dir / "files"))
        for service in wanted:
            self.record.services[service.name] = service
            self.save()
            services.start(service)
            self.save()

    def down(self) -> list[str]:
        """Remove every namespace, process, socket and file of this lab. Ctrl-C and SIGTERM
        wait until it is done (they are delivered afterwards)."""
        with signals_deferred():
            # only pids that are still the lab's: a recorded pid may belong to someone else now
            pids = [s.pid for s in self.record.services.values() if s.running]
            problems = cleanup.teardown(self.prefix, self.run_dir, pids)
            cleanup.remove_created_dirs(run_base())
        for service in self.record.services.values():
            service.pid = service.started = 0
        self.record.ready = False
        return problems

    # -- netsetup, as the admin runs it -------------------------------------------------------

    def netsetup(self, *args: str, check: bool = True) -> Result:
        env = {"NETSETUP_STATE_DIR": str(self.state_dir)}
        return run([sys.executable, "-m", "netsetup", *args], check=check, env=env, timeout=60)

    def render_gateway(self) -> None:
        self.netsetup(
            "render",
            str(self.profile_dir),
            "--out",
            str(self.gateway_config),
            "--gateway-key",
            str(self.gateway_key_file),
        )

    def load_firewall(self) -> None:
        ruleset = self.netsetup("render", str(self.profile_dir), "--firewall").stdout
        (self.run_dir / "gateway" / "firewall.nft").write_text(ruleset)
        topology.nft_load(self.ns("gateway"), ruleset)

    def sync_gateway(self) -> None:
        """Re-render the gateway's config and firewall and apply both (as after a revoke)."""
        self.render_gateway()
        wireguard.syncconf(self.ns("gateway"), self.gateway_interface, self.gateway_config)
        self.load_firewall()

    def provision(
        self, name: str, mode: str = "dedicated", expires: str | None = None, sync: bool = True
    ) -> Path:
        """`netsetup provision` a peer; returns the client config it wrote."""
        out = self.run_dir / "clients" / name
        args = [
            "provision",
            str(self.profile_dir),
            name,
            "--mode",
            mode,
            "--out",
            str(out),
            "--json",
        ]
        if expires:
            args += ["--expires", expires]
        document = json.loads(self.netsetup(*args).stdout)
        if sync:
            self.sync_gateway()
        return Path(document["config"])

    def revoke(self, name: str, sync: bool = True) -> None:
        self.netsetup("revoke", str(self.profile_dir), name)
        if sync:
            self.sync_gateway()

    def expire(self, name: str, sync: bool = True) -> None:
        """Make a peer's expiry lie in the past (its file is plain TOML), as time would."""
        from netsetup.profile.values import format_time

        path = self.profile_dir / "peers" / f"{name}.toml"
        past = format_time(datetime.now(UTC) - timedelta(minutes=1))
        text = path.read_text()
        if re.search(r"(?m)^expires\s*=", text):
            text = re.sub(r"(?m)^expires\s*=.*$", f"expires = {past}", text)
        else:
            text += f"expires = {past}\n"
        path.write_text(text)
        if sync:
            self.sync_gateway()

    # -- the assistants' tunnels --------------------------------------------------------------

    def add_client_host(self, role: str) -> ClientHost:
        """Another assistant's machine behind the home router (its own LAN). Its interfaces are
        named by its index, not its (arbitrarily long) name."""
        if role in self.record.clients:
            return self.record.clients[role]
        topology.check_client_role(role)
        if self.record.spare_used >= len(self.plan.spare_v4):
            raise LabError("no spare LAN left for another client host")
        index = 1 + max((c.index for c in self.record.clients.values()), default=0)
        client = ClientHost(role, self.names.client_wg(index), index=index)
        self.check_interface_names(client)
        lan = self.plan.spare_v4[self.record.spare_used]
        self.record.spare_used += 1
        self.save()
        # a half-built host is not recorded; `down` still removes its namespace by prefix
        topology.add_client_host(self.names, self.plan, role, index, lan, self.run_dir)
        self.record.clients[role] = client
        self.save()
        return client

    def interface_names(self, extra: ClientHost | None = None) -> list[tuple[str, str]]:
        """(namespace role, interface) for every interface the lab names; WireGuard ones under
        the role "wireguard" (their control sockets share one host-wide directory)."""
        clients = [*self.record.clients.values(), *([extra] if extra else [])]
        names = [(end.role, end.ifname) for link in self.plan.links for end in (link.a, link.b)]
        names += [("router", self.names.client_lan(c.index)) for c in clients if c.index > 0]
        names += [(c.role, "eth0") for c in clients if c.index > 0]
        names += [("wireguard", self.gateway_interface)]
        names += [("wireguard", c.interface) for c in clients]
        return names

    def check_interface_names(self, extra: ClientHost | None = None) -> None:
        """Two interfaces of the same name would silently share one (a WireGuard control socket,
        a veth end): refuse instead."""
        names = self.interface_names(extra)
        seen: set[tuple[str, str]] = set()
        for entry in names:
            if entry in seen:
                raise LabError(f"lab {self.prefix}: interface name {entry[1]!r} used twice")
            if len(entry[1]) > topology.IFNAME_MAX:
                raise LabError(f"lab {self.prefix}: interface name {entry[1]!r} is too long")
            seen.add(entry)

    def tunnel_up(self, config: Path, host: str = "home", allowed_ips: str | None = None) -> str:
        """`wg-quick up` the config netsetup wrote, on `host`. Returns the interface name."""
        client = self.record.clients[host]
        if client.config:
            self.tunnel_down(host)
        installed = wireguard.install_config(
            config, self.run_dir / "hosts" / host, client.interface
        )
        if allowed_ips is not None:
            wireguard.set_allowed_ips(installed, allowed_ips)
        client.config, client.peer = str(installed), config.parent.name
        self.save()
        wireguard.up(self.ns(host), installed)
        return client.interface

    def tunnel_down(self, host: str = "home") -> None:
        client = self.record.clients[host]
        if client.config:
            wireguard.down(self.ns(host), Path(client.config))
            Path(client.config).unlink(missing_ok=True)
        client.config = client.peer = None
        self.save()

    def latest_handshake(self, host: str = "home") -> int:
        return wireguard.latest_handshake(self.ns(host), self.record.clients[host].interface)

    def wait_handshake(
        self, host: str = "home", timeout: float = 10.0, after: int = 0
    ) -> float | None:
        """Seconds until the tunnel on `host` completes a handshake (None: it did not)."""
        client = self.record.clients[host]
        # a packet into the tunnel makes wireguard-go start the handshake at once
        gateway = str(self.profile().network.gateway_address_v4)
        pinger = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns(host),
                "ping",
                "-n",
                "-q",
                "-c",
                "3",
                "-i",
                "0.3",
                "-W",
                "1",
                gateway,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return wireguard.wait_handshake(self.ns(host), client.interface, timeout, after)
        finally:
            pinger.kill()
            pinger.wait()

    def set_gateway_key(self, key_file: Path) -> None:
        wireguard.set_private_key(self.ns("gateway"), self.gateway_interface, key_file)

    # -- services and faults ------------------------------------------------------------------

    def stop_service(self, name: str) -> None:
        services.stop(self.record.services[name])
        self.save()

    def start_service(self, name: str) -> None:
        service = self.record.services[name]
        if not service.running:
            services.start(service)
        self.save()

    def inject(self, kind: str, **params: Any) -> Fault:
        return faults.inject(self, kind, **params)

    def clear(self, fault_id: str | None = None) -> list[Fault]:
        return faults.clear(self, fault_id)

    # -- looking inside -----------------------------------------------------------------------

    def exec(
        self, host: str, argv: Sequence[str], *, capture: bool = True, timeout: float = 60.0
    ) -> Result:
        if host not in self.hosts():
            raise InputError(
                f"no host {host!r} in lab {self.prefix} (hosts: " + ", ".join(self.hosts()) + ")"
            )
        if capture:
            return ns_run(self.ns(host), list(argv), check=False, timeout=timeout)
        code = subprocess.call(["ip", "netns", "exec", self.ns(host), *argv], env=_wg_env())
        return Result(tuple(argv), code, "", "")

    def hosts(self) -> list[str]:
        extra = [r for r in self.record.clients if r != "home"]
        return ["internet", "gateway", "office", "router", "home", *extra]

    def status(self) -> dict[str, Any]:
        namespaces = set(topology.existing_namespaces())
        hosts = {h: self.ns(h) in namespaces for h in self.hosts()}
        tunnels = {}
        for role, client in self.record.clients.items():
            tunnels[role] = {
                "interface": client.interface,
                "peer": client.peer,
                "up": bool(client.config)
                and hosts.get(role, False)
                and wireguard.interface_exists(self.ns(role), client.interface),
                "latest_handshake": self.latest_handshake(role) if client.config else 0,
            }
        return {
            "prefix": self.prefix,
            "run_dir": str(self.run_dir),
            "profile": self.record.source_profile,
            "lab_profile": str(self.profile_dir),
            "state_dir": str(self.state_dir),
            "ready": self.record.ready,
            "hosts": hosts,
            "gateway": {
                "endpoint": f"{self.plan.endpoint_name or self.plan.endpoint_address}"
                f":{self.plan.endpoint_port}",
                "address": str(self.plan.endpoint_address),
                "interface": self.gateway_interface,
                "up": hosts["gateway"]
                and wireguard.interface_exists(self.ns("gateway"), self.gateway_interface),
            },
            "services": {
                name: {
                    "host": s.namespace.removeprefix(self.prefix + "-"),
                    "running": s.running,
                    "pid": s.pid,
                }
                for name, s in self.record.services.items()
            },
            "tunnels": tunnels,
            "faults": [
                {"id": f.id, "kind": f.kind, "what": f.describe()} for f in self.record.faults
            ],
            "addresses": self.plan.to_dict(),
        }


def _wg_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"})
    return env
