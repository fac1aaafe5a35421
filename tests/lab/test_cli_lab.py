"""`netsetup lab ...` as a user runs it: root check, up, status, exec, connect, fault, down,
demo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from netsetup.cli import main
from netsetup.lab import topology
from netsetup.lab.lab import run_base

from .conftest import ACME, REPO, lab_leftovers, require_lab


def _netsetup(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_lab_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exited:
        main(["lab", "up", "--profile", str(ACME)])
    assert exited.value.code == 2
    assert "the lab needs root" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["lab", "demo", "--profile", str(ACME)],
        ["lab", "status"],
        ["lab", "status", "--lab", "nl000000", "--json"],
        ["lab", "exec", "home", "--", "true"],
        ["lab", "connect", "maria"],
        ["lab", "fault", "add", "loss", "--percent", "10"],
        ["lab", "fault", "clear"],
        ["lab", "down", "--all"],
    ],
)
def test_every_lab_command_checks_root_first(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The root check comes before anything is printed, planned or looked up. (os.geteuid is
    patched in-process: the interpreter lives under /root, which an unprivileged user can't
    read, so the CLI can't be run as a real one here.)"""
    before = sorted(run_base().glob("netsetup-lab-*"))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == 2, (out, err)
    assert err.startswith("error: the lab needs root"), err
    if "--json" in argv:  # the error, as JSON where the command's JSON would have gone
        assert json.loads(out)["error"]["exit_code"] == 2, out
    else:
        assert out == ""
    assert sorted(run_base().glob("netsetup-lab-*")) == before


def test_every_lab_command_is_documented() -> None:
    for command in ("up", "down", "status", "exec", "connect", "demo", "fault"):
        result = _netsetup("lab", command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout or command == "fault"


@pytest.mark.lab
def test_up_status_exec_connect_fault_down(host_resolv_conf: bytes) -> None:
    require_lab()
    up = _netsetup("lab", "up", "--profile", str(ACME), "--json")
    assert up.returncode == 0, up.stderr
    document = json.loads(up.stdout)
    assert document["schema"] == "netsetup.lab.up/1"
    prefix = document["prefix"]
    try:
        status = json.loads(_netsetup("lab", "status", "--lab", prefix, "--json").stdout)
        assert all(status["hosts"].values()) and status["gateway"]["up"]
        assert status["gateway"]["tunnel_address"] == "198.18.10.1"
        assert all(s["running"] for s in status["services"].values())
        connected = _netsetup("lab", "connect", "maria", "--lab", prefix)
        assert connected.returncode == 0 and "handshake after" in connected.stdout, connected
        again = _netsetup("lab", "connect", "maria", "--lab", prefix, "--json")
        assert again.returncode == 0, again.stderr
        document = json.loads(again.stdout)
        assert document["schema"] == "netsetup.lab.connect/1"
        assert document["provisioned"] is False and document["handshake_s"] is not None
        for args, error in [
            (["loss"], "error: fault loss needs percent"),
            (["loss", "--percent", "5", "--port", "22"], "takes percent, direction, not port"),
            (["drop", "--port", "22", "--proto", "sctp"], "proto must be one of udp, tcp"),
        ]:
            refused = _netsetup("lab", "fault", "add", *args, "--lab", prefix)
            assert refused.returncode == 2 and error in refused.stderr, refused
        ping = _netsetup(
            "lab", "exec", "home", "--lab", prefix, "--", "ping", "-c1", "-W2", "198.18.10.1"
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        fault = _netsetup(
            "lab", "fault", "add", "drop", "--proto", "tcp", "--port", "22", "--lab", prefix
        )
        assert fault.returncode == 0 and "tcp port 22 dropped" in fault.stdout, fault
        listed = json.loads(_netsetup("lab", "status", "--lab", prefix, "--json").stdout)
        assert [f["kind"] for f in listed["faults"]] == ["drop"]
        assert _netsetup("lab", "fault", "clear", "--lab", prefix).returncode == 0
        bad = _netsetup("lab", "exec", "nowhere", "--lab", prefix, "--", "true")
        assert bad.returncode == 2 and "no host 'nowhere'" in bad.stderr
    finally:
        down = _netsetup("lab", "down", "--lab", prefix)
    assert down.returncode == 0, down.stderr
    assert not [x for x in lab_leftovers() if prefix in x]


@pytest.mark.lab
def test_demo(host_resolv_conf: bytes) -> None:
    require_lab()
    demo = _netsetup("lab", "demo", "--profile", str(ACME), "--json", timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    document = json.loads(demo.stdout)
    assert document["schema"] == "netsetup.lab.demo/1" and document["ok"]
    names = [c["name"] for c in document["checks"]]
    assert "sip OPTIONS udp" in names and "sip OPTIONS tcp" in names
    assert not [x for x in lab_leftovers() if document["prefix"] in x]


@pytest.mark.lab
def test_sigterm_during_demo_removes_the_lab(host_resolv_conf: bytes) -> None:
    """`kill` (SIGTERM) of a running demo, after its lab is up, still removes the whole lab."""
    require_lab()
    process = subprocess.Popen(
        [sys.executable, "-m", "netsetup", "lab", "demo", "--profile", str(ACME)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "lab nlxxxxxx: building ..."
        prefix = first.split()[1].rstrip(":")
        record = run_base() / f"netsetup-lab-{prefix}" / "lab.json"
        deadline = time.monotonic() + 60
        ready = False
        while not ready and time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                ready = json.loads(record.read_text()).get("ready", False)
            time.sleep(0.02)
        assert ready, f"the demo's lab never came up: {first}"
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out + err  # ExitCode.INTERRUPTED
    assert f"tearing down lab {prefix}" in out
    assert not [ns for ns in topology.existing_namespaces() if ns.startswith(prefix)]
    assert not (run_base() / f"netsetup-lab-{prefix}").exists()
    assert not [x for x in lab_leftovers() if prefix in x]


def test_lab_tests_skip_without_root_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("NETSETUP_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not root"):
        require_lab()
    monkeypatch.setenv("NETSETUP_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="NETSETUP_REQUIRE_LAB=1 but"):
        require_lab()
