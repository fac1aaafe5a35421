"""`netsetup init`, then `netsetup gateway bootstrap` on the lab's empty gateway (no WireGuard, no
ruleset, no witness, forwarding off), then `provision` and `apply`: an assistant gets a working
tunnel with no file edited by hand (issue 10, must-hold 6). Bootstrap runs from the office
namespace against the gateway's real sshd; what it writes lands in the lab's overlays
(`lab.gateway_root/<etc|usr-local|var-lib>/upper`), which the tests read instead of rebooting.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netsetup.gateway import bootstrap
from netsetup.gateway.firewall import table_name
from netsetup.lab import Lab
from netsetup.lab.admin import netsetup_as_admin
from netsetup.lab.labprofile import pin_gateway_ssh
from netsetup.lab.proc import Result
from tests.provision.support import snapshot

from .conftest import _LIVE_FIXTURE_LABS, lab_leftovers
from .prereq import require_lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
OFFICE_DNS = "192.0.2.53"
INIT_ANSWERS = [
    "--company",
    "Small Co",
    "--endpoint",
    "vpn.smallco.example:51820",
    "--tunnel",
    "198.18.30.0/24",
    "--tunnel6",
    "2001:db8:30::/64",
    "--office",
    "192.0.2.0/24",
    "--dns",
    OFFICE_DNS,
]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, host_resolv_conf: bytes) -> Iterator[Lab]:
    """A lab of a profile `netsetup init` wrote, its gateway empty."""
    require_lab()
    root = tmp_path_factory.mktemp("bootstrap")
    folder = root / "profiles" / "smallco"
    env = {**os.environ, "NETSETUP_STATE_DIR": str(root / "state")}
    made = subprocess.run(
        [sys.executable, "-m", "netsetup", "init", str(folder), *INIT_ANSWERS],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    lab = Lab.create(folder, empty_gateway=True)
    _LIVE_FIXTURE_LABS.add(lab.prefix)
    lab.up()
    try:
        yield lab
    finally:
        problems = lab.down()
        _LIVE_FIXTURE_LABS.discard(lab.prefix)
        assert not problems, problems
        assert not [x for x in lab_leftovers() if lab.prefix in x], lab.prefix


def admin(lab: Lab, *args: str) -> Result:
    return netsetup_as_admin(lab, *args, check=False)


def run_bootstrap(lab: Lab) -> dict[str, Any]:
    done = admin(lab, "gateway", "bootstrap", str(lab.profile_dir), "--json")
    assert done.returncode == 0, done.stderr
    (gateway,) = json.loads(done.stdout)["gateways"]
    assert isinstance(gateway, dict)
    return gateway


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {step["step"]: step["status"] for step in result["steps"]}


def upper(lab: Lab, path: str) -> Path:
    """Where the gateway's write of `path` (/etc/..., /usr/local/..., /var/lib/...) landed."""
    for top, slug in (("/etc/", "etc"), ("/usr/local/", "usr-local"), ("/var/lib/", "var-lib")):
        if path.startswith(top):
            return lab.gateway_root / slug / "upper" / path.removeprefix(top)
    raise AssertionError(path)


def on_gateway(
    lab: Lab, argv: list[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`argv` as the gateway's sshd sees the machine: its mount namespace and its network."""
    pid = lab.record.service("gateway-sshd").pid
    return subprocess.run(
        ["nsenter", "--target", str(pid), "--mount", "--net", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gateway_files(lab: Lab) -> dict[str, tuple[str, int, str]]:
    roots = [lab.gateway_root / d / "upper" for d in ("etc", "usr-local", "var-lib")]
    return snapshot(*roots, lab.gateway_root / "wireguard")


def test_the_gateway_starts_empty(fresh: Lab) -> None:
    interface = fresh.gateway_interface
    assert not fresh.exec("gateway", ["ip", "link", "show", interface]).ok
    tables = fresh.exec("gateway", ["nft", "list", "tables"]).stdout
    assert table_name(interface) not in tables
    forwarding = fresh.exec("gateway", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout
    assert forwarding.strip() == "0"
    assert "witness" not in fresh.record.services
    assert fresh.record.empty_gateway


def test_bootstrap_prepares_the_gateway_and_applies(fresh: Lab) -> None:
    profile = fresh.profile()
    interface = profile.gateway.interface
    result = run_bootstrap(fresh)
    steps = statuses(result)
    assert result["changed"] is True
    for step in ("forwarding", "agent", "nftables-boot", "witness", "units", "apply"):
        assert steps[step] == "changed", result
    assert steps["sudoers"] == "skipped"  # root logs in

    sysctl = upper(fresh, bootstrap.SYSCTL_FILE).read_text()
    assert "net.ipv4.ip_forward = 1" in sysctl
    assert "net.ipv6.conf.all.forwarding = 1" in sysctl  # the site has tunnel_v6
    forwarding = fresh.exec("gateway", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout
    assert forwarding.strip() == "1"

    nft_conf = upper(fresh, bootstrap.NFT_CONF).read_text()
    assert nft_conf.splitlines().count(bootstrap.NFT_INCLUDE) == 1
    assert upper(fresh, f"{bootstrap.NFT_DIR}/{interface}.nft").is_file()
    # what the nftables service loads at boot parses, the applied ruleset included
    checked = on_gateway(fresh, ["nft", "-c", "-f", bootstrap.NFT_CONF])
    assert checked.returncode == 0, checked.stderr

    agent = upper(fresh, bootstrap.AGENT_PATH)
    assert agent.read_bytes() == bootstrap.agent_program()
    assert stat.S_IMODE(agent.stat().st_mode) == 0o755
    stage = upper(fresh, f"{bootstrap.STAGE_ROOT}/root")
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700

    wants = upper(fresh, "/etc/systemd/system")
    assert os.readlink(wants / "multi-user.target.wants" / f"wg-quick@{interface}.service") in (
        "/lib/systemd/system/wg-quick@.service",
        "/usr/lib/systemd/system/wg-quick@.service",
    )
    assert (wants / "sysinit.target.wants" / "nftables.service").is_symlink()
    witness_link = wants / "multi-user.target.wants" / f"netsetup-witness@{profile.id}.service"
    assert os.readlink(witness_link) == bootstrap.WITNESS_UNIT_FILE
    assert upper(fresh, bootstrap.WITNESS_UNIT_FILE).read_text() == bootstrap.witness_unit()

    # the interface is up with the profile's key, the ruleset loaded, plan in sync
    key = fresh.exec("gateway", ["wg", "show", interface, "public-key"]).stdout.strip()
    assert key == profile.gateway.public_key
    assert table_name(interface) in fresh.exec("gateway", ["nft", "list", "tables"]).stdout
    planned = admin(fresh, "plan", str(fresh.profile_dir))
    assert planned.returncode == 0, planned.stdout + planned.stderr


def test_bootstrap_again_changes_nothing(fresh: Lab) -> None:
    before = gateway_files(fresh)
    result = run_bootstrap(fresh)
    assert result["changed"] is False, result
    assert set(statuses(result).values()) <= {"ok", "skipped"}, result
    assert gateway_files(fresh) == before


def test_the_installed_witness_runs_with_the_gateways_python(fresh: Lab) -> None:
    """What the witness unit starts (its ExecStart, as written) runs with the gateway's own
    python3 from the profile files apply installed, and answers with the live key."""
    profile_id = str(fresh.profile().id)
    unit = upper(fresh, bootstrap.WITNESS_UNIT_FILE).read_text()
    (command,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = command.removeprefix("ExecStart=").replace("%i", profile_id).split()
    pid = fresh.record.service("gateway-sshd").pid
    process = subprocess.Popen(
        ["nsenter", "--target", str(pid), "--mount", "--net", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert f"witness of {profile_id}" in line, line
    assert "key: live" in line, line


def test_provision_then_apply_gives_a_working_tunnel(fresh: Lab) -> None:
    fresh.provision("maria", "dedicated", sync=False)  # the gateway learns of her by apply
    applied = admin(fresh, "apply", str(fresh.profile_dir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    planned = admin(fresh, "plan", str(fresh.profile_dir))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    result = fresh.connect("maria")
    try:
        assert result.ok, "no handshake"
        # forwarding and the ruleset let her reach the office through the tunnel
        assert fresh.exec("home", ["ping", "-c", "1", "-W", "3", OFFICE_DNS]).ok
    finally:
        fresh.tunnel_down("home")


def test_a_non_root_admin_gets_the_sudoers_line_and_applies_through_it(fresh: Lab) -> None:
    """An admin account with full sudo bootstraps; with only the line bootstrap wrote, `apply`
    works through sudo; an account without sudo cannot bootstrap (exit 4, nothing changed)."""
    user = "labadmin"
    for argv in (
        ["useradd", "-M", "-s", "/bin/sh", user],
        ["usermod", "-p", "*", user],  # no password, yet not locked: sshd (no PAM) refuses those
    ):
        done = on_gateway(fresh, argv)
        assert done.returncode == 0, done.stderr
    # the lab's sshd reads the lab's authorized_keys as the user logging in: let this user
    # reach that file (public keys only; every secret in the run directory stays 0600 / 0700)
    for path in (fresh.run_dir, fresh.run_dir / "ssh-client"):
        path.chmod(0o711)
    (fresh.run_dir / "ssh-client" / "authorized_keys").chmod(0o644)
    full = f"{user} ALL=(ALL) NOPASSWD: ALL\n"
    put = on_gateway(fresh, ["python3", "-c", _WRITE_SUDOERS, "/etc/sudoers.d/lab-full", full])
    assert put.returncode == 0, put.stderr
    profile = fresh.profile()
    assert profile.gateway.ssh is not None and profile.gateway.host_key is not None
    pin_gateway_ssh(
        fresh.profile_dir,
        ssh=f"{user}@{profile.gateway.ssh.host}:22",
        host_key=profile.gateway.host_key,
        admin_from=[str(n) for n in profile.gateway.admin_from],
    )

    result = run_bootstrap(fresh)
    assert statuses(result)["sudoers"] == "changed", result
    assert statuses(result)["apply"] == "ok", result  # in sync already: nothing sent
    sudoers = upper(fresh, bootstrap.SUDOERS_FILE)
    assert sudoers.read_text() == f"{user} ALL=(root) NOPASSWD: {bootstrap.AGENT_PATH}\n"
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440
    stage = upper(fresh, f"{bootstrap.STAGE_ROOT}/{user}")
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700

    assert on_gateway(fresh, ["rm", "/etc/sudoers.d/lab-full"]).returncode == 0
    before = gateway_files(fresh)
    refused = admin(fresh, "gateway", "bootstrap", str(fresh.profile_dir))
    assert refused.returncode == 4, refused.stderr
    assert "needs root or full sudo" in refused.stderr
    assert gateway_files(fresh) == before

    fresh.provision("nadia", "dedicated", sync=False)
    applied = admin(fresh, "apply", str(fresh.profile_dir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    result_connect = fresh.connect("nadia")
    try:
        assert result_connect.ok, "no handshake"
    finally:
        fresh.tunnel_down("home")


_WRITE_SUDOERS = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)\n"
    "os.write(fd, sys.argv[2].encode())\n"
    "os.close(fd)\n"
)


def test_an_empty_gateway_lab_needs_the_system_python_with_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else bootstrap would apt-get it onto the host's /usr from inside the lab: refused before
    anything is built, naming the Debian packages."""
    from netsetup.lab import build
    from netsetup.lab.proc import LabError

    build.require_gateway_python()  # this machine has it (the lab test above relied on it)
    monkeypatch.setattr(build, "GATEWAY_PYTHON", "/nonexistent/python3")
    with pytest.raises(LabError, match="python3-cryptography"):
        build.require_gateway_python()
