"""One lab: build it from a profile, drive netsetup against it, inject faults, tear it down.

The lab works on its own copy of the profile (under its run directory) with a freshly generated
gateway key, and on its own state directory, so nothing under the repository's `profiles/` and
nothing of the admin's real state is touched.

`Lab` is the facade over the lab's parts: its record on disk (`record`), building it (`build`),
the services (`services`), the assistants' tunnels (`tunnels`), netsetup as the admin runs it
(`admin`), faults (`faults`) and what it looks like (`status`). Removing a lab lives here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from netsetup.clock import SYSTEM_CLOCK, Clock
from netsetup.errors import InputError
from netsetup.lab import admin, build, cleanup, faults, services, topology, tunnels, wireguard
from netsetup.lab import record as records
from netsetup.lab.faults import Fault
from netsetup.lab.plan import LabPlan, plan_lab
from netsetup.lab.proc import (
    WG_USERSPACE_ENV,
    Result,
    in_ns,
    ns_run,
    require_root,
    signals_deferred,
    sigterm_interrupts,
)
from netsetup.lab.record import ClientHost, LabRecord, new_prefix, run_base
from netsetup.lab.services import Service
from netsetup.lab.status import LabStatus, lab_status
from netsetup.lab.tunnels import ConnectResult
from netsetup.profile.model import Profile

__all__ = ["ClientHost", "DownResult", "Lab", "LabRecord", "down_all", "run_base"]


@dataclass(frozen=True)
class DownResult:
    """What `down` removed, and what it could not (empty when everything went)."""

    prefixes: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Lab:
    """A running (or planned) lab. Use `Lab.create(profile).up()` or `with Lab.create(p) as lab`.

    `clock` gives the time the lab writes into profile data (an expired peer's expiry, the SIP
    server's certificate). The lab's nftables time matches follow the kernel's clock, so the
    real time is the right default; tests may move it."""

    def __init__(self, record: LabRecord, clock: Clock = SYSTEM_CLOCK) -> None:
        self.record = record
        self.names = topology.Names(record.prefix)
        self.clock = clock

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
    def gateway_root(self) -> Path:
        """What the gateway's sshd sees as its /etc, /usr/local, /var/lib and /var/log (the
        overlays' layers, `services.private_root_argv`) and as /etc/wireguard (`wireguard/`)."""
        return self.run_dir / "gateway-root"

    @property
    def gateway_config(self) -> Path:
        """The gateway's wg-quick config: /etc/wireguard/<iface>.conf as its sshd sees it."""
        return self.gateway_root / "wireguard" / f"{self.gateway_interface}.conf"

    @property
    def ssh_key(self) -> Path:
        """The lab's SSH client key: every lab sshd accepts it (root on the gateway)."""
        return self.run_dir / "ssh-client" / "id_ed25519"

    def ns(self, role: str) -> str:
        return self.names.ns(role)

    def hosts(self) -> list[str]:
        extra = [r for r in self.record.clients if r != "home"]
        return ["internet", "gateway", "office", "router", "home", *extra]

    def profile(self) -> Profile:
        from netsetup.profile.store import load_profile

        return load_profile(self.profile_dir)

    # -- create, load, save ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        profile_ref: str | Path,
        *,
        base: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        empty_gateway: bool = False,
    ) -> Lab:
        """Plan a lab for a profile; nothing is built until `up()`. With `empty_gateway`, the
        gateway starts as a fresh machine would: no WireGuard interface, no ruleset, no witness,
        forwarding off (what `gateway bootstrap` sets up); the gateway's private key is in the
        lab's state folder, where `netsetup init` puts it."""
        from netsetup.profile.store import load_profile

        source = load_profile(profile_ref)
        prefix = new_prefix()
        run_dir = records.run_dir_for(prefix, base)
        record = LabRecord(
            prefix=prefix,
            run_dir=str(run_dir),
            source_profile=str(source.directory.resolve()),
            profile_dir=str(run_dir / "profiles" / source.id),
            state_dir=str(run_dir / "state"),
            plan=plan_lab(source),
            created=clock.now().isoformat(timespec="seconds"),
            empty_gateway=empty_gateway,
        )
        return cls(record, clock)

    @classmethod
    def load(
        cls, prefix: str | None = None, *, base: Path | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> Lab:
        """The lab with `prefix`, or the only lab on this machine."""
        return cls(records.load(prefix, base), clock)

    @staticmethod
    def running(base: Path | None = None) -> list[str]:
        return records.running(base)

    def save(self) -> None:
        records.save(self.record)

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
                build.build(self)
            except BaseException:
                self.down()
                raise
        return self

    def check_prerequisites(self) -> None:
        """Every program and module this lab will use is installed, or one error naming the
        missing Debian packages, before anything is built."""
        build.check_prerequisites(
            Path(self.record.source_profile), empty_gateway=self.record.empty_gateway
        )

    def down(self) -> list[str]:
        """Remove every namespace, process, socket and file of this lab; returns what could
        not be removed. Ctrl-C and SIGTERM wait until it is done (they are delivered after)."""
        with signals_deferred():
            # only pids that are still the lab's: a recorded pid may belong to someone else now
            pids = [s.pid for s in self.record.services.values() if s.running]
            problems = cleanup.teardown(self.prefix, self.run_dir, pids)
            cleanup.remove_created_dirs(run_base())
        for service in self.record.services.values():
            service.pid, service.started = 0, 0.0
        self.record.ready = False
        return problems

    # -- netsetup, as the admin runs it -------------------------------------------------------

    def netsetup(self, *args: str, check: bool = True) -> Result:
        return admin.netsetup(self, *args, check=check)

    def render_gateway(self) -> None:
        admin.render_gateway(self)

    def load_firewall(self) -> None:
        admin.load_firewall(self)

    def sync_gateway(self) -> None:
        """Re-render the gateway's config and firewall and apply both (as after a revoke)."""
        admin.sync_gateway(self)

    def provision(
        self, name: str, mode: str = "dedicated", expires: str | None = None, sync: bool = True
    ) -> Path:
        """`netsetup provision` a peer; returns the client config it wrote."""
        return admin.provision(self, name, mode, expires, sync)

    def revoke(self, name: str, sync: bool = True) -> None:
        admin.revoke(self, name, sync)

    def expire(self, name: str, sync: bool = True) -> None:
        """Make a peer's expiry lie in the past (by the lab's clock), as time would."""
        admin.expire(self, name, sync)

    # -- the assistants' tunnels --------------------------------------------------------------

    def connect(
        self,
        name: str,
        mode: str = "dedicated",
        host: str = "home",
        *,
        allowed_ips: str | None = None,
        timeout: float = tunnels.CONNECT_TIMEOUT,
    ) -> ConnectResult:
        """Provision `name` (unless this lab already did) and bring their tunnel up on `host`."""
        return tunnels.connect(self, name, mode, host, allowed_ips=allowed_ips, timeout=timeout)

    def add_client_host(self, role: str) -> ClientHost:
        return tunnels.add_client_host(self, role)

    def interface_names(self, extra: ClientHost | None = None) -> list[tuple[str, str]]:
        return tunnels.interface_names(self, extra)

    def check_interface_names(self, extra: ClientHost | None = None) -> None:
        tunnels.check_interface_names(self, extra)

    def tunnel_up(self, config: Path, host: str = "home", allowed_ips: str | None = None) -> str:
        """`wg-quick up` the config netsetup wrote, on `host`. Returns the interface name."""
        return tunnels.tunnel_up(self, config, host, allowed_ips=allowed_ips)

    def tunnel_down(self, host: str = "home") -> None:
        tunnels.tunnel_down(self, host)

    def latest_handshake(self, host: str = "home") -> int:
        return tunnels.latest_handshake(self, host)

    def wait_handshake(
        self, host: str = "home", timeout: float = 10.0, after: int = 0
    ) -> float | None:
        """Seconds until the tunnel on `host` completes a handshake (None: it did not)."""
        return tunnels.wait_handshake(self, host, timeout, after)

    def set_gateway_key(self, key_file: Path) -> None:
        wireguard.set_private_key(self.ns("gateway"), self.gateway_interface, key_file)

    # -- services and faults ------------------------------------------------------------------

    def stop_service(self, name: str) -> None:
        services.stop(self.record.service(name))
        self.save()

    def start_service(self, name: str) -> None:
        service: Service = self.record.service(name)
        if not service.running:
            services.start(service)
        self.save()

    def inject(self, kind: str, **params: Any) -> Fault:
        """Inject one fault; returns what `clear` needs.

        The fault is recorded before it is applied, so a crash half-way leaves something
        `fault clear` can undo; when applying fails, what was done is undone and the record
        dropped (it stays, for `fault clear`, only if that undo fails too)."""
        fault = faults.prepare(self, kind, params)
        self.record.add_fault(fault)
        self.save()
        try:
            applied = faults.apply(self, fault)
        except BaseException:
            self._undo_failed_injection(fault)
            raise
        self.record.update_fault(applied)
        self.save()
        return applied

    def _undo_failed_injection(self, fault: Fault) -> None:
        try:
            faults.undo(self, fault)
        except Exception:
            self.record.update_fault(fault.with_outcome(faults.PARTLY_APPLIED))
        else:
            self.record.remove_fault(fault.id)
        self.save()

    def clear(self, fault_id: str | None = None) -> list[Fault]:
        """Clear one fault (by id or kind) or, with None, all of them, newest first."""
        chosen = self.record.find_faults(fault_id)
        for fault in reversed(chosen):
            faults.undo(self, fault)
            self.record.remove_fault(fault.id)
            self.save()
        return chosen

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
        # the user's terminal: the command's output goes straight to it
        env = {**os.environ, **WG_USERSPACE_ENV}
        code = subprocess.call(in_ns(self.ns(host), argv), env=env)
        return Result(tuple(argv), code, "", "")

    def status(self) -> LabStatus:
        return lab_status(self)


def down_lab(prefix: str | None = None, *, base: Path | None = None) -> DownResult:
    """Remove the lab with `prefix` (or the only lab on this machine)."""
    lab = Lab.load(prefix, base=base)
    return DownResult([lab.prefix], lab.down())


def down_all(base: Path | None = None) -> DownResult:
    """Remove every lab on this machine, also those whose record is gone (found by prefix)."""
    root = base or run_base()
    prefixes = cleanup.all_prefixes(root)
    problems: list[str] = []
    with signals_deferred():
        for prefix in prefixes:
            problems += cleanup.teardown(prefix, records.run_dir_for(prefix, root))
        cleanup.remove_created_dirs(root)
    return DownResult(prefixes, problems)
