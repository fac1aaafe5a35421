"""Fault kinds live in one registry: the CLI's choices, options and help are built from it, and
preparing a fault checks its parameters without writing the lab's record. No root needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.lab import Lab, faults
from netsetup.lab.faults import KINDS, Param, check_params, define, find_kind

from .conftest import ACME, REPO

EXPECTED_KINDS = [
    "drop",
    "loss",
    "mtu",
    "stop",
    "wrong-key",
    "home-subnet",
    "dns-remove",
    "close-port",
    "ssh-hostkey",
    "counted-loss",  # faultkinds/voice.py
    "lan-loss",
    "drop-range",
    "sip-alg",  # faultkinds/sip.py
    "drop-fragments",
    "nat-timeout",
    "shape",  # issue 9, netsetup/lab/faultkinds/load.py
]


def _netsetup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_kind_is_registered_once_with_its_parts() -> None:
    assert list(KINDS) == EXPECTED_KINDS
    for kind in KINDS.values():
        assert kind.summary and not kind.summary.endswith("."), kind.id  # help adds the stop
        for part in (kind.describe, kind.prepare, kind.apply, kind.undo, kind.target):
            assert callable(part), kind.id
    with pytest.raises(ValueError, match="defined twice"):
        define("drop", "again", describe=str, apply=lambda lab, f: {}, undo=lambda lab, f: None)
    with pytest.raises(ValueError, match="kebab-case"):
        define("Drop_It", "x", describe=str, apply=lambda lab, f: {}, undo=lambda lab, f: None)
    assert "Drop_It" not in KINDS


def test_fault_add_help_comes_from_the_registry() -> None:
    shown = _netsetup("lab", "fault", "add", "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # Click wraps lines
    for kind in KINDS.values():
        assert f"{kind.id}: {' '.join(kind.summary.split())}" in text
        for param in kind.params:
            assert f"--{param.name.replace('_', '-')}" in text
            assert f"{kind.id}: {param.help}" in text
    refused = _netsetup("lab", "fault", "add", "meteor")
    assert refused.returncode == 2
    assert all(repr(k) in refused.stderr for k in KINDS), refused.stderr


@pytest.fixture
def extra_kind() -> Iterator[str]:
    """A kind registered for one test (and removed afterwards)."""
    define(
        "test-blackout",
        "everything is dark for a while",
        params=(Param("seconds", int, "how long", bounds=(1, 60)),),
        describe=lambda p: f"dark for {p['seconds']} s",
        apply=lambda lab, fault: {},
        undo=lambda lab, fault: None,
    )
    yield "test-blackout"
    del KINDS["test-blackout"]


def test_a_new_kind_is_offered_by_the_cli_without_touching_it(extra_kind: str) -> None:
    from netsetup.cli.lab import _fault_add_signature, _fault_kinds_epilog

    signature = _fault_add_signature()
    assert "seconds" in signature.parameters
    choices = signature.parameters["kind"].annotation.__origin__
    assert extra_kind in [c.value for c in choices]
    assert "test-blackout: everything is dark for a while." in _fault_kinds_epilog()


def test_parameters_are_checked_and_completed() -> None:
    drop = find_kind("drop")
    assert check_params(drop, {"port": "5060"}) == {"port": 5060, "proto": "udp", "host": "gateway"}
    with pytest.raises(InputError, match="fault drop needs port"):
        check_params(drop, {})
    with pytest.raises(InputError, match="proto must be one of udp, tcp, not 'sctp'"):
        check_params(drop, {"port": 1, "proto": "sctp"})
    with pytest.raises(InputError, match="port must be 1-65535, not 0"):
        check_params(drop, {"port": 0})
    with pytest.raises(InputError, match="percent must be 1-100, not 101"):
        check_params(find_kind("loss"), {"percent": 101})
    with pytest.raises(InputError, match="mtu must be a number, not 'big'"):
        check_params(find_kind("mtu"), {"mtu": "big"})
    with pytest.raises(InputError, match="fault loss takes percent, direction, not port"):
        check_params(find_kind("loss"), {"percent": 5, "port": 22})
    with pytest.raises(InputError, match="unknown fault 'meteor'; one of: drop, loss"):
        find_kind("meteor")


def test_preparing_a_fault_does_not_write_the_record(tmp_path: Path) -> None:
    """`prepare` checks and completes; only `Lab.inject` stores the fault in the record."""
    lab = Lab.create(ACME, base=tmp_path)  # planned, not built: prepare reads the plan only
    fault = faults.prepare(lab, "drop", {"port": 5060, "proto": "tcp"})
    assert (fault.kind, fault.params["host"]) == ("drop", "gateway")
    assert fault.id == "drop-1-0"
    assert fault.describe() == "tcp port 5060 dropped in gateway"
    assert lab.record.faults == [] and lab.record.fault_serial == 0
    assert not lab.run_dir.exists()

    lab.record.add_fault(fault)
    with pytest.raises(InputError, match="fault drop-1-0 already does this"):
        faults.prepare(lab, "drop", {"port": 5060, "proto": "tcp"})
    assert faults.prepare(lab, "drop", {"port": 5060}).id == "drop-2-1"  # udp: another target
    assert faults.prepare(lab, "loss", {"percent": 5}).id == "loss-2-1"
    with pytest.raises(InputError, match="no host 'moon'"):
        faults.prepare(lab, "drop", {"port": 1, "host": "moon"})
    with pytest.raises(InputError, match="no service 'asterisk'"):
        faults.prepare(lab, "stop", {"service": "asterisk"})
    assert [f.id for f in lab.record.faults] == ["drop-1-0"]


def test_every_kind_describes_itself() -> None:
    samples = {
        "drop": {"port": 22, "proto": "tcp", "host": "gateway"},
        "loss": {"percent": 20, "direction": "up"},
        "mtu": {"mtu": 1200},
        "stop": {"service": "kamailio"},
        "wrong-key": {},
        "home-subnet": {"subnet": "192.0.2.0/24"},
        "dns-remove": {"name": "mail.acme-dental.example"},
        "close-port": {"port": 445, "address": "192.0.2.30"},
        "ssh-hostkey": {},
        "counted-loss": {"percent": 5, "direction": "down"},
        "lan-loss": {"percent": 10, "direction": "both"},
        "drop-range": {"ports": "10000-20000", "host": "office"},
        "shape": {"rate": "5mbit", "queue_ms": 500, "direction": "up"},
        "sip-alg": {},
        "drop-fragments": {},
        "nat-timeout": {"seconds": 10},
    }
    assert set(samples) == set(KINDS)
    described = {k: faults.Fault("x", k, p).describe() for k, p in samples.items()}
    assert described["drop"] == "tcp port 22 dropped in gateway"
    assert described["loss"] == "20% random loss in the internet (up)"
    assert described["mtu"] == "home link MTU 1200, ICMP fragmentation-needed dropped"
    assert described["stop"] == "service kamailio stopped"
    assert described["shape"] == "home link up limited to 5mbit with a 500 ms queue"
    assert described["home-subnet"] == "home LAN moved into the company subnet 192.0.2.0/24"
    assert described["counted-loss"] == "5% counted random loss in the internet (down)"
    assert described["lan-loss"] == "10% random loss on the home LAN (both)"
    assert described["drop-range"] == "udp ports 10000-20000 dropped in office"
    assert described["sip-alg"] == "SIP ALG in the home router (UDP 5060)"
    assert described["nat-timeout"] == "the home router forgets quiet UDP flows after 10 s"
