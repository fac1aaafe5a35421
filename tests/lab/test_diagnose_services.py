"""Issue 8, the checks `interfaces`, `dns`, `reach.<name>` and `ssh.<name>` against the real lab:
healthy, then each fault alone (a closed port, a removed name, the DNS server stopped, a changed
SSH host key, the home LAN on the company's subnet, a plain TCP listener where the remote desktop
should be). Diagnose runs inside the home namespace, as the assistant would run it at home."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netsetup.lab import Lab
from netsetup.lab.diagnose import run_diagnose

from .conftest import REPO

pytestmark = pytest.mark.lab

MINE = ("interfaces", "dns", "reach", "ssh")
DEADLINE_S = 6.0
HEALTHY_WITHIN_S = 3.0  # issue 8, what must hold 1


def run_envelope(lab: Lab, only: tuple[str, ...] = MINE) -> dict[str, Any]:
    """`netsetup diagnose --json` in the home namespace with the assistant's config."""
    args = ["--json", "--deadline", str(DEADLINE_S), "--only", ",".join(only)]
    result = run_diagnose(lab, args, timeout=30)
    assert result.returncode in (0, 1), result.stderr  # 1: a check failed
    envelope: dict[str, Any] = json.loads(result.stdout)
    assert envelope["duration_s"] < DEADLINE_S + 1
    failed = any(c["status"] == "fail" for c in envelope["checks"])
    assert result.returncode == (1 if failed else 0)
    return envelope


def run_checks(lab: Lab, only: tuple[str, ...] = MINE) -> dict[str, dict[str, Any]]:
    """The checks of one diagnose run, by id."""
    return {c["id"]: c for c in run_envelope(lab, only)["checks"]}


def problems(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {i: c["status"] for i, c in checks.items() if c["status"] in ("fail", "unknown")}


@pytest.fixture
def assistant(lab: Lab, connect: Callable[..., str]) -> Iterator[Lab]:
    connect("dana", "dedicated")
    yield lab
    lab.clear()


def test_healthy_lab_every_check_passes(assistant: Lab) -> None:
    envelope = run_envelope(assistant)
    assert envelope["duration_s"] < HEALTHY_WITHIN_S, envelope
    checks = {c["id"]: c for c in envelope["checks"]}
    assert set(checks) == {
        "interfaces",
        "dns",
        "reach.fileserver",
        "reach.portal",
        "reach.workstation",
        "ssh.office-ssh",
    }
    statuses = {i: c["status"] for i, c in checks.items()}
    assert set(statuses.values()) == {"pass"}, checks
    # the home machine trusts the lab portal's certificate, as a company's machines trust its CA
    portal = checks["reach.portal"]["metrics"]
    assert portal["http_status"] == 200 and portal["certificate_trusted"] is True
    assert checks["ssh.office-ssh"]["metrics"]["fingerprint"].startswith("SHA256:")
    assert checks["reach.workstation"]["summary"].startswith("the remote desktop workstation")


def test_closed_file_server_port_fails_reach_for_it(assistant: Lab) -> None:
    assistant.inject("close-port", port=445, address="192.0.2.30")
    checks = run_checks(assistant)
    files = checks["reach.fileserver"]
    assert files["status"] == "fail" and files["owner"] == "it", files
    assert "files.acme-dental.example:445" in files["fix"] and "refuses" in files["fix"]
    assert problems(checks) == {"reach.fileserver": "fail"}


def test_removed_name_fails_dns_for_it(assistant: Lab) -> None:
    assistant.inject("dns-remove", name="mail.acme-dental.example")
    checks = run_checks(assistant)
    dns = checks["dns"]
    assert dns["status"] == "fail" and dns["owner"] == "it", dns
    assert "mail.acme-dental.example" in dns["fix"] and "add" in dns["fix"]
    assert problems(checks) == {"dns": "fail"}


def test_stopped_dns_server_fails_dns(assistant: Lab) -> None:
    assistant.inject("stop", service="dnsmasq")
    checks = run_checks(assistant)
    dns = checks["dns"]
    assert dns["status"] == "fail" and dns["owner"] == "it", dns
    assert "does not answer" in dns["summary"] and "192.0.2.53" in dns["fix"]
    # the file server is asked by name: without DNS it is not checked (skip), not failed
    assert checks["reach.fileserver"]["status"] == "skip"
    assert problems(checks) == {"dns": "fail"}


def test_changed_ssh_host_key_says_do_not_log_in(assistant: Lab) -> None:
    pinned = run_checks(assistant, ("ssh",))["ssh.office-ssh"]["metrics"]["fingerprint"]
    assistant.inject("ssh-hostkey")
    checks = run_checks(assistant)
    ssh = checks["ssh.office-ssh"]
    assert ssh["status"] == "fail" and ssh["owner"] == "it", ssh
    assert "do not log in" in ssh["summary"] and "do not log in" in ssh["fix"]
    assert pinned in ssh["fix"] and ssh["metrics"]["fingerprint"] in ssh["fix"]
    assert ssh["metrics"]["fingerprint"] != pinned
    assert problems(checks) == {"ssh.office-ssh": "fail"}


def test_home_lan_on_the_company_subnet_fails_interfaces_for_the_assistant(
    assistant: Lab,
) -> None:
    assistant.inject("home-subnet")
    checks = run_checks(assistant, ("interfaces",))
    interfaces = checks["interfaces"]
    assert interfaces["status"] == "fail" and interfaces["owner"] == "assistant", interfaces
    assert "192.0.2.0/24" in interfaces["fix"] and "router" in interfaces["fix"]
    assert "192.168.77.0/24" in interfaces["fix"]


def test_plain_tcp_listener_on_3389_is_not_a_remote_desktop(assistant: Lab) -> None:
    assert run_checks(assistant, ("reach.workstation",))["reach.workstation"]["status"] == "pass"
    assistant.stop_service("xrdp")
    impostor = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            assistant.ns("office"),
            sys.executable,
            "-m",
            "netsetup.lab.fileservice",
            "--listen",
            "192.0.2.32:3389",
        ],
        env={"PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(assistant, "192.0.2.32:3389")
        rdp = run_checks(assistant, ("reach.workstation",))["reach.workstation"]
    finally:
        impostor.terminate()
        impostor.wait(5)
        assistant.start_service("xrdp")
    assert rdp["status"] == "fail" and rdp["owner"] == "it", rdp
    assert "not a remote desktop" in rdp["summary"]


def _wait_listening(lab: Lab, endpoint: str) -> None:
    import time

    for _ in range(100):
        listed = lab.exec("office", ["ss", "-Hltn"]).stdout
        if endpoint in listed:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {endpoint} in the office")
