"""`plan` against a gateway state: peers added, removed, changed; drift; the ruleset; the
preshared-key rules (live keys kept, another admin's peers never re-keyed); never a secret in
what is shown."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.gateway.plan import GatewayPlan, describe, make_plan
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.store import load_peers
from netsetup.profile.values import PeerName

from .support import LISTING, FakeGateway, World, make_world


@pytest.fixture
def world(acme: Path, tmp_path: Path) -> World:
    return make_world(acme, tmp_path)


def plan_of(world: World, gateway: FakeGateway, admin: str = "a", **kw: bool) -> GatewayPlan:
    profile = world.profile()
    return make_plan(
        profile.site(None),
        load_peers(profile),
        gateway.live(),
        world.admin(admin),
        world.clock.now(),
        **kw,
    )


def synced(world: World, admin: str = "a") -> FakeGateway:
    """A gateway that runs exactly what admin `admin` would apply now."""
    gateway = FakeGateway(conf=None, up=False, listing=None)
    world.give_gateway_key(admin)
    gateway.take(plan_of(world, gateway, admin))
    return gateway


def shown(plan: GatewayPlan) -> str:
    return "\n".join(describe(plan)) + json.dumps(plan.as_dict())


def no_secrets(world: World, text: str, admins: tuple[str, ...] = ("a",)) -> None:
    assert world.gateway_private not in text
    for admin in admins:
        for path in world.admin(admin).root.rglob("*.psk"):
            assert path.read_text().strip() not in text


def test_a_fresh_gateway_gets_everything_and_then_is_in_sync(world: World) -> None:
    world.provision("anna")
    world.give_gateway_key("a")
    fresh = FakeGateway(conf=None, up=False, listing=None)
    plan = plan_of(world, fresh)
    assert not plan.in_sync
    assert [c.name for c in plan.add] == ["anna"]
    assert plan.conf_file == ("/etc/wireguard/wg0.conf is missing",)
    assert plan.interface_changes == ("interface wg0 is down: apply brings it up",)
    assert plan.ruleset_diff.startswith("--- gateway:/etc/netsetup/nftables/wg0.nft (none)")
    assert plan.desired is not None
    assert plan.desired.conf.count("[Peer]") == 1
    assert world.psk("a", "anna") in plan.desired.conf  # the new peer's key, for the upload
    fresh.take(plan)
    again = plan_of(world, fresh)
    assert again.in_sync, describe(again)
    assert describe(again) == ["gateway gateway (root@127.0.0.1:9, wg0): in sync"]


def test_new_revoked_and_changed_peers(world: World) -> None:
    world.provision("anna")
    world.provision("temp", "agency", expires="7d")
    world.provision("bert")
    gateway = synced(world)
    world.provision("carla")
    world.revoke("temp")
    # bert's AllowedIPs and keepalive were changed by hand in what WireGuard runs
    bert = next(p for p in load_peers(world.profile()) if p.name == "bert")
    assert gateway.conf is not None
    gateway.live_conf = gateway.conf.replace(
        f"PublicKey = {bert.public_key}\n",
        f"PublicKey = {bert.public_key}\nPersistentKeepalive = 25\n",
    ).replace(f"{bert.address_v4}/32,", "198.18.10.200/32,")
    plan = plan_of(world, gateway)
    assert [c.name for c in plan.add] == ["carla"]
    assert [(c.name, c.details) for c in plan.remove] == [("temp", ("revoked",))]
    (change,) = plan.change
    assert change.name == "bert"
    assert any(d.startswith("AllowedIPs ") and "198.18.10.200/32" in d for d in change.details)
    assert "keepalive 25 -> off" in change.details
    text = "\n".join(describe(plan))
    assert f"+ peer carla (dedicated) {', '.join(plan.add[0].allowed_ips)}" in text
    assert "- peer temp (agency)" in text and ": revoked" in text
    assert "~ peer bert (dedicated)" in text
    assert not plan.has_drift
    no_secrets(world, shown(plan))


def test_an_expired_peer_is_removed(world: World) -> None:
    from datetime import timedelta

    world.provision("temp", "agency", expires="1d")
    gateway = synced(world)
    world.clock.advance(timedelta(days=2))
    plan = plan_of(world, gateway)
    (removed,) = plan.remove
    assert removed.name == "temp" and removed.details[0].startswith("expired ")


def test_a_peer_unknown_to_the_profile_is_drift(world: World) -> None:
    world.provision("anna")
    gateway = synced(world)
    stranger = generate_keypair().public
    psk = generate_preshared_key()
    assert gateway.conf is not None
    gateway.live_conf = gateway.conf + (
        f"\n[Peer]\nPublicKey = {stranger}\nPresharedKey = {psk.reveal()}\n"
        "AllowedIPs = 198.18.10.77/32\n"
    )
    gateway.conf += (
        f"\n# added by hand for eve\n[Peer]\nPublicKey = {stranger}\nAllowedIPs = 198.18.10.77/32\n"
    )
    plan = plan_of(world, gateway)
    (drift,) = plan.drift_peers
    assert drift.public_key == stranger and drift.live and drift.in_conf
    assert drift.comments == ("added by hand for eve",)
    assert drift.peer.preshared_key == psk  # the live one: --adopt keeps it
    assert plan.has_drift and not plan.in_sync and plan.remove == ()
    text = "\n".join(describe(plan))
    assert (
        f"! drift: peer {drift.fingerprint} 198.18.10.77/32 on the gateway (live and in the "
        in text
    )
    assert "unknown to the profile (comment: added by hand for eve)" in text
    assert psk.reveal() not in shown(plan)
    pruned = plan_of(world, gateway, prune=True)
    assert [c.public_key for c in pruned.remove] == [stranger]
    assert pruned.desired is not None and stranger not in pruned.desired.conf


def test_hand_edited_rules_are_drift_but_timed_elements_are_not(world: World) -> None:
    world.provision("anna")
    gateway = synced(world)
    witness_saw = LISTING.replace(
        "\t\ttimeout 10m\n\t}\n\n\tset wg_seen_v6",
        "\t\ttimeout 10m\n\t\telements = { 192.0.2.7 expires 9m59s968ms,\n"
        "\t\t\t     192.0.2.8 expires 9m2s1ms }\n\t}\n\n\tset wg_seen_v6",
        1,
    )
    assert witness_saw != LISTING
    gateway.listing = witness_saw
    assert plan_of(world, gateway).in_sync
    gateway.listing = LISTING.replace(
        "\tchain output {", '\tchain output {\n\t\ttcp dport 8080 accept comment "by hand"', 1
    )
    plan = plan_of(world, gateway)
    assert plan.has_drift and plan.drift_peers == ()
    assert '+\t\ttcp dport 8080 accept comment "by hand"' in plan.rules_drift
    assert "! drift: the live table inet netsetup_wg0 was changed by hand:" in describe(plan)
    gateway.listing = None
    assert "is gone" in plan_of(world, gateway).rules_drift


def test_the_ruleset_is_compared_without_its_time_stamp(world: World) -> None:
    world.provision("anna")
    gateway = synced(world)
    assert gateway.ruleset_file is not None
    lines = gateway.ruleset_file.splitlines(keepends=True)
    assert lines[1].startswith("# rendered ")
    gateway.ruleset_file = "".join([lines[0], "# rendered 1999-01-01T00:00:00Z: old\n", *lines[2:]])
    # the record of what was loaded follows the file, as the agent writes both
    assert plan_of(world, gateway).ruleset_diff == ""
    world.provision("bert")
    plan = plan_of(world, gateway)
    assert "+\t\t\t198.18.10.3 : jump mode_dedicated," in plan.ruleset_diff
    assert plan.ruleset_diff.startswith("--- gateway:/etc/netsetup/nftables/wg0.nft\n+++ profile")


def test_a_second_admin_keeps_the_first_admins_live_preshared_keys(world: World) -> None:
    """Admin a provisioned anna and applied; admin b (own state folder, without anna's key)
    provisions bert and plans: anna keeps the key the gateway has, bert gets b's new key."""
    world.provision("anna", by="a")
    gateway = synced(world, "a")
    world.provision("bert", by="b")
    world.give_gateway_key("b")
    plan = plan_of(world, gateway, "b")
    assert plan.unkeyed == ()
    assert [c.name for c in plan.add] == ["bert"]
    assert plan.desired is not None
    desired = {str(p.name): plan.desired.peers[p.public_key] for p in load_peers(world.profile())}
    assert desired["anna"].preshared_key is not None
    assert desired["anna"].preshared_key.reveal() == world.psk("a", "anna")
    assert desired["bert"].preshared_key is not None
    assert desired["bert"].preshared_key.reveal() == world.psk("b", "bert")
    no_secrets(world, shown(plan), ("a", "b"))
    gateway.take(plan)
    # and back to admin a, who lacks bert's key: bert's live key is kept in turn
    plan = plan_of(world, gateway, "a")
    assert plan.in_sync, describe(plan)


def test_a_new_peer_whose_key_nobody_here_has_is_unkeyed(world: World) -> None:
    world.provision("anna", by="a")
    world.provision("bert", by="b")
    gateway = FakeGateway(conf=None, up=False, listing=None)
    world.give_gateway_key("b")
    plan = plan_of(world, gateway, "b")
    (unkeyed,) = plan.unkeyed
    assert unkeyed.name == "anna"
    assert f"netsetup rotate {world.profile().id} anna" in unkeyed.fix
    assert plan.desired is None  # apply refuses: nothing to upload
    assert [c.name for c in plan.add] == ["bert"]
    assert "? peer anna has no preshared key" in "\n".join(describe(plan))


def test_the_gateway_key_comes_from_the_gateway_else_the_state_folder(world: World) -> None:
    world.provision("anna")
    gateway = synced(world)
    # admin b has no gateway key: the one the gateway runs is kept
    plan = plan_of(world, gateway, "b")
    assert plan.interface_changes == () and plan.in_sync
    assert plan.desired is not None and world.gateway_private in plan.desired.conf
    # a gateway running another key: the state folder's key, if it matches the profile
    other = generate_keypair()
    assert gateway.conf is not None
    gateway.conf = gateway.conf.replace(world.gateway_private, other.private.reveal())
    plan = plan_of(world, gateway, "a")
    assert any(
        "private key: the gateway runs the key of public key" in c for c in plan.interface_changes
    )
    assert "PrivateKey differs" in plan.conf_file
    assert plan.desired is not None and world.gateway_private in plan.desired.conf
    no_secrets(world, shown(plan))
    assert other.private.reveal() not in shown(plan)
    with pytest.raises(InputError, match="private key of gateway 'gateway' is unknown") as caught:
        plan_of(world, gateway, "b")
    assert other.private.reveal() not in str(caught.value)


def test_conf_file_differences_by_meaning_not_text(world: World) -> None:
    world.provision("anna")
    gateway = synced(world)
    assert gateway.conf is not None
    reordered = "# written by hand once\n" + gateway.conf.replace("ListenPort", "listenport")
    gateway.conf = reordered
    assert plan_of(world, gateway).conf_file == ()
    gateway.conf = reordered.replace(
        "[Interface]\n", "[Interface]\nPostUp = iptables -t nat ...\nMTU = 1420\n"
    )
    plan = plan_of(world, gateway)
    assert any("postup dropped" in r for r in plan.conf_file)
    assert plan.desired is not None
    assert "MTU = 1420" in plan.desired.conf and "PostUp" not in plan.desired.conf


def test_peers_of_another_site_are_removed_from_this_one(world: World) -> None:
    world.provision("anna")
    world.provision("bert")
    gateway = synced(world)
    profile = world.profile()
    branch = replace(profile.gateway, name="branch")
    sites = replace(profile, sites=(profile.gateway, branch))
    peers = [p if p.name != "bert" else replace(p, gateway="branch") for p in load_peers(profile)]
    plan = make_plan(
        sites.site("gateway"), peers, gateway.live(), world.admin("a"), world.clock.now()
    )
    (removed,) = plan.remove
    assert removed.name == "bert" and removed.details == ("belongs to gateway 'branch'",)
    assert plan.drift_peers == ()


def test_notes_for_a_pending_revert_and_a_foreign_table(world: World) -> None:
    world.provision("anna")
    world.give_gateway_key("a")
    gateway = FakeGateway(conf=None, up=False, listing=LISTING)
    gateway.pending = {
        "backup": "/var/lib/netsetup/wg0/backups/x",
        "deadline": "2026-11-27T12:01:00Z",
    }
    answer = gateway.answer()
    answer["tools"] = {"wg": True, "wg-quick": False, "nft": True}
    answer["forwarding"] = {"ipv4": True, "ipv6": False}
    from netsetup.gateway.state import parse_read

    profile = world.profile()
    live = parse_read(answer, where="test")
    plan = make_plan(
        profile.site(None), load_peers(profile), live, world.admin("a"), world.clock.now()
    )
    assert (
        "not installed on the gateway: wg-quick (`netsetup gateway bootstrap` installs them)"
        in plan.notes
    )
    assert any(n.startswith("ipv6 forwarding is off on the gateway") for n in plan.notes)
    assert any("was loaded by something other than netsetup apply" in n for n in plan.notes)
    assert any("awaits its confirmation" in n and "2026-11-27T12:01:00Z" in n for n in plan.notes)
    assert PeerName("anna") == plan.add[0].name
