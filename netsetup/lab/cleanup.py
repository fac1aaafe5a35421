"""Removing a lab completely: processes, namespaces, /etc/netns files, sockets, the run directory.

Teardown works from names alone (the prefix), so it also cleans a lab whose `up` died half-way
or whose record file is gone. Every step is best effort; what could not be removed is reported.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

from netsetup.lab import topology, wireguard
from netsetup.lab.proc import stop_pids

PREFIX_PATTERN = re.compile(r"^nl[0-9a-f]{6}$")

# made on demand by the lab (/etc/netns), sshd (its privilege separation directory) and
# wireguard-go (its control sockets)
HOST_DIRS = (topology.NETNS_ETC, Path("/run/sshd"), wireguard.WG_RUN_DIR)


def _registry(run_base: Path) -> Path:
    return run_base / "netsetup-lab.created-dirs"


def note_created_dirs(run_base: Path, directories: list[Path]) -> None:
    """Remember host directories a lab is about to create, for whichever lab goes down last."""
    if directories:
        with open(_registry(run_base), "a") as handle:
            handle.writelines(f"{d}\n" for d in directories)


def remove_created_dirs(run_base: Path) -> None:
    """When no lab is left, remove the host directories labs created (only when empty)."""
    if any(PREFIX_PATTERN.match(ns.split("-", 1)[0]) for ns in topology.existing_namespaces()):
        return
    if list(run_base.glob("netsetup-lab-*")):
        return
    registry = _registry(run_base)
    try:
        noted = {Path(line) for line in registry.read_text().split()}
    except FileNotFoundError:
        return
    for directory in HOST_DIRS:
        if directory in noted:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only succeeds when empty
    registry.unlink(missing_ok=True)


def lab_namespaces(prefix: str) -> list[str]:
    return [ns for ns in topology.existing_namespaces() if ns.startswith(f"{prefix}-")]


def all_prefixes(run_base: Path) -> list[str]:
    """Every lab prefix seen on this machine: from run directories and from namespace names."""
    found = set()
    for entry in run_base.glob("netsetup-lab-*"):
        prefix = entry.name.removeprefix("netsetup-lab-")
        if PREFIX_PATTERN.match(prefix):
            found.add(prefix)
    for ns in topology.existing_namespaces():
        head = ns.split("-", 1)[0]
        if PREFIX_PATTERN.match(head):
            found.add(head)
    return sorted(found)


def teardown(prefix: str, run_dir: Path | None, pids: list[int] | None = None) -> list[str]:
    """Remove everything of lab `prefix`. Returns what was left behind (empty when clean).

    `pids` must be processes the caller checked are still the lab's (`proc.pid_belongs`); the
    processes inside the lab's namespaces are found here and are the lab's by definition."""
    problems: list[str] = []
    namespaces = lab_namespaces(prefix)
    # processes first: a namespace lives on while a process is inside it
    inside = [pid for ns in namespaces for pid in topology.namespace_pids(ns)]
    stop_pids(sorted(set((pids or []) + inside)))
    for ns in namespaces:
        leftover = topology.namespace_pids(ns)
        if leftover:
            stop_pids(leftover, grace=1.0)
    for ns in namespaces:
        try:
            topology.delete_namespace(ns)
        except Exception as exc:
            problems.append(str(exc))
    for ns in [*namespaces, *(f"{prefix}-{r}" for r in ("internet", "gateway", "office"))]:
        topology.remove_netns_files(ns)
    for entry in topology.NETNS_ETC.glob(f"{prefix}-*") if topology.NETNS_ETC.is_dir() else []:
        shutil.rmtree(entry, ignore_errors=True)
    wireguard.remove_sockets(prefix)
    if run_dir is not None and run_dir.name.endswith(prefix):
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_dir.exists():
            problems.append(f"could not remove {run_dir}")
    problems += [f"namespace {ns} still exists" for ns in lab_namespaces(prefix)]
    return problems
