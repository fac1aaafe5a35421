"""The office responder in the lab: in the office namespace on 192.0.2.50:4789, asked from the
assistants' machines through WireGuard and the gateway's rendered firewall. A dedicated and an
agency assistant get REFLECTs; the port next to it on that host is closed to them by the
firewall; a revoked peer (still able to send through the tunnel) gets nothing from the
responder itself; a sender without the key gets 0 bytes back."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netsetup.lab import Lab

from .conftest import REPO, gateway_firewall_removed

pytestmark = pytest.mark.lab

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


print(json.dumps({"probe": op_probe, "stranger": op_stranger, "reach": op_reach}[request["op"]]()))
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


def test_an_unauthenticated_sender_gets_zero_bytes(lab: Lab, connect: Callable[..., str]) -> None:
    connect("maria", "dedicated")
    found = helper(lab, "home", op="stranger", config=config_of(lab, "home"))
    assert found["sent"] > 5000 and found["got"] == 0, found
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
