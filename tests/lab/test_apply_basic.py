"""`plan` and `apply` against the lab gateway's real sshd, wg and nft, run by the admin from the
office LAN: a fresh gateway is planned, applied and then in sync; a peer provisioned afterwards
gets a working tunnel through `apply` alone (the lab's own re-render is never used here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from netsetup.lab import Lab
from netsetup.lab.admin import netsetup_as_admin
from netsetup.lab.proc import in_ns, run

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
AGENT_SOURCE = REPO / "netsetup" / "gateway" / "agent.py"

# installs the agent with netsetup's own SSH session (pinned host key, SFTP, rename into place)
INSTALL = """
import sys
from pathlib import Path
from netsetup.gateway.remote import AGENT_PATH, GatewaySession
from netsetup.profile.store import load_profile

gateway = load_profile(sys.argv[1]).gateway
assert gateway.ssh is not None
with GatewaySession(gateway.ssh, host_key=gateway.host_key, identity=Path(sys.argv[2])) as s:
    s.upload(Path(sys.argv[3]).read_bytes(), AGENT_PATH, mode=0o755)
    print(s.agent("version"))
"""


def install_agent(lab: Lab) -> None:
    argv = [sys.executable, "-c", INSTALL, str(lab.profile_dir), str(lab.ssh_key)]
    done = run(in_ns(lab.ns("office"), [*argv, str(AGENT_SOURCE)]), check=False)
    assert done.returncode == 0, done.stderr
    assert "'version': 1" in done.stdout


def admin(lab: Lab, *args: str) -> tuple[int, dict[str, Any], str]:
    done = netsetup_as_admin(lab, *args, str(lab.profile_dir), "--json", check=False)
    return done.returncode, json.loads(done.stdout), done.stderr


def psks(lab: Lab) -> list[str]:
    return [p.read_text().strip() for p in lab.state_dir.rglob("*.psk")]


def live_keys(lab: Lab) -> set[str]:
    dump = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "dump"]).stdout
    return {line.split("\t")[0] for line in dump.splitlines()[1:]}


def gateway_file(lab: Lab, layer: str, *parts: str) -> Path:
    """A file the agent wrote, as the gateway's sshd sees it (its overlay's upper layer)."""
    return lab.gateway_root.joinpath(layer, "upper", *parts)


def test_plan_apply_in_sync_then_a_new_peer_connects(lab: Lab) -> None:
    install_agent(lab)
    interface = lab.gateway_interface
    lab.provision("anna", "dedicated", sync=False)

    code, planned, err = admin(lab, "plan")
    assert code == 1, err
    assert planned["schema"] == "netsetup.plan/1"
    (gateway,) = planned["gateways"]
    assert [p["name"] for p in gateway["add"]] == ["anna"]
    assert gateway["drift_peers"] == [] and not gateway["in_sync"]
    assert gateway["ruleset_diff"].startswith(f"--- gateway:/etc/netsetup/nftables/{interface}")

    code, applied, err = admin(lab, "apply")
    assert code == 0, (applied, err)
    assert applied["schema"] == "netsetup.apply/1"
    (result,) = applied["gateways"]
    assert result["status"] == "applied", result
    assert "confirming over a fresh SSH connection" in err  # progress, on stderr
    for secret in psks(lab):
        assert secret not in err and secret not in json.dumps(applied)

    # what the gateway holds now: the config with anna, the ruleset file and the record of it
    from netsetup.profile.store import load_peers

    profile = lab.profile()
    (anna,) = load_peers(profile)
    assert anna.public_key in live_keys(lab)
    assert anna.public_key in lab.gateway_config.read_text()
    ruleset = gateway_file(lab, "etc", "netsetup", "nftables", f"{interface}.nft")
    assert "table inet netsetup_" in ruleset.read_text()
    record = json.loads(
        gateway_file(lab, "var-lib", "netsetup", interface, "applied.json").read_text()
    )
    assert record["listing"].startswith("table inet netsetup_")
    assert gateway_file(
        lab, "etc", "netsetup", "profiles", profile.id, "peers", "anna.toml"
    ).exists()
    stage = gateway_file(lab, "var-lib", "netsetup", "stage", "root")
    assert not list(stage.iterdir())  # nothing staged is left behind

    code, planned, err = admin(lab, "plan")
    assert code == 0, (planned, err)
    assert planned["in_sync"] is True

    # a peer provisioned afterwards: apply alone brings its tunnel up
    lab.provision("bert", "dedicated", sync=False)
    before = live_keys(lab)
    code, applied, err = admin(lab, "apply")
    assert code == 0, (applied, err)
    (result,) = applied["gateways"]
    assert [p["name"] for p in result["plan"]["add"]] == ["bert"]
    assert result["plan"]["remove"] == []
    assert before < live_keys(lab)
    connected = lab.connect("bert", "dedicated", "home")
    assert connected.ok, "no handshake for bert after apply"
    assert admin(lab, "plan")[0] == 0

    audit = [json.loads(line) for line in (lab.state_dir / "audit.jsonl").read_text().splitlines()]
    applies = [line for line in audit if line["action"] == "apply"]
    assert [line["status"] for line in applies] == ["applied", "applied"]


def test_apply_in_sync_sends_nothing(lab: Lab) -> None:
    """A second apply without changes: nothing uploaded, no commit, no backup taken."""
    backups = gateway_file(lab, "var-lib", "netsetup", lab.gateway_interface, "backups")
    taken = sorted(p.name for p in backups.iterdir())
    code, applied, err = admin(lab, "apply")
    assert code == 0, err
    assert applied["gateways"][0]["status"] == "unchanged"
    assert "uploading" not in err
    assert sorted(p.name for p in backups.iterdir()) == taken


# apply in-process in the office namespace, with its SSH path to the gateway cut (a real TCP
# reset from nft) from the moment it starts confirming until it waits for the gateway's revert
CUT_CONFIRMATION = """
import json, subprocess, sys
from netsetup.gateway.apply import ApplyOptions, apply_profile
from netsetup.profile.store import load_profile
from netsetup.state import StateDir

gateway = sys.argv[2]
CUT = (
    "add table inet apply_test_cut; add chain inet apply_test_cut out "
    "{ type filter hook output priority 0; }; "
    f"add rule inet apply_test_cut out ip daddr {gateway} tcp dport 22 reject with tcp reset"
)

def progress(name, message):
    print(f"[{name}] {message}", file=sys.stderr, flush=True)
    if message.startswith("confirming over a fresh SSH connection"):
        subprocess.run(["nft", CUT], check=True)
    if "checking again in" in message:
        subprocess.run(["nft", "delete table inet apply_test_cut"], check=True)

options = ApplyOptions(confirm_within=5, progress=progress)
print(json.dumps(apply_profile(load_profile(sys.argv[1]), StateDir(), options).as_dict()))
"""


def _gateway_now(lab: Lab) -> tuple[bytes, bytes, list[list[str]]]:
    """The config file, the ruleset file and each live peer's key, preshared key and AllowedIPs."""
    interface = lab.gateway_interface
    dump = lab.exec("gateway", ["wg", "show", interface, "dump"]).stdout
    peers = sorted(line.split("\t")[:2] + line.split("\t")[3:4] for line in dump.splitlines()[1:])
    ruleset = gateway_file(lab, "etc", "netsetup", "nftables", f"{interface}.nft")
    return lab.gateway_config.read_bytes(), ruleset.read_bytes(), peers


def test_without_a_confirmation_the_gateway_reverts_by_itself(lab: Lab) -> None:
    """The confirming connection is refused: apply says the gateway reverts at its deadline,
    waits, and finds it reverted (exit 3, restored); the gateway is as before, then applies."""
    lab.provision("carla", "dedicated", sync=False)
    before = _gateway_now(lab)
    assert admin(lab, "plan")[0] == 1
    address = str(lab.profile().gateway.ssh.host)  # type: ignore[union-attr]
    argv = [sys.executable, "-c", CUT_CONFIRMATION, str(lab.profile_dir), address]
    env = {"NETSETUP_STATE_DIR": str(lab.state_dir), "NETSETUP_SSH_KEY": str(lab.ssh_key)}
    try:
        done = run(in_ns(lab.ns("office"), argv), check=False, timeout=240, env=env)
    finally:
        lab.exec("office", ["nft", "delete", "table", "inet", "apply_test_cut"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == 3 and report["failed"] == ["gateway"]
    (result,) = report["gateways"]
    assert (result["status"], result["step"], result["restored"]) == ("failed", "confirm", True)
    assert "the gateway reverted by itself" in result["error"]
    assert "the gateway reverts by itself at its deadline" in done.stderr
    assert _gateway_now(lab) == before
    code, planned, _ = admin(lab, "plan")
    assert code == 1 and [p["name"] for p in planned["gateways"][0]["add"]] == ["carla"]
    code, applied, err = admin(lab, "apply")
    assert code == 0, (applied, err)


def test_two_admins_apply_in_turn_and_keep_each_others_preshared_keys(
    lab: Lab, tmp_path: Path
) -> None:
    """Admin A (the lab's state folder) and admin B (a state folder of their own) each provision
    a peer and apply: neither has the other's preshared key, the gateway keeps both, nobody is
    re-keyed, and each then sees the gateway in sync."""
    from netsetup.profile.store import load_peers

    other_state = tmp_path / "admin-b-state"
    as_b = {"NETSETUP_STATE_DIR": str(other_state)}
    lab.provision("dana", "dedicated", sync=False)
    assert admin(lab, "apply")[0] == 0
    out = tmp_path / "erik-config"
    provisioned = netsetup_as_admin(
        lab,
        "provision",
        str(lab.profile_dir),
        "erik",
        "--mode",
        "dedicated",
        "--out",
        str(out),
        env=as_b,
    )
    assert provisioned.returncode == 0
    done = netsetup_as_admin(lab, "apply", str(lab.profile_dir), "--json", check=False, env=as_b)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["gateways"]
    assert [p["name"] for p in result["plan"]["add"]] == ["erik"]
    assert result["plan"]["unkeyed"] == [] and result["plan"]["change"] == []

    dump = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "dump"]).stdout
    live_psk = {line.split("\t")[0]: line.split("\t")[1] for line in dump.splitlines()[1:]}
    peers = {p.name: p for p in load_peers(lab.profile())}
    (dana_psk,) = [p.read_text().strip() for p in lab.state_dir.rglob("dana.*.psk")]
    (erik_psk,) = [p.read_text().strip() for p in other_state.rglob("erik.*.psk")]
    assert live_psk[peers["dana"].public_key] == dana_psk
    assert live_psk[peers["erik"].public_key] == erik_psk
    assert not list(other_state.rglob("dana.*.psk")) and not list(lab.state_dir.rglob("erik.*"))
    assert admin(lab, "plan")[0] == 0  # admin A: in sync without erik's key
    in_sync = netsetup_as_admin(lab, "plan", str(lab.profile_dir), check=False, env=as_b)
    assert in_sync.returncode == 0, in_sync.stdout
