"""100,000+ malformed STUN and SIP packets into the real witness (its `serve` loop on a UDP
socket on 127.0.0.1): it never crashes, never answers with more bytes than the packet that
caused the answer, and still answers a good request afterwards."""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time

from netsetup.diagnose import sip
from netsetup.responder import auth, stun
from netsetup.responder.witness import Witness, open_sockets, serve

from .support import FakeGateway

PACKETS = 100_000


def _seeds() -> list[bytes]:
    txid = os.urandom(12)
    invite = sip.invite("udp", ("192.168.1.5", 40000), ("203.0.113.1", 5060), 16384, 1200).data
    options = sip.options("udp", ("192.168.1.5", 40000), ("203.0.113.1", 5060), "x.example").data
    return [
        stun.binding_request(txid),
        stun.binding_request(txid, size=128, response_port=40000),
        stun.binding_request(
            txid, size=128, response_port=40000, signed_by=(bytes(32), bytes(32), 1)
        ),
        stun.binding_answer(txid, "198.51.100.1", 5000),
        invite,
        options,
        sipmirror_answer(invite),
    ]


def sipmirror_answer(request: bytes) -> bytes:
    from netsetup.responder.sipmirror import mirror

    return mirror(request) or b""


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    choice = rng.randrange(7)
    if choice == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:  # cut
        del data[rng.randint(0, len(data)) :]
    elif choice == 2:  # grow
        data += rng.randbytes(rng.randint(1, 64))
    elif choice == 3:  # noise behind a STUN header
        data = bytearray(data[:20] + rng.randbytes(rng.randint(0, 200)))
    elif choice == 4 and len(data) > 30:  # a SIP header line repeated or garbled
        at = rng.randrange(len(data))
        data[at:at] = rng.choice([b"\r\n", b"Via: x\r\n", b":", b"\r\n\r\n", b"\xff\xfe", b" "])
    elif choice == 5 and len(data) >= 4:  # STUN length field
        data[2:4] = rng.randrange(65536).to_bytes(2, "big")
    return bytes(data)


def _drain(client: socket.socket, token: bytes, deadline: float) -> list[bytes]:
    """Every datagram until the ack of the sentinel probe with `token`."""
    got: list[bytes] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([client], [], [], 1.0)
        if not ready:  # the sentinel may have been dropped (a full buffer): again
            client.send(auth.build_probe(auth.PROBE_MIN_SIZE, token))
            continue
        data = client.recv(70000)
        if data[:5] == auth.MAGIC + bytes([auth.T_ACK]) and token in data:
            return got
        got.append(data)
    raise AssertionError("the witness stopped answering")


def test_malformed_stun_and_sip_into_the_real_witness() -> None:
    rng = random.Random(9009)
    errors: list[BaseException] = []
    sockets = open_sockets(["127.0.0.1"], 0)
    port = int(sockets[0].getsockname()[1])
    stop = threading.Event()
    witness = Witness(FakeGateway(), None)  # no rate limit: every packet goes all the way in
    thread = threading.Thread(target=serve, args=(witness, sockets, stop, errors.append))
    thread.start()
    seeds = _seeds()
    answered = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            client.connect(("127.0.0.1", port))
            for _ in range(PACKETS):
                packet = _mutate(rng, rng.choice(seeds))
                client.send(packet)
                # a sentinel probe right behind it: what comes back before its ack answers
                # `packet` (the witness answers in order, from one thread)
                token = os.urandom(16)
                client.send(auth.build_probe(auth.PROBE_MIN_SIZE, token))
                for reply in _drain(client, token, time.monotonic() + 10):
                    answered += 1
                    assert len(reply) <= len(packet), (packet, reply)
            assert thread.is_alive() and not errors, errors
            txid = os.urandom(12)
            client.send(stun.binding_request(txid))
            ready, _, _ = select.select([client], [], [], 5)
            assert ready and stun.mapped_address(client.recv(2048), txid) is not None
    finally:
        stop.set()
        thread.join(5)
        sockets[0].close()
    assert answered > 500  # the mutations did reach the good paths
