"""The gateway agent (netsetup-gateway) against the lab gateway's real sshd, wg and nft.

The agent is installed and driven over real SSH (OpenSSH's client from the office namespace, as
an admin would), inside the gateway sshd's own mount namespace: everything it writes lands in the
lab's overlay, never in the host's /etc.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netsetup.gateway.firewall import table_name
from netsetup.lab import Lab, probe
from netsetup.lab.admin import netsetup

pytestmark = pytest.mark.lab

AGENT_SOURCE = Path(__file__).resolve().parents[2] / "netsetup" / "gateway" / "agent.py"
AGENT = "/usr/local/sbin/netsetup-gateway"
STAGE = "/var/lib/netsetup/stage/root"


class Gateway:
    """The lab gateway as the admin reaches it: `ssh root@<gateway LAN address>` (`user`: as
    that account, running the agent through `sudo -n`)."""

    def __init__(self, lab: Lab, user: str = "root", sudo: bool = False) -> None:
        self.lab = lab
        self.user = user
        self.sudo = ["sudo", "-n"] if sudo else []
        profile = lab.profile()
        assert profile.gateway.ssh is not None
        self.address = str(profile.gateway.ssh.host)
        self.interface = profile.gateway.interface
        self.table = table_name(self.interface)
        self.profile_id = str(profile.id)

    def as_user(self, command: str) -> str:
        # the lab's sshd lets only root read its one authorized_keys file: a plain account's
        # session is root's turned into that account (what the agent sees is the same: sudo)
        if self.user == "root":
            return command
        return f"runuser -u {self.user} -- sh -c {shlex.quote(command)}"

    def ssh_argv(self, command: str) -> list[str]:
        argv = ["ip", "netns", "exec", self.lab.ns("office"), "ssh", "-i", str(self.lab.ssh_key)]
        argv += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        argv += ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"root@{self.address}"]
        return [*argv, self.as_user(command)]

    def ssh(self, command: str, data: bytes = b"", check: bool = True) -> str:
        done = subprocess.run(
            self.ssh_argv(command), input=data, capture_output=True, timeout=120, check=False
        )
        if check:
            assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def agent(self, *args: str) -> dict[str, Any]:
        argv = self.ssh_argv(shlex.join([*self.sudo, AGENT, *args]))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        lines = done.stdout.splitlines()
        assert len(lines) == 1, (done.stdout, done.stderr)  # exactly one JSON object
        answer = json.loads(lines[0])
        assert isinstance(answer, dict)
        return answer

    def read(self) -> dict[str, Any]:
        answer = self.agent("read", "--interface", self.interface, "--table", self.table)
        assert answer["ok"] is True, answer
        return answer

    def stage(self, name: str, data: bytes, stage: str = STAGE) -> None:
        self.ssh(f"umask 077 && cat > {stage}/{name}", data)

    def stage_rendered(self, with_profile: bool = True, stage: str = STAGE) -> None:
        """The lab profile as netsetup renders it now: config, ruleset, profile files."""
        out = self.lab.run_dir / "agent-test.conf"
        key = str(self.lab.gateway_key_file)
        netsetup(
            self.lab, "render", str(self.lab.profile_dir), "--out", str(out), "--gateway-key", key
        )
        ruleset = netsetup(self.lab, "render", str(self.lab.profile_dir), "--firewall").stdout
        self.stage(f"{self.interface}.conf", out.read_bytes(), stage)
        out.unlink()
        self.stage(f"{self.interface}.nft", ruleset.encode(), stage)
        if with_profile:
            peer_files = sorted(p.name for p in (self.lab.profile_dir / "peers").glob("*.toml"))
            tar = ["tar", "-C", str(self.lab.profile_dir), "-cf", "-", "profile.toml"]
            tar += [f"peers/{name}" for name in peer_files]
            tarred = subprocess.run(tar, capture_output=True, check=True).stdout
            self.stage("profile.tar", tarred, stage)

    def commit(self, within: int = 60, stage: str = STAGE) -> dict[str, Any]:
        return self.agent(
            "commit",
            *("--interface", self.interface, "--table", self.table),
            *("--profile-id", self.profile_id, "--stage", stage),
            *("--confirm-within", str(within)),
        )

    def staged(self, stage: str = STAGE) -> list[str]:
        return self.ssh(f"ls -A {stage}").split()

    def dump_peers(self) -> dict[str, list[str]]:
        dump = self.lab.exec("gateway", ["wg", "show", self.interface, "dump"]).stdout
        return {line.split("\t")[0]: line.split("\t") for line in dump.splitlines()[1:]}

    def snapshot(self) -> dict[str, str]:
        """What a restore must give back exactly: the files the agent manages, the live
        WireGuard state without counters/handshakes/endpoints, the ruleset without counters and
        the elements of timed sets."""
        files = self.ssh(
            "find /etc/wireguard /etc/netsetup /var/lib/netsetup/*/applied.json -type f "
            "-print0 2>/dev/null | sort -z | xargs -0 -r sha256sum; true"
        )
        dump = self.lab.exec("gateway", ["wg", "show", self.interface, "dump"]).stdout
        lines = dump.splitlines()
        peers = sorted(
            "\t".join(f[:2] + f[3:4] + f[7:]) for f in (x.split("\t") for x in lines[1:])
        )
        ruleset = self.lab.exec("gateway", ["nft", "list", "ruleset"]).stdout
        return {
            "files": files,
            "interface": lines[0] if lines else "",
            "peers": "\n".join(peers),
            "ruleset": normalise_ruleset(ruleset),
        }

    def wait_not_pending(self, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            answer = self.read()
            if answer["pending"] is None or time.monotonic() > deadline:
                return answer
            time.sleep(1)


def normalise_ruleset(text: str) -> str:
    """`nft list ruleset` without counter values and without the elements of timed sets."""
    out: list[str] = []
    timed = skipping = False
    for line in text.splitlines():
        stripped = line.strip()
        if skipping:
            skipping = not stripped.endswith("}")
            continue
        if re.match(r"^(set|map) \S+ \{$", stripped):
            timed = False
        elif stripped.startswith("timeout ") or (
            stripped.startswith("flags ") and ("timeout" in stripped or "dynamic" in stripped)
        ):
            timed = True
        if timed and stripped.startswith("elements = {"):
            skipping = not stripped.endswith("}")
            continue
        out.append(re.sub(r"counter packets \d+ bytes \d+", "counter", line))
    return "\n".join(out)


@pytest.fixture(scope="module")
def gateway(lab: Lab) -> Iterator[Gateway]:
    gw = Gateway(lab)
    gw.ssh(f"cat > {AGENT} && chmod 0755 {AGENT}", AGENT_SOURCE.read_bytes())
    yield gw


def test_version_and_read(gateway: Gateway) -> None:
    assert gateway.agent("version") == {"ok": True, "version": 1}
    answer = gateway.read()
    assert answer["up"] is True
    key = gateway.lab.exec("gateway", ["wg", "show", gateway.interface, "public-key"]).stdout
    assert key.strip() in str(answer["dump"])
    assert answer["conf"] == gateway.lab.gateway_config.read_text()
    assert f"inet {gateway.table}" in list(answer["tables"])
    assert f"table inet {gateway.table}" in str(answer["listing"])
    assert answer["pending"] is None
    assert set(answer["forwarding"]) == {"ipv4", "ipv6"}
    # the stage folder it made: root's, 0700
    assert gateway.ssh(f"stat -c '%U %a' {STAGE}").split() == ["root", "700"]


def test_read_removes_stale_staged_files(gateway: Gateway) -> None:
    gateway.stage("old.conf.tmp", b"left by a cut upload")
    gateway.stage("fresh.tmp", b"an upload under way")
    gateway.ssh(f"touch -d '-1 hour' {STAGE}/old.conf.tmp")
    gateway.read()
    assert gateway.staged() == ["fresh.tmp"]
    gateway.ssh(f"rm -f {STAGE}/fresh.tmp")


def test_refuses_a_symlinked_staged_file(gateway: Gateway) -> None:
    gateway.stage(f"{gateway.interface}.nft", b"table inet x {}\n")
    gateway.ssh(f"ln -sf /etc/shadow {STAGE}/{gateway.interface}.conf")
    before = gateway.snapshot()
    answer = gateway.commit()
    assert answer["ok"] is False and answer["step"] == "check", answer
    assert "link" in str(answer["error"])
    assert gateway.staged() == []
    assert gateway.snapshot() == before


def test_a_refused_commit_leaves_nothing_staged(gateway: Gateway) -> None:
    gateway.stage_rendered()
    assert len(gateway.staged()) == 3
    before = gateway.snapshot()
    answer = gateway.agent(
        "commit",
        *("--interface", gateway.interface, "--table", gateway.table),
        *("--profile-id", "../../etc", "--stage", STAGE, "--confirm-within", "60"),
    )
    assert answer["ok"] is False and answer["step"] == "usage", answer
    assert gateway.staged() == []
    assert gateway.snapshot() == before


def test_commit_adds_a_peer_without_disturbing_the_others_then_confirm(
    gateway: Gateway, lab: Lab, connect: Callable[..., str]
) -> None:
    connect("maria", "dedicated")
    profile = lab.profile()
    home = lab.ns("home")
    maria_before = {k: v for k, v in gateway.dump_peers().items() if v[4] != "0"}
    assert maria_before, "maria's tunnel has no handshake on the gateway"
    lab.provision("newcomer", "dedicated", sync=False)
    gateway.stage_rendered()
    answer = gateway.commit()
    assert answer["ok"] is True, answer
    token = str(answer["token"])
    assert gateway.staged() == []
    newcomer = (lab.profile_dir / "peers" / "newcomer.toml").read_text()
    peers = gateway.dump_peers()
    assert any(key in newcomer for key in peers), "the new peer is not live"
    for key, fields in maria_before.items():  # same session: no new handshake was needed
        assert peers[key][4] == fields[4]
    assert probe.ping(home, str(profile.network.gateway_address_v4), count=2).received == 2
    pending = gateway.read()["pending"]
    assert isinstance(pending, dict) and "token" not in pending
    assert gateway.ssh(f"stat -c %a /etc/wireguard/{gateway.interface}.conf").strip() == "600"
    assert gateway.ssh(f"cat /etc/netsetup/profiles/{gateway.profile_id}/peers/newcomer.toml")
    assert gateway.agent("confirm", "--interface", gateway.interface, "--token", token) == {
        "ok": True
    }
    assert gateway.read()["pending"] is None
    assert token not in gateway.ssh("ps -eo args")  # the revert timer is gone
    audit = gateway.ssh("cat /var/log/netsetup/audit.jsonl")
    assert '"event": "commit"' in audit and '"event": "confirm"' in audit


def test_unconfirmed_commit_is_reverted_by_the_timer(gateway: Gateway, lab: Lab) -> None:
    before = gateway.snapshot()
    lab.provision("unconfirmed", "dedicated", sync=False)
    gateway.stage_rendered()
    answer = gateway.commit(within=5)
    assert answer["ok"] is True, answer
    assert gateway.snapshot() != before  # the commit did change the gateway
    assert gateway.wait_not_pending(40)["pending"] is None
    assert gateway.snapshot() == before
    late = gateway.agent("confirm", "--interface", gateway.interface, "--token", answer["token"])
    assert late["ok"] is False and late["reverted"] is True, late


@pytest.fixture
def failing(gateway: Gateway) -> Iterator[Callable[[str, str], None]]:
    """failing(tool, first_argument): that tool fails once on the gateway (a wrapper earlier on
    the agent's PATH, in the gateway's own /usr/local/bin), then behaves again."""
    made: list[str] = []

    def _install(tool: str, first: str) -> None:
        wrapper = (
            "#!/bin/sh\n"
            f'if [ "$1" = "{first}" ] && [ -e /var/lib/netsetup-test-fail ]; then\n'
            "  rm -f /var/lib/netsetup-test-fail; echo injected failure >&2; exit 1\nfi\n"
            f'for d in /usr/sbin /usr/bin; do [ -x $d/{tool} ] && exec $d/{tool} "$@"; done\n'
            "exit 127\n"
        )
        gateway.ssh(
            f"cat > /usr/local/bin/{tool} && chmod 0755 /usr/local/bin/{tool}", wrapper.encode()
        )
        gateway.ssh("touch /var/lib/netsetup-test-fail")
        made.append(tool)

    yield _install
    for tool in made:
        gateway.ssh(f"rm -f /usr/local/bin/{tool} /var/lib/netsetup-test-fail")


@pytest.mark.parametrize(
    ("tool", "first", "step"), [("wg", "syncconf", "syncconf"), ("nft", "-f", "nft")]
)
def test_failure_restores_byte_identical(
    gateway: Gateway,
    lab: Lab,
    failing: Callable[[str, str], None],
    tool: str,
    first: str,
    step: str,
) -> None:
    before = gateway.snapshot()
    lab.provision(f"broken-{tool}", "dedicated", sync=False)
    gateway.stage_rendered()
    failing(tool, first)
    answer = gateway.commit()
    assert answer == {
        "ok": False,
        "step": step,
        "restored": True,
        "error": answer.get("error"),
    }, answer
    if tool == "nft":
        # nft's own words never go back to the caller (an `include` could make it quote a
        # root-only file); the agent says where nft refused
        assert str(answer["error"]).startswith("nft rejected the ruleset"), answer
        assert "injected failure" not in str(answer["error"])
    else:
        assert "injected failure" in str(answer["error"])
    assert gateway.snapshot() == before
    assert gateway.staged() == []
    assert gateway.read()["pending"] is None


def test_second_commit_is_refused_while_one_holds_the_lock(gateway: Gateway, lab: Lab) -> None:
    before = gateway.snapshot()
    lock = f"/var/lib/netsetup/{gateway.interface}/lock"
    gateway.stage_rendered()
    # another apply holds the lock until its input ends
    holder = subprocess.Popen(
        gateway.ssh_argv(f"flock {lock} sh -c 'echo held; read line'"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        answer = gateway.commit()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert answer["ok"] is False and answer["step"] == "lock", answer
    assert answer["error"] == "another apply is in progress on this gateway"
    assert gateway.staged() == []
    assert gateway.snapshot() == before


def test_pending_commit_refuses_another_and_rollback_restores(gateway: Gateway, lab: Lab) -> None:
    before = gateway.snapshot()
    lab.provision("rolled-back", "dedicated", sync=False)
    gateway.stage_rendered()
    first = gateway.commit()
    assert first["ok"] is True, first
    gateway.stage_rendered()
    second = gateway.commit()
    assert second["ok"] is False and second["step"] == "check", second
    assert "not confirmed" in str(second["error"])
    token = str(first["token"])
    back = gateway.agent("rollback", "--interface", gateway.interface, "--token", token)
    assert back == {"ok": True, "restored": True}
    assert gateway.snapshot() == before
    assert gateway.read()["pending"] is None


def test_an_admin_account_runs_it_through_sudo(gateway: Gateway, lab: Lab) -> None:
    """The README's sudoers line: a plain account may run the agent as root, and nothing else;
    its stage folder is its own."""
    gateway.ssh(
        "id netadmin >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh netadmin; "
        "usermod -p '*' netadmin && umask 0337 && "
        f"echo 'netadmin ALL=(root) NOPASSWD: {AGENT}' > /etc/sudoers.d/netsetup"
    )
    admin = Gateway(lab, user="netadmin", sudo=True)
    assert "root" not in admin.ssh("sudo -n /usr/bin/id -un 2>&1", check=False)
    before = gateway.snapshot()
    admin.read()
    stage = "/var/lib/netsetup/stage/netadmin"
    assert gateway.ssh(f"stat -c '%U %a' {stage}").split() == ["netadmin", "700"]
    lab.provision("via-sudo", "dedicated", sync=False)
    admin.stage_rendered(stage=stage)
    answer = admin.commit(stage=stage)
    assert answer["ok"] is True, answer
    assert admin.staged(stage) == []
    assert '"user": "netadmin"' in gateway.ssh("cat /var/log/netsetup/audit.jsonl")
    back = admin.agent("rollback", "--interface", admin.interface, "--token", answer["token"])
    assert back == {"ok": True, "restored": True}
    assert gateway.snapshot() == before
    # root's staged files are not the admin's to commit
    gateway.read()  # makes root's stage folder when this test runs alone
    gateway.stage_rendered()
    refused = admin.commit(stage=STAGE)
    assert refused["ok"] is False and refused["step"] == "usage", refused
    assert len(gateway.staged()) == 3  # and not removed by someone else's commit
    gateway.ssh(f"rm -f {STAGE}/*")


def test_a_down_interface_is_brought_up_and_the_revert_takes_it_down(
    gateway: Gateway, lab: Lab
) -> None:
    """A fresh gateway (bootstrap): no interface yet, so commit runs `wg-quick up`; the revert
    brings it down again. Last in the module: it leaves the interface as the lab had it."""
    config = str(lab.gateway_config)
    assert lab.exec("gateway", ["wg-quick", "down", config]).ok
    try:
        before = gateway.snapshot()
        assert before["interface"] == ""
        gateway.stage_rendered(with_profile=False)
        answer = gateway.commit(within=5)
        assert answer["ok"] is True, answer
        assert gateway.read()["up"] is True
        assert len(gateway.dump_peers()) > 0
        assert gateway.wait_not_pending(40)["up"] is False
        assert gateway.snapshot() == before
    finally:
        if gateway.interface not in lab.exec("gateway", ["wg", "show", "interfaces"]).stdout:
            assert lab.exec("gateway", ["wg-quick", "up", config]).ok
