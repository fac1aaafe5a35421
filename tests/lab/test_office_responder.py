"""The office responder in the lab: in the office namespace on 192.0.2.50:4789, asked from the
assistants' machines through WireGuard and the gateway's rendered firewall. A dedicated and an
agency assistant get REFLECTs; the port next to it on that host is closed to them by the
firewall; a revoked peer (still able to send through the tunnel) gets nothing from the
responder itself; a sender without the key gets 0 bytes back."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netsetup.lab import Lab

from .conftest import _LIVE_FIXTURE_LABS, REPO, gateway_firewall_removed, lab_prefixes

pytestmark = pytest.mark.lab


def _built_here(prefix: str) -> bool:
    from netsetup.lab.lab import run_base

    try:
        record = json.loads((run_base() / f"netsetup-lab-{prefix}" / "lab.json").read_text())
    except (OSError, ValueError):
        return False  # no record: whose it is cannot be told, so it is left alone
    return str(record.get("source_profile", "")).startswith(str(REPO) + os.sep)


@pytest.fixture(autouse=True)
def _no_lab_leaks_from_this_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """conftest's leak check, judging only labs built from this checkout: labs that other test
    sessions on this machine build meanwhile are not this test's leaks, and tearing them down
    (as conftest's check does) broke those sessions."""
    if os.geteuid() != 0:
        yield
        return
    before = lab_prefixes()
    yield
    leaked = {p for p in lab_prefixes() - before - _LIVE_FIXTURE_LABS if _built_here(p)}
    if not leaked:
        return
    from netsetup.lab import cleanup
    from netsetup.lab.lab import run_base

    for prefix in leaked:
        cleanup.teardown(prefix, run_base() / f"netsetup-lab-{prefix}")
    pytest.fail(f"{request.node.nodeid} left a lab behind (now removed): {sorted(leaked)}")


PROBES = 30

# Runs inside a lab namespace, as diagnose would: the key from the client config, plain sockets.
HELPER = r"""
import base64, json, os, select, socket, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.responder import office_wire as wire

request = json.loads(sys.argv[2])
host, port = request["host"], request["port"]


def session(config, forged=False):
    cfg = ClientConfig.read(Path(config))
    tag = wire.key_tag(base64.b64decode(cfg.client_public_key()))
    if forged:  # the right tag, a key of its own
        return wire.OfficeSession(os.urandom(32), tag)
    return wire.OfficeSession(base64.b64decode(cfg.info.responder_key.reveal()), tag)


def exchange(sock, packets, wait):
    sent = got = 0
    answers = []
    for packet in packets:
        sock.sendto(packet, (host, port))
        sent += len(packet)
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, _ = sock.recvfrom(65535)
            got += len(data)
            answers.append((len(packet), data))
            break
    return sent, got, answers


def probes(s, count):
    return [s.hello()] + [s.probe(i, time.monotonic_ns(), 200) for i in range(count)] + [
        s.summary()
    ]


def op_probe():
    s = session(request["config"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent, got, answers = exchange(sock, probes(s, request["count"]), 1.0)
    parsed = [(size, s.parse(data), len(data)) for size, data in answers]
    reflects = [p for _, p, _ in parsed if isinstance(p, wire.Reflect)]
    caps = [p for _, p, _ in parsed if isinstance(p, wire.Caps)]
    summary = [p for _, p, _ in parsed if isinstance(p, wire.Summary)]
    return {
        "sent": sent,
        "got": got,
        "reflects": len(reflects),
        "same_size": all(r.size == 200 for r in reflects),
        "longer": sum(n > size for size, _, n in parsed),
        "media": list(caps[0].media) if caps else None,
        "rx": summary[0].rx_count if summary else None,
    }


def op_stranger():
    real = session(request["config"])
    forged = session(request["config"], forged=True)
    nobody = wire.OfficeSession(os.urandom(32), os.urandom(8))
    packets = []
    for s in (forged, nobody):
        packets += probes(s, 5) + [s.rtp_open([10000]), s.rtp_call([10001])]
    packets += [b"\0" * 1400, b"NSR1" + os.urandom(300), real.summary()[:-1]]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent, got, _ = exchange(sock, packets, 0.3)
        # the control: the same socket, the real key, one hello answered
        _, control, _ = exchange(sock, [real.hello()], 1.0)
    return {"sent": sent, "got": got, "control": control}


def op_reach():
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.5)
        try:
            sock.connect((host, request["tcp"]))
            out["tcp"] = "connected"
        except ConnectionRefusedError:
            out["tcp"] = "refused"
        except OSError:
            out["tcp"] = "timeout"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.5)
        sock.connect((host, request["udp"]))
        try:
            sock.send(b"x" * 100)
            sock.recv(100)
            out["udp"] = "answered"
        except ConnectionRefusedError:
            out["udp"] = "refused"
        except OSError:
            out["udp"] = "timeout"
    return out


def _datagrams(sockets, wait):
    got = []
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select(sockets, [], [], left)
        if not ready:
            break
        for sock in ready:
            data, source = sock.recvfrom(65535)
            got.append((sock.getsockname()[1], source[0], source[1], data))
    return got


def op_rtp():
    s = session(request["config"])
    ports = request["ports"]
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("", request["bind"]))
        sock.sendto(s.rtp_open(ports), (host, port))
        got = _datagrams([sock], 1.0)
        out["open_main"] = [list(s.parse(d).ports) for _, h, p, d in got if (h, p) == (host, port)]
        out["open_media"] = sorted(p for _, h, p, d in got if h == "192.0.2.40")
        for p in ports:
            sock.sendto(s.rtp_open([p]), ("192.0.2.40", p))
        got = _datagrams([sock], 1.0)
        out["to_media"] = sorted(p for _, h, p, d in got if h == "192.0.2.40" and s.parse(d))
    listeners = []
    for p in ports:
        one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        one.bind(("", p))
        listeners.append(one)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(s.rtp_call(ports), (host, port))
        got = _datagrams([sock, *listeners], 1.0)
    out["called"] = sorted(mine for mine, h, _, d in got if h == "192.0.2.40" and s.parse(d))
    for one in listeners:
        one.close()
    return out


OPS = {"probe": op_probe, "stranger": op_stranger, "reach": op_reach, "rtp": op_rtp}
print(json.dumps(OPS[request["op"]]()))
"""


def helper(lab: Lab, host: str, **request: Any) -> dict[str, Any]:
    responder = lab.profile().diagnose.responder
    assert responder is not None
    request |= {"host": str(responder[0]), "port": responder[1]}
    argv = [sys.executable, "-c", HELPER, str(REPO), json.dumps(request)]
    result = lab.exec(host, argv, timeout=60)
    assert result.ok, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def config_of(lab: Lab, host: str) -> str:
    config = lab.record.clients[host].config
    assert config is not None
    return str(config)


def test_the_lab_runs_the_responder_in_the_office(lab: Lab) -> None:
    status = lab.status().services["office-responder"]
    assert status.running and status.host == "office"
    listening = lab.exec("office", ["ss", "-Hlnu"]).stdout
    assert "192.0.2.50:4789" in listening


@pytest.mark.parametrize(
    ("name", "mode", "host"), [("maria", "dedicated", "home"), ("temp", "agency", "agencyhome")]
)
def test_both_modes_get_reflects_through_the_firewall(
    lab: Lab, connect: Callable[..., str], name: str, mode: str, host: str
) -> None:
    connect(name, mode, host)
    found = helper(lab, host, op="probe", config=config_of(lab, host), count=PROBES)
    assert found["reflects"] == PROBES and found["same_size"], found
    assert found["rx"] == PROBES and found["longer"] == 0, found
    assert found["media"] == ["192.0.2.40"], found  # the PBX's address: RTP tests answered
    assert found["got"] <= found["sent"]


def test_the_port_next_to_the_responder_is_closed_to_an_agency_assistant(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("temp", "agency", "agencyhome")
    config = config_of(lab, "agencyhome")
    found = helper(lab, "agencyhome", op="reach", config=config, tcp=4790, udp=4790)
    assert found == {"tcp": "timeout", "udp": "timeout"}, found
    # the responder's own port: TCP reaches the host (the speed endpoint, or its refusal)
    found = helper(lab, "agencyhome", op="reach", config=config, tcp=4789, udp=4790)
    assert found["tcp"] in ("connected", "refused"), found
    # control: without the gateway's firewall, the office host answers on 4790 (a refusal)
    with gateway_firewall_removed(lab):
        found = helper(lab, "agencyhome", op="reach", config=config, tcp=4790, udp=4790)
    assert found == {"tcp": "refused", "udp": "refused"}, found


def test_rtp_ports_through_the_firewall(lab: Lab, connect: Callable[..., str]) -> None:
    """RTP-OPEN: the main port lists the ports opened (a reply: it passes); each port's own ack
    is a new flow from the media address, which the firewall lets through only to a port of the
    RTP range (a call's audio). A datagram to media:P is answered from there (a reply). RTP-CALL:
    one datagram from the media address to each asked RTP port of the assistant."""
    connect("temp", "agency", "agencyhome")
    config = config_of(lab, "agencyhome")
    ports = [10000, 15000, 20000]
    ephemeral = helper(lab, "agencyhome", op="rtp", config=config, ports=ports, bind=0)
    assert ephemeral["open_main"] == [ports], ephemeral
    assert ephemeral["open_media"] == [], ephemeral  # to a port outside the range: dropped
    assert ephemeral["to_media"] == ports and ephemeral["called"] == ports, ephemeral
    in_range = helper(lab, "agencyhome", op="rtp", config=config, ports=ports[:2], bind=19990)
    assert in_range["open_media"] == ports[:2], in_range  # to an RTP port: a call, let through


def test_an_unauthenticated_sender_gets_zero_bytes(lab: Lab, connect: Callable[..., str]) -> None:
    connect("maria", "dedicated")
    found = helper(lab, "home", op="stranger", config=config_of(lab, "home"))
    assert found["sent"] > 4000 and found["got"] == 0, found
    assert found["control"] > 0, found  # the same path and socket, with the key: answered


def test_a_revoked_peer_gets_nothing_from_the_responder(
    lab: Lab, connect: Callable[..., str]
) -> None:
    connect("leaving", "dedicated", "leavinghome")
    config = config_of(lab, "leavinghome")
    before = helper(lab, "leavinghome", op="probe", config=config, count=5)
    assert before["reflects"] == 5, before
    # revoked in the profile, the gateway not yet synced: the tunnel and the firewall still let
    # it through, so only the responder's own check (its peer files) can stop it
    lab.revoke("leaving", sync=False)
    after = helper(lab, "leavinghome", op="probe", config=config, count=5)
    assert after["got"] == 0 and after["reflects"] == 0, after
    assert Path(config).exists()
