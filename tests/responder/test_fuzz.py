"""100,000+ random and mutated packets: the witness never crashes and never answers with more
bytes than it got."""

from __future__ import annotations

import random
import time

from netsetup.keys import generate_keypair
from netsetup.responder import auth
from netsetup.responder.witness import Limits, Witness

from .support import FakeGateway
from .test_witness_answers import asker

PACKETS = 100_000


def _seeds(gateway: FakeGateway) -> list[bytes]:
    good = asker(generate_keypair(), gateway.key.public)
    stale = asker(generate_keypair(), gateway.key.public)
    stale.offset_ms = -(10**7)
    wrong = asker(generate_keypair(), generate_keypair().public)
    return [
        good.query(),
        stale.query(),
        wrong.query(),
        auth.build_probe(auth.PROBE_MIN_SIZE, bytes(16)),
        auth.build_probe(200, bytes(16)),
        auth.build_ack(bytes(16), 5),
        auth.build_mismatch(bytes(16), "SHA256:0123456789abcdef"),
        auth.MAGIC,
        b"",
    ]


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    choice = rng.randrange(6)
    if choice == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1:  # cut
        del data[rng.randint(0, len(data)) :]
    elif choice == 2:  # grow
        data += rng.randbytes(rng.randint(1, 64))
    elif choice == 3:  # pure noise, sometimes behind the magic and a known type
        data = bytearray(rng.randbytes(rng.randint(0, 300)))
        if rng.random() < 0.5:
            data[:5] = auth.MAGIC + bytes([rng.choice([1, 3, 0x81, 0x82, 0x83, 0x84, 0])])
    elif choice == 4 and data:  # the type byte
        data[4:5] = bytes([rng.randrange(256)])
    return bytes(data)


def test_fuzz_never_crashes_and_never_amplifies() -> None:
    rng = random.Random(8)
    gateway = FakeGateway(seen={"198.51.100.2": 1.0})
    witness = Witness(gateway, None)  # no rate limit: every packet goes all the way in
    seeds = _seeds(gateway)
    answered = 0
    started = time.monotonic()
    for i in range(PACKETS):
        packet = _mutate(rng, rng.choice(seeds))
        source = "198.51.100.2" if i % 2 else "2001:db8::7"
        answer = witness.handle(packet, source)
        if answer is not None:
            answered += 1
            assert len(answer) <= len(packet), packet
    assert answered > 1000  # the mutations did reach the parsers' good paths
    assert time.monotonic() - started < 120


def test_fuzz_with_the_rate_limit_in_place() -> None:
    rng = random.Random(9)
    gateway = FakeGateway()
    witness = Witness(gateway, Limits())
    seeds = _seeds(gateway)
    answered = 0
    for _ in range(20_000):
        packet = _mutate(rng, rng.choice(seeds))
        answer = witness.handle(packet, f"198.51.100.{rng.randrange(4)}")
        if answer is not None:
            answered += 1
            assert len(answer) <= len(packet)
    assert answered <= 400 + 200 * 60  # the global bucket: a burst, then its rate at most
