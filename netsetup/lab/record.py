"""The lab's record on disk (`lab.json` in its run directory).

The record lets `status`, `exec`, `fault` and `down` work from another process than the one that
built the lab. It is the one place that changes what the record holds: the other lab modules
return what they did (a fault applied, a service started) and the record stores it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsetup.errors import InputError, NotFoundError
from netsetup.lab.faults import Fault
from netsetup.lab.plan import LabPlan
from netsetup.lab.services import Service

RUN_BASE_ENV = "NETSETUP_LAB_RUN_BASE"
RECORD_FILE = "lab.json"
RUN_DIR_PREFIX = "netsetup-lab-"
SCHEMA = "netsetup.lab-record/1"


def run_base() -> Path:
    """Where labs keep their run directories (/run, or $NETSETUP_LAB_RUN_BASE)."""
    return Path(os.environ.get(RUN_BASE_ENV, "/run"))


def new_prefix() -> str:
    return "nl" + secrets.token_hex(3)


def run_dir_for(prefix: str, base: Path | None = None) -> Path:
    return (base or run_base()) / f"{RUN_DIR_PREFIX}{prefix}"


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
    # the gateway starts with no WireGuard interface, no ruleset and no witness, for
    # `gateway bootstrap` to set up (`Lab.create(..., empty_gateway=True)`)
    empty_gateway: bool = False

    # -- faults -------------------------------------------------------------------------------

    def next_fault_id(self, kind: str) -> str:
        """A fresh id (`drop-1-0`): the serial makes it unique even after faults were cleared."""
        return f"{kind}-{len(self.faults) + 1}-{self.fault_serial}"

    def add_fault(self, fault: Fault) -> None:
        self.fault_serial += 1
        self.faults.append(fault)

    def update_fault(self, fault: Fault) -> None:
        """Store what applying a fault found out (its outcome) in place of the recorded one."""
        for index, recorded in enumerate(self.faults):
            if recorded.id == fault.id:
                self.faults[index] = fault
                return
        raise KeyError(fault.id)

    def remove_fault(self, fault_id: str) -> None:
        self.faults = [f for f in self.faults if f.id != fault_id]

    def find_faults(self, ref: str | None) -> list[Fault]:
        """The faults with id or kind `ref` (all of them for None), oldest first."""
        chosen = [f for f in self.faults if ref is None or ref in (f.id, f.kind)]
        if ref is not None and not chosen:
            raise InputError(f"no fault {ref!r} in lab {self.prefix}")
        return chosen

    # -- services -----------------------------------------------------------------------------

    def add_service(self, service: Service) -> None:
        self.services[service.name] = service

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            names = ", ".join(sorted(self.services))
            raise InputError(
                f"no service {name!r} in lab {self.prefix} (services: {names})"
            ) from None

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
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
            "empty_gateway": self.empty_gateway,
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
            empty_gateway=bool(data.get("empty_gateway", False)),
        )


def save(record: LabRecord) -> None:
    """Write the record atomically: a reader never sees half of it."""
    path = Path(record.run_dir) / RECORD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2))
    os.replace(tmp, path)


def record_files(base: Path | None = None) -> list[Path]:
    return sorted((base or run_base()).glob(f"{RUN_DIR_PREFIX}*/{RECORD_FILE}"))


def running(base: Path | None = None) -> list[str]:
    """The prefixes of the labs whose record is on this machine."""
    return [p.parent.name.removeprefix(RUN_DIR_PREFIX) for p in record_files(base)]


def find_record(prefix: str | None, base: Path | None = None) -> Path:
    """The record of lab `prefix`, or of the only lab on this machine."""
    if prefix is not None:
        path = run_dir_for(prefix, base) / RECORD_FILE
        if not path.is_file():
            raise NotFoundError(f"no lab {prefix!r}", where=str(path))
        return path
    found = record_files(base)
    if not found:
        raise NotFoundError("no lab is running (start one with `netsetup lab up`)")
    if len(found) > 1:
        prefixes = ", ".join(running(base))
        raise InputError(f"several labs are running ({prefixes}): choose one with --lab")
    return found[0]


def load(prefix: str | None, base: Path | None = None) -> LabRecord:
    return LabRecord.from_dict(json.loads(find_record(prefix, base).read_text()))
