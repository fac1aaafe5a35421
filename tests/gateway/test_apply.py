"""apply's parts that need no gateway: what it uploads, how it checks the result, adopting drift
peers, its options and audit line; and the refusals that must come before anything is sent
(tested against a real sshd on 127.0.0.1 with a host key that is not the pinned one)."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.gateway.apply import (
    ApplyOptions,
    GatewayResult,
    adopt_drift,
    apply_profile,
    audit_line,
    check_options,
    plan_profile,
    profile_tar,
    verify,
)
from netsetup.gateway.plan import GatewayPlan, make_plan
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.edit import set_gateway_key
from netsetup.profile.store import load_peers
from netsetup.profile.values import PeerName, ProfileId

from .support import FakeGateway, World, make_world


@pytest.fixture
def world(acme: Path, tmp_path: Path) -> World:
    return make_world(acme, tmp_path)


def test_profile_tar_holds_the_profile_and_peer_files_only(world: World) -> None:
    world.provision("anna")
    world.provision("bert")
    profile = world.profile()
    (profile.peers_dir / ".lock").write_text("")
    data = profile_tar(profile)
    assert data == profile_tar(profile)  # the same files give the same bytes
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        assert names == ["profile.toml", "peers/anna.toml", "peers/bert.toml"]
        member = archive.extractfile("peers/anna.toml")
        assert member is not None
        assert member.read() == (profile.peers_dir / "anna.toml").read_bytes()
    for path in world.admin("a").root.rglob("*.psk"):
        assert path.read_text().strip().encode() not in data


def plan_for(world: World, gateway: FakeGateway, admin: str = "a") -> GatewayPlan:
    profile = world.profile()
    return make_plan(
        profile.site(None),
        load_peers(profile),
        gateway.live(),
        world.admin(admin),
        world.clock.now(),
    )


def applied(world: World, *names: str) -> tuple[FakeGateway, GatewayPlan]:
    """A gateway that runs what admin a planned for the peers `names`."""
    for name in names:
        world.provision(name)
    world.give_gateway_key("a")
    gateway = FakeGateway(conf=None, up=False, listing=None)
    plan = plan_for(world, gateway)
    gateway.take(plan)
    return gateway, plan


def adopt(world: World, plan: GatewayPlan, mode: str, admin: str) -> list[str]:
    profile = world.profile()
    return adopt_drift(
        profile,
        profile.site(None),
        plan.drift_peers,
        mode=mode,
        state=world.admin(admin),
        now=world.clock.now(),
    )


def test_verify_accepts_exactly_the_plan(world: World) -> None:
    gateway, plan = applied(world, "anna", "bert")
    assert verify(plan, gateway.live()) == []


def test_verify_names_every_difference_by_fingerprint_only(world: World) -> None:
    gateway, plan = applied(world, "anna", "bert")
    anna, bert = load_peers(world.profile())
    assert gateway.conf is not None
    other_psk = generate_preshared_key().reveal()
    running = gateway.conf.replace(world.psk("a", "anna"), other_psk)
    running = running.replace(f"{bert.address_v4}/32", "198.18.10.99/32")
    stranger = generate_keypair().public
    running += f"\n[Peer]\nPublicKey = {stranger}\nAllowedIPs = 198.18.10.50/32\n"
    gateway.live_conf = running
    gateway.ruleset_file = (gateway.ruleset_file or "") + "# edited\n"
    problems = verify(plan, gateway.live())
    from netsetup.keys import fingerprint

    assert f"peer {fingerprint(anna.public_key)} has another preshared key" in problems
    assert f"peer {fingerprint(bert.public_key)} has other AllowedIPs" in problems
    assert f"peer {fingerprint(stranger)} should not be there" in problems
    assert "the loaded ruleset is not the one uploaded" in problems
    assert other_psk not in " ".join(problems)
    gateway.up = False
    assert verify(plan, gateway.live()) == ["interface wg0 is not up"]


def test_verify_reads_the_kernels_table_not_only_the_agents_record(world: World) -> None:
    gateway, plan = applied(world, "anna")
    assert gateway.listing is not None
    # a rule added by hand after the load: the agent's record still says what it loaded
    gateway.listing = gateway.listing.replace("}", "\tip saddr 198.51.100.7 accept\n}", 1)
    assert verify(plan, gateway.live()) == ["the table inet netsetup_wg0 is not what was loaded"]


def test_adopting_drift_peers_keeps_their_keys_and_addresses(world: World) -> None:
    gateway, _ = applied(world, "anna")
    stranger, psk = generate_keypair().public, generate_preshared_key()
    assert gateway.conf is not None
    gateway.conf += (
        f"\n[Peer]\nPublicKey = {stranger}\nPresharedKey = {psk.reveal()}\n"
        "AllowedIPs = 198.18.10.77/32, 2001:db8:10::77/128\n"
    )
    plan = plan_for(world, gateway)
    assert len(plan.drift_peers) == 1
    (name,) = adopt(world, plan, "agency", "b")
    PeerName(name)  # a peer name (from the comments above it, else generated)
    profile = world.profile()
    peer = next(p for p in load_peers(profile) if p.name == name)
    assert peer.public_key == stranger and peer.mode == "agency"
    assert str(peer.address_v4) == "198.18.10.77" and str(peer.address_v6) == "2001:db8:10::77"
    assert peer.key_origin == "client"
    stored = world.admin("b").load_psk(ProfileId(profile.id), PeerName(name), stranger)
    assert stored == psk
    assert psk.reveal() not in (profile.peers_dir / f"{name}.toml").read_text()
    # adopted: the next plan is in sync, and adopting again writes nothing
    again = plan_for(world, gateway, "b")
    assert again.drift_peers == () and again.add == () and again.change == ()
    assert adopt(world, plan, "agency", "b") == []


def test_a_drift_peer_that_is_no_netsetup_peer_cannot_be_adopted(world: World) -> None:
    gateway, _ = applied(world, "anna")
    anna = load_peers(world.profile())[0]
    assert gateway.conf is not None
    base = gateway.conf
    for allowed in ("10.0.0.0/24", "198.18.10.80/32, 198.18.10.81/32", f"{anna.address_v4}/32"):
        stranger = generate_keypair().public
        gateway.conf = base + f"\n[Peer]\nPublicKey = {stranger}\nAllowedIPs = {allowed}\n"
        with pytest.raises(InputError) as refused:
            adopt(world, plan_for(world, gateway), "dedicated", "a")
        assert allowed.split("/")[0] in str(refused.value) or "address" in str(refused.value)
    assert [p.name for p in load_peers(world.profile())] == ["anna"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (ApplyOptions(adopt=True), "--adopt needs --mode"),
        (ApplyOptions(adopt=True, mode="boss"), "unknown mode"),
        (ApplyOptions(confirm_within=2), "5 to 3600"),
        (ApplyOptions(parallel=0), "at least 1"),
        (
            ApplyOptions(gateway="branch"),
            "no gateway 'branch' in the profile \\(it has: gateway\\)",
        ),
    ],
)
def test_options_that_do_not_fit(world: World, options: ApplyOptions, words: str) -> None:
    with pytest.raises(InputError, match=words):
        check_options(world.profile(), options)


def test_the_audit_line_names_fingerprints_never_keys(world: World) -> None:
    _, plan = applied(world, "anna", "bert")
    result = GatewayResult("gateway", "root@127.0.0.1:9", "applied", plan=plan)
    line = audit_line(world.profile(), result, world.clock.now())
    record = json.loads(line)
    assert record["action"] == "apply" and record["gateway"] == "gateway"
    assert record["status"] == "applied" and record["actor"]
    assert len(record["added"]) == 2 and all(f.startswith("SHA256:") for f in record["added"])
    assert world.psk("a", "anna") not in line and world.gateway_private not in line


def test_a_gateway_without_ssh_is_refused_without_a_connection(world: World) -> None:
    profile = world.profile()
    profile = replace(profile, gateway=replace(profile.gateway, ssh=None))
    report = apply_profile(profile, world.admin("a"), ApplyOptions())
    (result,) = report.results
    assert result.status == "refused" and result.exit_code == 2 and report.exit_code == 2
    assert "has no `ssh" in (result.error or "")
    audit = world.admin("a").audit_path.read_text().splitlines()
    assert json.loads(audit[-1])["status"] == "refused"
    planned = plan_profile(profile, world.admin("a"), ApplyOptions())
    assert planned.exit_code == 2 and planned.results[0].plan is None


# -- against a real sshd ----------------------------------------------------------------------

# the real sshd on 127.0.0.1 of test_remote, as a fixture of this module too
from .test_remote import Server  # noqa: E402
from .test_remote import server as sshd  # noqa: E402, F401


def test_an_unpinned_or_other_host_key_stops_apply_before_anything_is_sent(
    world: World,
    sshd: Server,  # noqa: F811  (the fixture imported above)
) -> None:
    """The pinned key is another host's: apply fails at `connect` with both fingerprints,
    exit 3, nothing changed; the server saw no authentication attempt."""
    world.provision("anna")
    profile_file = world.profile().profile_file
    set_gateway_key(profile_file, 0, "ssh", f"root@127.0.0.1:{sshd.port}")
    other = "SHA256:" + "A" * 43
    set_gateway_key(profile_file, 0, "host_key", other)
    before = sshd.logged()
    options = ApplyOptions(identity=sshd.client_key)
    report = apply_profile(world.profile(), world.admin("a"), options)
    (result,) = report.results
    assert report.exit_code == 3 and result.status == "failed" and result.step == "connect"
    assert result.restored is None and result.outcome == "nothing was changed on the gateway"
    error = result.error or ""
    assert other in error and sshd.fingerprint in error
    logged = sshd.logged()[len(before) :]
    assert "Accepted" not in logged and "publickey" not in logged


def test_several_gateways_each_get_their_result_and_the_report_names_the_failed(
    world: World,
    sshd: Server,  # noqa: F811  (the fixture imported above)
) -> None:
    """Three sites handled at once: one without `ssh` (refused, exit 2), two whose pinned key is
    not the server's (failed at connect, exit 3): the report keeps the profile's order, the exit
    code is 3, `failed` names exactly those two, and each has its audit line."""
    from netsetup.profile.model import SshTarget

    world.provision("anna")
    profile = world.profile()
    target = SshTarget("root", "127.0.0.1", sshd.port)
    sites = (
        replace(profile.gateway, name="main", ssh=None),
        replace(profile.gateway, name="branch", ssh=target, host_key="SHA256:" + "C" * 43),
        replace(profile.gateway, name="depot", ssh=target, host_key="SHA256:" + "D" * 43),
    )
    profile = replace(profile, gateway=sites[0], sites=sites)
    options = ApplyOptions(identity=sshd.client_key, parallel=2)
    report = apply_profile(profile, world.admin("a"), options)
    assert [r.gateway for r in report.results] == ["main", "branch", "depot"]
    assert [r.status for r in report.results] == ["refused", "failed", "failed"]
    assert [r.exit_code for r in report.results] == [2, 3, 3]
    assert report.exit_code == 3 and [r.gateway for r in report.failed] == ["branch", "depot"]
    assert report.as_dict()["failed"] == ["branch", "depot"]
    audit = [json.loads(line) for line in world.admin("a").audit_path.read_text().splitlines()]
    applies = {line["gateway"]: line["status"] for line in audit if line["action"] == "apply"}
    assert applies == {"main": "refused", "branch": "failed", "depot": "failed"}
    only = apply_profile(profile, world.admin("a"), replace(options, gateway="depot"))
    assert [r.gateway for r in only.results] == ["depot"]
    planned = plan_profile(profile, world.admin("a"), options)
    assert [r.exit_code for r in planned.results] == [2, 3, 3] and planned.exit_code == 3
