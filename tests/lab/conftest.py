"""The lab fixture: a real network (namespaces, wireguard-go, Kamailio, sshd, dnsmasq) per module.

Lab tests need root and the Debian packages in .ci/lab-setup.sh. Without them they skip, unless
NETSETUP_REQUIRE_LAB=1 is set: then a missing prerequisite fails the test instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from netsetup.lab import Lab

from .prereq import require_lab

REPO = Path(__file__).resolve().parents[2]
ACME = REPO / "profiles" / "acme-dental"
BRIGHTDESK = REPO / "profiles" / "brightdesk-agency"
RESOLV_CONF = Path("/etc/resolv.conf")


def _sigterm_is_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM to the test session unwinds like Ctrl-C, so every lab fixture's teardown runs
    (pytest finalizes fixtures on KeyboardInterrupt; the default SIGTERM action would not)."""
    signal.signal(signal.SIGTERM, _sigterm_is_ctrl_c)


@pytest.fixture(autouse=True)
def _keep_session_signal_handlers() -> Iterator[None]:
    """Tests that run the CLI in-process get its handlers (SIGINT -> `Interrupted`, an ordinary
    exception pytest would not stop for): put the session's back after each test."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def lab_prefixes() -> set[str]:
    """The prefix of every lab on this machine (run directory or namespace)."""
    from netsetup.lab import cleanup
    from netsetup.lab.lab import run_base

    return set(cleanup.all_prefixes(run_base()))


def _describe_lab(prefix: str) -> str:
    from netsetup.lab.lab import run_base

    record = run_base() / f"netsetup-lab-{prefix}" / "lab.json"
    try:
        text = record.read_text()
    except OSError:
        return f"lab {prefix} (no record)"
    return f"lab {prefix}: {text[:300]}"


_LIVE_FIXTURE_LABS: set[str] = set()


def _another_checkouts(prefix: str) -> bool:
    """A lab whose record names a profile outside this checkout: another checkout's test session
    (several may run labs at once on one machine) made it, and is the one to judge it."""
    from netsetup.lab.lab import run_base

    record = run_base() / f"netsetup-lab-{prefix}" / "lab.json"
    try:
        source = json.loads(record.read_text()).get("source_profile")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(source, str) and not Path(source).resolve().is_relative_to(REPO)


@pytest.fixture(autouse=True)
def _no_lab_leaks_from_this_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A lab that appears during a test and outlives it (and is no module fixture's lab) is a
    leak: the test that left it fails, naming it, and it is removed so later tests are judged on
    their own (a leak once surfaced only in the last module, far from its cause)."""
    if os.geteuid() != 0:
        yield
        return
    before = lab_prefixes()
    yield
    leaked = {p for p in lab_prefixes() - before - _LIVE_FIXTURE_LABS if not _another_checkouts(p)}
    if not leaked:
        return
    from netsetup.lab import cleanup
    from netsetup.lab.lab import run_base

    described = [_describe_lab(prefix) for prefix in sorted(leaked)]
    for prefix in leaked:
        cleanup.teardown(prefix, run_base() / f"netsetup-lab-{prefix}")
    pytest.fail(f"{request.node.nodeid} left a lab behind (now removed): {described}")


@pytest.fixture(scope="session")
def host_resolv_conf() -> Iterator[bytes]:
    """The host's /etc/resolv.conf before any lab ran: the session checks it never changes."""
    before = RESOLV_CONF.read_bytes()
    yield before
    assert RESOLV_CONF.read_bytes() == before, "a lab changed the host's /etc/resolv.conf"


def _lab_for(profile: Path) -> Iterator[Lab]:
    require_lab()
    lab = Lab.create(profile)
    _LIVE_FIXTURE_LABS.add(lab.prefix)
    lab.up()
    try:
        yield lab
    finally:
        problems = lab.down()
        _LIVE_FIXTURE_LABS.discard(lab.prefix)
        assert not problems, problems
        assert not [x for x in lab_leftovers() if lab.prefix in x], lab.prefix


@pytest.fixture(scope="module")
def lab(host_resolv_conf: bytes) -> Iterator[Lab]:
    """One running lab (acme-dental) shared by the tests of a module."""
    yield from _lab_for(ACME)


@pytest.fixture(scope="module")
def brightdesk_lab(host_resolv_conf: bytes) -> Iterator[Lab]:
    yield from _lab_for(BRIGHTDESK)


@pytest.fixture
def connect(lab: Lab) -> Iterator[Callable[..., str]]:
    """connect(name, mode, host="home", allowed_ips=None) -> interface; tunnels go down after."""
    used: list[str] = []

    def _connect(
        name: str, mode: str = "dedicated", host: str = "home", allowed_ips: str | None = None
    ) -> str:
        used.append(host)
        result = lab.connect(name, mode, host, allowed_ips=allowed_ips)
        assert result.ok, f"no handshake for {name}"
        return result.interface

    yield _connect
    for host in used:
        if host in lab.record.clients:  # a host that could not be made has no tunnel
            lab.tunnel_down(host)


@contextlib.contextmanager
def gateway_firewall_removed(lab: Lab) -> Iterator[None]:
    """The gateway without the firewall netsetup rendered for it (every table that ruleset
    defines, whatever it names them), loaded again afterwards: the control that shows the
    firewall, not something else, is what blocks a packet."""
    ruleset = (lab.run_dir / "gateway" / "firewall.nft").read_text()
    tables = sorted(set(re.findall(r"(?m)^table\s+(\w+)\s+(\S+)\s*\{", ruleset)))
    assert tables, "the rendered firewall defines no table"
    for family, name in tables:
        assert lab.exec("gateway", ["nft", "delete", "table", family, name]).ok
    try:
        yield
    finally:
        lab.load_firewall()


LAB_PROGRAMS = ("wireguard-go", "kamailio", "sshd", "dnsmasq")


def lab_leftovers() -> list[str]:
    """Everything of any netsetup lab still on this machine (empty when all were removed)."""
    from netsetup.lab import cleanup, topology
    from netsetup.lab.lab import run_base

    found = [
        f"namespace {ns}"
        for ns in topology.existing_namespaces()
        if cleanup.PREFIX_PATTERN.match(ns.split("-", 1)[0])
    ]
    found += [f"run dir {p}" for p in run_base().glob("netsetup-lab-*")]
    if topology.NETNS_ETC.is_dir():
        found += [
            f"netns files {p}"
            for p in topology.NETNS_ETC.glob("nl*")
            if cleanup.PREFIX_PATTERN.match(p.name.split("-", 1)[0])
        ]
    wg_dir = Path("/var/run/wireguard")
    if wg_dir.is_dir():
        found += [f"wireguard socket {p}" for p in wg_dir.glob("nl*")]
    found += [_describe(p) for p in _lab_processes()]
    return found


def _lab_processes() -> list[psutil.Process]:
    """Processes a lab started that are still running: its programs in any namespace but the
    host's, and anything whose command line names a lab (but not this test session)."""
    root_netns = os.readlink("/proc/self/ns/net")  # the test runs in the host namespace
    left = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        comm = process.info["name"] or ""
        try:
            # psutil has no view of namespaces: the nsfs link of the process tells which it is in
            netns = os.readlink(f"/proc/{process.pid}/ns/net")
        except OSError:
            continue
        lab_made = "netsetup-lab-" in cmdline or "netsetup.lab." in cmdline
        program = comm in LAB_PROGRAMS or comm.startswith("wireguard")
        if (program and (lab_made or netns != root_netns)) or (
            lab_made and "pytest" not in cmdline
        ):
            left.append(process)
    return left


def _describe(process: psutil.Process) -> str:
    try:
        cmdline = " ".join(process.cmdline())
        return f"process {process.pid} {process.name()}: {cmdline[:120]}"
    except psutil.Error:
        return f"process {process.pid} (gone meanwhile)"
