"""The gateway witness in the lab: asked from the home namespace, through the home router's real
NAT, about real WireGuard (wireguard-go) and the rendered nftables ruleset. Each fault the witness
tells apart is injected for real: a revoked peer, an unknown key, the gateway's key changed with
`wg set`, WireGuard's UDP port dropped at the home router."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netsetup.gateway.firewall import table_name
from netsetup.keys import fingerprint
from netsetup.lab import Lab, probe
from netsetup.profile.store import load_peer
from netsetup.profile.values import PeerName

from .conftest import REPO, gateway_firewall_removed
from .test_enforcement import Tool
from .test_firewall_audit import send, tools  # noqa: F401  (a fixture)

pytestmark = pytest.mark.lab

# Runs inside a lab namespace: the client API exactly as diagnose calls it. The private key is
# read from the client config there, so it never travels on a command line.
HELPER = r"""
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.keys import generate_keypair
from netsetup.responder import auth, client

request = json.loads(sys.argv[2])
op = request["op"]
host, port = request["host"], request["port"]


def private():
    if request.get("config"):
        return ClientConfig.read(Path(request["config"])).private_key
    return generate_keypair().private


def exchange(packet, wait):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(packet, (host, port))
        try:
            return sock.recv(70000)
        except OSError:
            return None


if op == "ask":
    found = client.ask_witness(host, port, private(), request["gateway_public"], 3.0)
    out = {"type": type(found).__name__, **(vars(found) if found is not None else {})}
elif op == "probe":
    out = {"got": client.probe(host, port, request["size"], 2.0)}
elif op == "raw":
    # answers to hand-made packets: a good query, a query for a victim's key MAC'd with another
    # key, noise and probes; (sent, answered, type) for each
    key = private()
    raw = auth.raw_key
    from netsetup.keys import public_from_private
    gw = raw(request["gateway_public"])
    me = raw(public_from_private(key))
    qk, ak = auth.shared_keys(raw(key.reveal()), gw, me, gw)
    asker = client._Asker(me, qk, ak)
    forged = client._Asker(raw(request["victim"]), os.urandom(32), os.urandom(32))
    packets = [("good", asker.query()), ("forged", forged.query())]
    packets += [("noise", os.urandom(n)) for n in (1, 5, 20, 128, 1000)]
    packets += [("noise", auth.MAGIC + bytes([1]) + os.urandom(n)) for n in (10, 123, 200)]
    packets += [("probe", client.probe_payload(n)[0]) for n in (auth.PROBE_MIN_SIZE, 500, 1400)]
    out = {"results": []}
    for name, packet in packets:
        answer = exchange(packet, 0.3 if name == "noise" else 2.0)
        kind = auth.packet_type(answer) if answer else None
        out["results"].append([name, len(packet), len(answer) if answer else 0, kind])
print(json.dumps(out))
"""


def ask(lab: Lab, where: str = "home", /, **request: Any) -> dict[str, Any]:
    """Run HELPER in lab host `where` with `request` (its op, the witness's host and port...)."""
    done = lab.exec(where, [sys.executable, "-c", HELPER, str(REPO), json.dumps(request)])
    assert done.ok, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def outside(lab: Lab) -> dict[str, Any]:
    """Where an assistant's machine reaches the witness: the gateway's endpoint address."""
    return {"host": str(lab.plan.endpoint_address), "port": lab.profile().gateway.witness_port}


def status(lab: Lab, config: Path | None, where: str = "home") -> dict[str, Any]:
    gateway_public = lab.profile().gateway.public_key
    return ask(
        lab,
        where,
        op="ask",
        config=str(config) if config else None,
        gateway_public=gateway_public,
        **outside(lab),
    )


def config_of(lab: Lab, name: str) -> Path:
    configs = sorted((lab.run_dir / "clients" / name).glob("*.conf"))
    assert configs, f"no client config for {name}"
    return configs[0]


def tunnel_traffic(lab: Lab) -> bool:
    """A ping through the tunnel to the gateway's tunnel address (True: answered)."""
    address = str(lab.profile().network.gateway_address_v4)
    return probe.ping(lab.ns("home"), address, count=2, wait=1).ok


def flush_seen(lab: Lab) -> None:
    table = table_name(lab.gateway_interface)
    for name in ("wg_seen_v4", "wg_seen_v6"):
        done = lab.exec("gateway", ["nft", "flush", "set", "inet", table, name])
        assert done.ok, done.stderr


def test_an_active_peer_is_seen_known_and_told_its_handshake_and_port(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("ana")
    assert tunnel_traffic(lab)
    found = status(lab, config_of(lab, "ana"))
    assert found["type"] == "WitnessStatus", found
    assert found["key_state"] == "active"
    assert found["seen_recently"] is True and found["seen_age_s"] <= 5
    assert found["last_handshake_age_s"] is not None and found["last_handshake_age_s"] < 30
    assert found["listen_port"] == lab.profile().gateway.listen_port
    # the home router's NAT address, not the home machine's own
    assert found["public_address"] == str(lab.plan.router_wan.v4.ip)


def test_probes_through_the_tunnel_and_outside_are_acked_with_their_size(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("ana")
    network, port = lab.profile().network, lab.profile().gateway.witness_port
    for address in (network.gateway_address_v4, network.gateway_address_v6):
        for size in (64, 1200):
            got = ask(lab, op="probe", host=str(address), port=port, size=size)
            assert got == {"got": size}, (address, size)
    assert ask(lab, op="probe", size=1000, **outside(lab)) == {"got": 1000}


def test_a_revoked_peer_is_told_revoked(lab: Lab, connect: Callable[..., str]) -> None:
    connect("bob")
    lab.revoke("bob")
    found = status(lab, config_of(lab, "bob"))
    assert found["type"] == "WitnessStatus" and found["key_state"] == "revoked", found


def test_an_expired_peer_is_told_expired(lab: Lab, connect: Callable[..., str]) -> None:
    connect("cleo", "agency")
    lab.expire("cleo")
    found = status(lab, config_of(lab, "cleo"))
    assert found["type"] == "WitnessStatus" and found["key_state"] == "expired", found


def test_an_unknown_key_is_told_unknown(lab: Lab) -> None:
    found = status(lab, None)
    assert found["type"] == "WitnessStatus" and found["key_state"] == "unknown", found
    assert found["last_handshake_age_s"] is None


def test_a_changed_gateway_key_is_named_and_the_witness_follows_it_back(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("ana")
    fault = lab.inject("wrong-key")
    try:
        shown = lab.exec("gateway", ["wg", "show", lab.gateway_interface, "public-key"])
        live = shown.stdout.strip()
        assert live and live != lab.profile().gateway.public_key
        found = status(lab, config_of(lab, "ana"))
        assert found == {"type": "KeyMismatch", "gateway_fingerprint": fingerprint(live)}
    finally:
        lab.clear(fault.id)
    found = status(lab, config_of(lab, "ana"))
    assert found["type"] == "WitnessStatus" and found["key_state"] == "active", found


def test_wireguard_dropped_at_the_home_router_is_not_seen(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("ana")
    port = lab.plan.endpoint_port
    fault = lab.inject("drop", port=port, host="router")
    try:
        flush_seen(lab)  # what earlier tests sent does not count
        assert not tunnel_traffic(lab)
        found = status(lab, config_of(lab, "ana"))
        assert found["type"] == "WitnessStatus", found  # the witness's own port still passes
        assert found["seen_recently"] is False and found["seen_age_s"] is None, found
        assert found["key_state"] == "active"
    finally:
        lab.clear(fault.id)
    # control: without the drop, the same packets are seen. Asked up to three times, each after
    # fresh traffic: one CI run (of four) answered "not seen" right after the drop was cleared,
    # with the tunnel working; the cause is not found yet (see the issue 8 note)
    for _ in range(3):
        assert tunnel_traffic(lab)
        found = status(lab, config_of(lab, "ana"))
        if found["seen_recently"] is True:
            break
    assert found["seen_recently"] is True, found


def test_answers_are_never_larger_and_a_forged_query_learns_nothing(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("ana")
    profile = lab.profile()
    ana = load_peer(profile, PeerName("ana")).public_key  # as anyone who saw her handshake knows
    results = ask(
        lab,
        op="raw",
        config=None,
        gateway_public=profile.gateway.public_key,
        victim=ana,
        **outside(lab),
    )["results"]
    for name, sent, answered, _ in results:
        assert answered <= sent, (name, sent, answered)
    by_name = {name: kind for name, _, _, kind in results if name in ("good", "forged")}
    assert by_name == {"good": 0x81, "forged": 0x82}  # status; only the gateway's fingerprint
    assert all(kind is None for name, _, _, kind in results if name == "noise")
    assert all(kind == 0x83 for name, _, _, kind in results if name == "probe")


def test_the_witness_port_is_the_only_new_thing_reachable(
    lab: Lab,
    connect: Callable[..., str],
    tools: Callable[..., Tool],  # noqa: F811
) -> None:
    """From the tunnel, the witness's port on the gateway's tunnel address answers and the next
    port does not; from the WAN, the witness answers on the endpoint address but not on the
    tunnel address (the tunnel addresses stay the tunnel's)."""
    connect("ana")
    profile = lab.profile()
    tunnel = str(profile.network.gateway_address_v4)
    port = profile.gateway.witness_port
    beside = tools("gateway", "serve-udp", tunnel, str(port + 1))
    ana = str(load_peer(profile, PeerName("ana")).address_v4)
    assert ask(lab, op="probe", host=tunnel, port=port, size=100) == {"got": 100}
    assert not send(lab, "home", ana, tunnel, port + 1)
    assert beside.seen() == []
    assert ask(lab, "internet", op="probe", size=100, **outside(lab)) == {"got": 100}
    route = ["ip", "route", "add", str(profile.network.tunnel_v4), "via"]
    route.append(str(lab.plan.gateway_wan.v4.ip))
    assert lab.exec("internet", route).ok
    try:
        assert ask(lab, "internet", op="probe", host=tunnel, port=port, size=100) == {"got": None}
        with gateway_firewall_removed(lab):  # control: without the ruleset, both answer
            assert send(lab, "home", ana, tunnel, port + 1)
            got = ask(lab, "internet", op="probe", host=tunnel, port=port, size=100)
            assert got == {"got": 100}
    finally:
        lab.exec("internet", ["ip", "route", "del", *route[3:]])
