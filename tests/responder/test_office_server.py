"""The office responder served for real on 127.0.0.1: reflects, summaries, RTP ports both ways,
active peers only, nothing for anyone else, rate limits, and 100,000 malformed packets."""

from __future__ import annotations

import base64
import os
import random
import select
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.profile.store import load_profile
from netsetup.provision import service
from netsetup.responder import office_wire as wire
from netsetup.responder.office import Limits, MediaSide, Office, PeerKeys, serve
from netsetup.responder.witness import open_sockets
from netsetup.state import StateDir

TOKEN = os.urandom(32)
PUBLIC = os.urandom(32)
KEY = wire.peer_key(TOKEN, PUBLIC)
TAG = wire.key_tag(PUBLIC)
KEYS = {TAG: KEY}
RTP = (30000, 30999)
WAIT_S = 2.0


@dataclass
class Running:
    office: Office
    address: tuple[str, int]


def _start(office: Office) -> Iterator[Running]:
    sockets = open_sockets(["127.0.0.1"], 0)
    stop = threading.Event()
    errors: list[BaseException] = []
    thread = threading.Thread(target=serve, args=(office, sockets, stop, errors.append))
    thread.start()
    try:
        yield Running(office, ("127.0.0.1", sockets[0].getsockname()[1]))
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close()
        if office.media is not None:
            office.media.close()
    assert errors == []


@pytest.fixture
def running() -> Iterator[Running]:
    yield from _start(Office(lambda: KEYS, MediaSide(["127.0.0.1"], RTP, 64), 4789))


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def receive(sock: socket.socket, wait_s: float = WAIT_S) -> tuple[bytes, tuple[str, int]] | None:
    ready, _, _ = select.select([sock], [], [], wait_s)
    if not ready:
        return None
    data, source = sock.recvfrom(65535)
    return data, source


def ask(address: tuple[str, int], packet: bytes, wait_s: float = WAIT_S) -> bytes | None:
    with client_socket() as sock:
        sock.sendto(packet, address)
        got = receive(sock, wait_s)
    return got[0] if got else None


def test_hello_gets_the_capabilities(running: Running) -> None:
    session = wire.OfficeSession(KEY, TAG)
    answer = ask(running.address, session.hello())
    assert answer is not None
    caps = session.parse(answer)
    assert isinstance(caps, wire.Caps)
    assert caps.media == ("127.0.0.1",) and caps.http_port == 4789
    assert caps.max_size == wire.MAX_PROBE_SIZE


def test_probes_are_reflected_with_times_and_counted(running: Running) -> None:
    session = wire.OfficeSession(KEY, TAG)
    reflects = []
    with client_socket() as sock:
        for seq in (0, 1, 3, 2):  # one reordered
            sock.sendto(session.probe(seq, 1_000 + seq, 200), running.address)
            got = receive(sock)
            assert got is not None and len(got[0]) == 200
            reflects.append(session.parse(got[0]))
        sock.sendto(session.summary(), running.address)
        got = receive(sock)
    assert all(isinstance(r, wire.Reflect) for r in reflects)
    first = reflects[0]
    assert isinstance(first, wire.Reflect)
    assert (first.seq, first.t1_ns, first.rseq, first.rx_count) == (0, 1_000, 0, 1)
    assert first.t3_ns >= first.t2_ns > 0
    last = reflects[-1]
    assert isinstance(last, wire.Reflect) and (last.seq, last.rseq, last.rx_count) == (2, 3, 4)
    assert got is not None
    assert session.parse(got[0]) == wire.Summary(4, 4, 0, 3)
    # another session has its own counts
    other = wire.OfficeSession(KEY, TAG)
    answer = ask(running.address, other.summary())
    assert answer is not None and other.parse(answer) == wire.Summary(0, 0, 0, 0)


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for port in range(RTP[0], RTP[1]):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError("no free ports")


def test_rtp_open_acks_from_each_port_and_answers_there(running: Running) -> None:
    session = wire.OfficeSession(KEY, TAG)
    ports = _free_ports(3)
    with client_socket() as sock:
        sock.sendto(session.rtp_open([*ports, 80]), running.address)  # 80: not in the range
        acks = {}
        while len(acks) < 4 and (got := receive(sock)) is not None:
            acks[got[1][1]] = session.parse(got[0])
        assert set(acks) == {*ports, running.address[1]}
        assert all(acks[p] == wire.RtpAck((p,)) for p in ports)
        assert acks[running.address[1]] == wire.RtpAck(tuple(ports))  # the main port's list
        assert receive(sock, 0.3) is None  # nothing about port 80
        sock.sendto(session.rtp_open([ports[1]]), ("127.0.0.1", ports[1]))
        got = receive(sock)
        assert got is not None and got[1] == ("127.0.0.1", ports[1])
        assert session.parse(got[0]) == wire.RtpAck((ports[1],))
        # an opened port says nothing to a stranger
        stranger = wire.OfficeSession(os.urandom(32), TAG)
        sock.sendto(stranger.rtp_open([ports[1]]), ("127.0.0.1", ports[1]))
        assert receive(sock, 0.3) is None


def test_rtp_call_sends_one_datagram_to_each_asked_port(running: Running) -> None:
    session = wire.OfficeSession(KEY, TAG)
    ports = _free_ports(2)
    listeners = []
    try:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            listeners.append(s)
        with client_socket() as asker:
            asker.sendto(session.rtp_call(ports), running.address)
            for port, s in zip(ports, listeners, strict=True):
                got = receive(s)
                assert got is not None and got[1][0] == "127.0.0.1"
                assert session.parse(got[0]) == wire.RtpAck((port,))
            got = receive(asker)
            assert got is not None and session.parse(got[0]) == wire.RtpAck(tuple(ports))
    finally:
        for s in listeners:
            s.close()


def test_an_unauthenticated_sender_gets_zero_bytes(running: Running) -> None:
    stranger = wire.OfficeSession(os.urandom(32), TAG)  # a known tag, a wrong key
    nobody = wire.OfficeSession(os.urandom(32), os.urandom(8))
    received = 0
    with client_socket() as sock:
        for session in (stranger, nobody):
            for packet in (
                session.hello(),
                session.probe(1, 2, 1400),
                session.summary(),
                session.rtp_open([RTP[0]]),
                session.rtp_call([RTP[0]]),
            ):
                sock.sendto(packet, running.address)
        sock.sendto(b"\0" * 1400, running.address)
        sock.sendto(wire.OfficeSession(KEY, TAG).hello(), running.address)  # the control
        while (got := receive(sock, 1.0)) is not None:
            received += len(got[0])
    assert received == wire.HELLO_SIZE  # the control's answer, and nothing else


def test_only_active_peers_are_answered(acme: Path, state_dir: Path) -> None:
    clock = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    profile = load_profile(acme)
    state = StateDir()
    sessions = {}
    for name in ("maria", "temp"):
        result = service.provision(profile, name, "dedicated", state=state, clock=clock)
        info = ClientConfig.read(result.config)
        public = info.client_public_key()
        assert public is not None and info.info.responder_key is not None
        sessions[name] = wire.OfficeSession(
            base64.b64decode(info.info.responder_key.reveal()),
            wire.key_tag(base64.b64decode(public)),
        )
    token = state.load_responder_token(profile.id)
    assert token is not None
    keys = PeerKeys(profile, token)
    for run in _start(Office(keys.get)):
        for session in sessions.values():
            assert isinstance(session.parse(ask(run.address, session.hello()) or b""), wire.Caps)
        service.revoke(profile, "temp", state=state, clock=clock)
        assert ask(run.address, sessions["temp"].hello(), 1.0) is None
        assert isinstance(
            sessions["maria"].parse(ask(run.address, sessions["maria"].hello()) or b""), wire.Caps
        )


def test_rate_limits_per_key_and_per_source() -> None:
    office = Office(lambda: KEYS, limits=Limits(per_key=1, per_key_burst=10))
    session = wire.OfficeSession(KEY, TAG)
    answered = sum(
        office.handle(session.probe(i, i), ("127.0.0.1", 5000)) is not None for i in range(100)
    )
    assert 10 <= answered <= 12  # the burst, and what refilled meanwhile (1 a second)
    office = Office(lambda: KEYS, limits=Limits(per_source=1, per_source_burst=20))
    answered = sum(
        office.handle(session.probe(i, i), ("127.0.0.9", 5000)) is not None for i in range(100)
    )
    assert 20 <= answered <= 22
    assert office.handle(session.probe(0, 0), ("127.0.0.10", 5000)) is not None  # another source


def test_a_flood_of_junk_from_many_sources_leaves_a_peer_answered() -> None:
    """Junk and forged requests (wrong MAC, unknown key) from 20,000 spoofed sources, each far
    under its own limit, cost the responder's budget nothing: a peer's probes are all answered."""
    office = Office(lambda: KEYS, limits=Limits(total=10, total_burst=100))
    forged = wire.OfficeSession(os.urandom(32), TAG)
    stranger = wire.OfficeSession(KEY, wire.key_tag(os.urandom(32)))
    for i in range(20_000):
        source = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 1)
        for packet in (b"NSR1" + bytes(60), forged.probe(i, i), stranger.probe(i, i)):
            assert office.handle(packet, source) is None
    session = wire.OfficeSession(KEY, TAG)
    answered = sum(
        office.handle(session.probe(i, i), ("10.250.0.1", 4000)) is not None for i in range(50)
    )
    assert answered == 50


def test_sessions_are_bounded() -> None:
    office = Office(lambda: KEYS, limits=None)
    for i in range(1000):
        office.handle(wire.OfficeSession(KEY, TAG, i).probe(0, 0), ("127.0.0.1", 1))
    assert office.sessions.count() == office.sessions.count(TAG) == Limits().sessions


PUBLIC_B = os.urandom(32)
KEY_B, TAG_B = wire.peer_key(TOKEN, PUBLIC_B), wire.key_tag(PUBLIC_B)


def test_one_peer_cannot_evict_another_peers_session() -> None:
    office = Office(lambda: {TAG: KEY, TAG_B: KEY_B}, limits=None)
    a = wire.OfficeSession(KEY, TAG)
    reflected = sum(office.handle(a.probe(i, i), ("10.0.0.2", 1)) is not None for i in range(100))
    for _ in range(1000):  # peer B opens session after session
        office.handle(wire.OfficeSession(KEY_B, TAG_B).summary(), ("10.0.0.3", 1))
    summary = a.parse(office.handle(a.summary(), ("10.0.0.2", 1)) or b"")
    assert reflected == 100 and summary == wire.Summary(100, 100, 0, 99)
    assert office.sessions.count(TAG_B) == Limits().sessions


def test_one_peer_cannot_hold_every_media_port() -> None:
    side = MediaSide(["127.0.0.1"], RTP, 64, per_key=16)
    try:
        free = _free_ports(40)
        assert len(side.open_ports("127.0.0.1", free[:16], TAG_B)) == 16
        assert side.open_ports("127.0.0.1", free[16:32], TAG_B) == []  # B holds its share
        mine = side.open_ports("127.0.0.1", free[32:40], TAG)
        assert [port for port, _ in mine] == free[32:40]
        # a port B opened is answered for A too, but A does not keep it open for B
        shared = side.open_ports("127.0.0.1", free[:1], TAG)
        assert [port for port, _ in shared] == free[:1]
        assert side.held_by(TAG) == 8 and side.held_by(TAG_B) == 16
    finally:
        side.close()


def test_rtp_requests_are_obeyed_only_from_the_peers_tunnel_address() -> None:
    """A captured RTP-CALL replayed from a spoofed source makes nothing leave; from the peer's
    own tunnel address it is obeyed."""
    office = Office(
        lambda: KEYS,
        MediaSide(["127.0.0.1"], RTP, 64),
        addresses=lambda: {TAG: frozenset({"127.0.0.2", "fd00::2"})},
    )
    session = wire.OfficeSession(KEY, TAG)
    ports = _free_ports(2)
    listeners = []
    try:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            listeners.append(s)
        call, opening = session.rtp_call(ports), session.rtp_open(ports)
        assert office.handle(call, ("127.0.0.1", 5000)) is None  # not the peer's address
        assert office.handle(opening, ("127.0.0.1", 5000)) is None
        assert all(receive(s, 0.3) is None for s in listeners)
        assert office.media is not None and office.media.open == {}
        assert office.handle(wire.OfficeSession(KEY, TAG).hello(), ("127.0.0.1", 1)) is not None
        answer = office.handle(call, ("127.0.0.2", 5000))
        assert answer is not None and session.parse(answer) == wire.RtpAck(tuple(ports))
    finally:
        for s in listeners:
            s.close()
        if office.media is not None:
            office.media.close()


def test_the_responder_knows_each_active_peers_tunnel_addresses(
    acme: Path, state_dir: Path
) -> None:
    clock = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    profile = load_profile(acme)
    state = StateDir()
    result = service.provision(profile, "maria", "dedicated", state=state, clock=clock)
    info = ClientConfig.read(result.config)
    public = info.client_public_key()
    token = state.load_responder_token(profile.id)
    assert public is not None and token is not None
    from netsetup.profile.store import parse_peer_file

    peer, _ = parse_peer_file(result.peer_file)
    assert peer is not None
    found = PeerKeys(profile, token).addresses()[wire.key_tag(base64.b64decode(public))]
    assert found == {str(a) for a in (peer.address_v4, peer.address_v6) if a is not None}
    assert str(peer.address_v4) in found


# -- fuzz -----------------------------------------------------------------------------------------

PACKETS = 100_000
BATCH = 50


def _seeds() -> list[bytes]:
    good = wire.OfficeSession(KEY, TAG, 1)
    return [
        good.hello(),
        good.probe(7, 8, wire.MIN_PROBE_SIZE),
        good.probe(7, 8, 1400),
        good.summary(),
        good.rtp_open([RTP[0]]),
        good.rtp_call([RTP[0] + 1]),
        wire.reflect(KEY, wire.parse_request(good.probe(1, 2), KEYS)[1], 3, 4, 5, 6),  # type: ignore[index]
        wire.OfficeSession(os.urandom(32), TAG).probe(1, 2),
        b"NSR1",
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
    elif choice == 3:  # noise behind the magic and a real type and tag
        data = bytearray(rng.randbytes(rng.randint(0, 1500)))
        if rng.random() < 0.7 and len(data) > 14:
            data[:6] = wire.MAGIC + bytes([rng.choice(wire.REQUESTS), 0])
            data[6:14] = TAG
    elif choice == 4 and len(data) > 5:  # the type byte
        data[4] = rng.randrange(256)
    return bytes(data)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fuzz_the_real_server_never_answers_what_does_not_verify() -> None:
    rng = random.Random(9)
    seeds = _seeds()
    marker = wire.OfficeSession(KEY, TAG, 2)
    office = Office(lambda: KEYS, MediaSide(["127.0.0.1"], RTP, 64), None, limits=None)
    tracemalloc.start()
    fds_before = _open_fds()
    sent = 0
    for run in _start(office):
        with client_socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            baseline = None
            for batch in range(PACKETS // BATCH):
                packets = [_mutate(rng, rng.choice(seeds)) for _ in range(BATCH)]
                authentic = [p for p in packets if wire.parse_request(p, KEYS) is not None]
                for packet in packets:
                    sock.sendto(packet, run.address)
                sent += len(packets)
                sock.sendto(marker.probe(batch, 0), run.address)
                answers = _until_marker(sock, marker, batch)
                direct = [a for a, source in answers if source == run.address]
                assert len(direct) <= len(authentic)
                if not authentic:
                    assert answers == []
                limit = max((len(p) for p in authentic), default=0)
                assert all(len(a) <= limit for a, _ in answers)
                if batch == 200:
                    baseline = tracemalloc.get_traced_memory()[0]
            assert baseline is not None
            grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert sent >= PACKETS
    assert grown < 4 << 20, grown  # memory bounded: sessions, buckets and ports are capped
    assert _open_fds() <= fds_before


def _until_marker(
    sock: socket.socket, marker: wire.OfficeSession, seq: int
) -> list[tuple[bytes, tuple[str, int]]]:
    """The datagrams that came before the marker's reflect (the server answers in order)."""
    got: list[tuple[bytes, tuple[str, int]]] = []
    while True:
        one = receive(sock, 5.0)
        assert one is not None, "the server stopped answering"
        found = marker.parse(one[0])
        if isinstance(found, wire.Reflect) and found.seq == seq:
            return got
        got.append(one)


# -- the command ----------------------------------------------------------------------------------


def test_the_command_serves_the_provisioned_peers_and_stops_on_sigterm(
    acme: Path, state_dir: Path
) -> None:
    import signal
    import subprocess
    import sys

    clock = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    profile = load_profile(acme)
    result = service.provision(profile, "maria", "dedicated", state=StateDir(), clock=clock)
    config = ClientConfig.read(result.config)
    public, key = config.client_public_key(), config.info.responder_key
    assert public is not None and key is not None
    session = wire.OfficeSession(
        base64.b64decode(key.reveal()), wire.key_tag(base64.b64decode(public))
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "netsetup", "responder", "--profile", str(acme)]
    argv += ["--listen", f"127.0.0.1:{port}", "--state-dir", str(state_dir)]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert f"office responder of acme-dental listening on udp 127.0.0.1:{port}" in first
        assert first.rstrip().endswith("; 1 active peer"), first
        answer = ask(("127.0.0.1", port), session.hello())
        assert answer is not None and isinstance(session.parse(answer), wire.Caps)
        stranger = wire.OfficeSession(os.urandom(32), session.tag)
        assert ask(("127.0.0.1", port), stranger.hello(), 0.5) is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    token = (state_dir / "acme-dental" / "responder" / "token").read_text().strip()
    assert token not in first + err and key.reveal() not in first + err


def test_the_command_refuses_what_it_cannot_use(
    acme: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.support import run_main

    base = ["responder", "--profile", str(acme)]
    here = ["--listen", "127.0.0.1:4789"]  # acme's own responder address is not on this host
    code, _, err = run_main([*base, *here, "--token-file", str(tmp_path / "none")], capsys)
    assert code == 2 and "cannot read the responder token: no such file" in err
    bad = tmp_path / "token"
    bad.write_text("not a token\n")
    code, _, err = run_main([*base, *here, "--token-file", str(bad)], capsys)
    assert code == 2 and "holds no token" in err and "not a token" not in err
    code, _, err = run_main([*base, "--key-file", str(bad)], capsys)
    assert code == 2 and "--key-file is for --role gateway" in err
    code, _, err = run_main([*base, "--listen", "127.0.0.1", "--token-file", str(bad)], capsys)
    assert code == 2 and "--listen" in err
