"""The speed tests without a lab: speedtest-cli in its child process against the speed endpoint
on 127.0.0.1 (real HTTP, real speedtest-cli), the child killed at its deadline, nothing of a
location in its output, a bad ticket answered with nothing, and speed.internet never running
in the suite (NETSETUP_OFFLINE=1)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from netsetup.diagnose.checks.speed import (
    OFFLINE,
    InternetSpeedCheck,
    TunnelSpeedCheck,
    _judge_speed,
    speed_endpoint,
)
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext, DiagnoseContext, DiagnoseOptions
from netsetup.diagnose.result import Owner, Status
from netsetup.diagnose.speed import SpeedChild, SpeedResult, run_speedtest
from netsetup.keys import SecretKey, generate_keypair
from netsetup.responder import office_wire, speedhttp
from netsetup.responder.auth import raw_key
from netsetup.responder.speedhttp import (
    MAX_CONNECTIONS,
    MAX_PER_SOURCE,
    SpeedServer,
    random_size,
    split_path,
)

GOOD = "good-ticket"
QUICK = {"length_s": 1.0, "threads": 4, "timeout_s": 5.0}
NUMBERS = {
    "ping_ms",
    "download_bps",
    "upload_bps",
    "bytes_received",
    "bytes_sent",
    "threads",
    "length_s",
}


@pytest.fixture
def server() -> Iterator[SpeedServer]:
    with SpeedServer(("127.0.0.1", 0), lambda ticket: ticket == GOOD) as started:
        yield started


def child_lines(request: dict[str, object]) -> list[dict[str, object]]:
    """The child's JSON lines as it writes them (what leaves the child at all)."""
    done = subprocess.run(
        [sys.executable, "-m", "netsetup.diagnose.speedrun"],
        input=json.dumps(request) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_child_measures_both_directions_and_writes_numbers_only(server: SpeedServer) -> None:
    lines = child_lines({"mode": "mini", "url": server.url(GOOD), **QUICK})
    assert [line.get("event") for line in lines[:2]] == ["start", "start"]
    assert [line.get("direction") for line in lines[:2]] == ["download", "upload"]
    result = lines[-1]["result"]
    assert isinstance(result, dict)
    # nothing but numbers: no client IP, no lat/lon, no server name or city
    assert set(result) == NUMBERS
    assert all(isinstance(v, int | float) for v in result.values())
    assert result["download_bps"] > 0 and result["upload_bps"] > 0
    assert result["bytes_received"] > 0 and result["bytes_sent"] > 0
    assert result["threads"] >= 4


def test_run_speedtest_reads_the_result(server: SpeedServer) -> None:
    found = run_speedtest({"mode": "mini", "url": server.url(GOOD), **QUICK}, 30)
    assert found.error is None and not found.timed_out
    assert found.download_bps and found.download_bps > 0
    assert found.upload_bps and found.upload_bps > 0
    assert found.ping_ms is not None


def test_one_direction_only(server: SpeedServer) -> None:
    request = {"mode": "mini", "url": server.url(GOOD), "directions": ["upload"], **QUICK}
    found = run_speedtest(request, 30)
    assert found.upload_bps and found.download_bps is None


def test_an_environment_proxy_is_not_used(
    server: SpeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """speedtest-cli's own opener would send the test to HTTP_PROXY: a closed port here."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    found = run_speedtest({"mode": "mini", "url": server.url(GOOD), **QUICK}, 30)
    assert found.error is None and found.download_bps


def test_a_bad_ticket_gets_no_byte_and_the_error_hides_the_ticket(server: SpeedServer) -> None:
    host, port = server.address
    for path in ("/t/bad/speedtest/latency.txt", "/t/bad/", "/", "/speedtest/latency.txt"):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(100) == b"", path
    secret = "sEcReT-tIcKeT"
    found = run_speedtest({"mode": "mini", "url": server.url(secret), **QUICK}, 30)
    assert found.error is not None and found.download_bps is None
    assert secret not in found.error


def test_the_endpoint_answers_the_mini_server_paths(server: SpeedServer) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = server.url(GOOD)
    assert b'upload_extension: "php"' in opener.open(base, timeout=5).read()
    assert opener.open(base + "speedtest/latency.txt?x=1", timeout=5).read() == b"test=test"
    body = opener.open(base + "speedtest/random10x10.jpg", timeout=5).read()
    assert len(body) == 10 * 10 * 8
    posted = opener.open(base + "speedtest/upload.php", data=b"content1=" + b"x" * 991, timeout=5)
    assert posted.read() == b"size=1000"
    assert split_path("/t/abc/speedtest/latency.txt?x=1") == ("abc", "/speedtest/latency.txt")
    assert split_path("/t/abc") == ("abc", "/")
    assert split_path("/speedtest/latency.txt") is None
    assert random_size("/speedtest/random4001x4001.jpg") is None
    assert random_size("/speedtest/random0x10.jpg") is None


def test_a_cut_upload_is_tolerated(server: SpeedServer) -> None:
    host, port = server.address
    with socket.create_connection((host, port), timeout=5) as sock:
        head = f"POST /t/{GOOD}/speedtest/upload.php HTTP/1.1\r\nHost: x\r\n"
        sock.sendall(f"{head}Content-Length: 100000\r\n\r\n".encode() + b"content1=" + b"x" * 991)
    found = run_speedtest({"mode": "mini", "url": server.url(GOOD), **QUICK}, 30)
    assert found.error is None and found.upload_bps


def _from(source: str, address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5, source_address=(source, 0))


def test_connections_are_bounded(server: SpeedServer) -> None:
    host, port = server.address
    sources = [f"127.0.0.{2 + i // MAX_PER_SOURCE}" for i in range(MAX_CONNECTIONS)]
    held = [_from(source, (host, port)) for source in sources]
    try:
        for sock in held:  # a byte each, so every one is being handled (not still queued)
            sock.sendall(b"G")
        extra = socket.create_connection((host, port), timeout=5)
        with extra:
            extra.sendall(f"GET /t/{GOOD}/speedtest/latency.txt HTTP/1.0\r\n\r\n".encode())
            assert extra.recv(100) == b"", "one connection more than the bound was served"
    finally:
        for sock in held:
            sock.close()
    found = run_speedtest({"mode": "mini", "url": server.url(GOOD), **QUICK}, 30)
    assert found.error is None, "the slots were not given back"


def _everything(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_anything_without_a_valid_ticket_is_closed_with_zero_bytes(server: SpeedServer) -> None:
    """No stock error page (larger than the request, with a Server banner) for anyone."""
    for raw in [
        b"GET /t/AAAA/ HTTP/1.0\r\n\r\n",
        b"X\r\n\r\n",
        b"FOO / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1 x\r\n\r\n",
        b"PUT /t/x/ HTTP/1.0\r\n\r\n",
        f"FOO /t/{GOOD}/ HTTP/1.0\r\n\r\n".encode(),
        b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n",
    ]:
        with (
            socket.create_connection(server.address, timeout=5) as sock,
            contextlib.suppress(ConnectionResetError),
        ):
            sock.sendall(raw)
            assert _everything(sock) == b"", raw[:30]


def test_an_answer_carries_no_server_banner(server: SpeedServer) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(f"GET /t/{GOOD}/speedtest/latency.txt HTTP/1.0\r\n\r\n".encode())
        answer = _everything(sock)
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"test=test")
    assert b"server:" not in answer.lower() and b"python" not in answer.lower()


def test_a_slow_sender_is_cut_at_the_header_deadline(
    server: SpeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speedhttp, "HEADER_DEADLINE_S", 0.6)
    with socket.create_connection(server.address, timeout=5) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in b"GET /t/good-ticket/speedtest/latency.txt HTTP/1.0\r\n":
                sock.sendall(bytes([byte]))  # a byte every 0.1 s, each read well in time
                time.sleep(0.1)
                if time.monotonic() - started > 3:
                    break
        assert _everything(sock) == b""
        assert time.monotonic() - started < 2.5


def test_one_source_cannot_take_every_connection(server: SpeedServer) -> None:
    host, port = server.address
    held = [_from("127.0.0.1", (host, port)) for _ in range(MAX_PER_SOURCE)]
    try:
        for sock in held:
            sock.sendall(b"G")
        with _from("127.0.0.1", (host, port)) as extra:
            extra.sendall(f"GET /t/{GOOD}/speedtest/latency.txt HTTP/1.0\r\n\r\n".encode())
            assert extra.recv(100) == b"", "one connection more than a source may have"
        with _from("127.0.0.3", (host, port)) as other:
            other.sendall(f"GET /t/{GOOD}/speedtest/latency.txt HTTP/1.0\r\n\r\n".encode())
            assert _everything(other).endswith(b"test=test")
    finally:
        for sock in held:
            sock.close()


def test_a_download_stops_when_its_ticket_expires() -> None:
    ends = time.time() + 1.0
    with (
        SpeedServer(("127.0.0.1", 0), lambda t: t == GOOD, lambda t: ends) as endpoint,
        socket.create_connection(endpoint.address, timeout=5) as sock,
    ):
        path = f"/t/{GOOD}/speedtest/random4000x4000.jpg"
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        got = 0
        while chunk := sock.recv(65536):
            got += len(chunk)
            time.sleep(0.01)  # a slow reader: the stream outlives the ticket
            assert time.time() < ends + 5, "the stream went on after the ticket expired"
    assert 0 < got < 4000 * 4000 * 8


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never answers: speedtest-cli would wait its timeout per read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(2)
        for sock in held:
            sock.close()
        listener.close()


def test_a_hanging_test_is_killed_at_its_deadline(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    url = f"http://{host}:{port}/t/{GOOD}/"
    child = SpeedChild({"mode": "mini", "url": url, "timeout_s": 60.0, "length_s": 60.0})
    pid = child.pid
    assert psutil.pid_exists(pid)
    import time

    found = child.result(time.monotonic() + 1.5)
    assert found.timed_out and found.error is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # its whole group is gone too (a new session: the group id is the child's pid)
    assert not [p for p in psutil.process_iter() if _group(p) == pid]


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


# -- the checks ------------------------------------------------------------------------------

CONFIG = """[Interface]
PrivateKey = {private}
Address = 198.18.10.2/32
[Peer]
PublicKey = MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=
Endpoint = 192.0.2.1:51820
AllowedIPs = 192.0.2.0/24
"""


def context(
    responder: tuple[str, int] | None,
    key: bytes | Callable[[bytes], bytes] | None,
    **options: object,
) -> tuple[DiagnoseContext, bytes]:
    """A context for a new computer; `key` is its responder key, or makes it from its public
    key (as provision does)."""
    pair = generate_keypair()
    config = ClientConfig.parse(CONFIG.format(private=pair.private.reveal()), Path("wg.conf"))
    if callable(key):
        key = key(raw_key(pair.public))
    secret = SecretKey(base64.b64encode(key).decode()) if key is not None else None
    config = config.with_info(replace(config.info, responder=responder, responder_key=secret))
    ctx = DiagnoseContext(config, options=DiagnoseOptions(**options))  # type: ignore[arg-type]
    return ctx, raw_key(pair.public)


def check_context(ctx: DiagnoseContext, seconds: float = 30.0) -> CheckContext:
    import time

    return CheckContext(ctx, time.monotonic() + seconds)


def test_speed_internet_is_off_in_the_suite() -> None:
    assert os.environ.get("NETSETUP_OFFLINE") == "1"
    ctx, _ = context(None, None)
    outcome = InternetSpeedCheck().run(check_context(ctx))
    assert outcome.status is Status.skip and outcome.summary == OFFLINE


def test_speed_internet_skips_offline_even_when_the_options_say_online() -> None:
    """The environment wins: options made elsewhere cannot turn the public test on in a test."""
    ctx, _ = context(None, None, offline=False)
    assert InternetSpeedCheck().run(check_context(ctx)).summary == OFFLINE


def test_no_internet_speed_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETSETUP_OFFLINE")
    ctx, _ = context(None, None, offline=False, internet_speed=False)
    outcome = InternetSpeedCheck().run(check_context(ctx))
    assert outcome.status is Status.skip and "--no-internet-speed" in outcome.summary


def test_speed_tunnel_with_a_real_ticket_against_the_endpoint() -> None:
    """The check's ticket (office_wire.speed_ticket from the responder key and this computer's
    public key) is what the endpoint's check_ticket accepts; a wrong key gets nothing."""
    token = os.urandom(32)
    holder: dict[bytes, bytes] = {}

    def authorize(ticket: str) -> bool:
        import time

        return office_wire.check_ticket(ticket, holder, time.time())

    with SpeedServer(("127.0.0.1", 0), authorize) as endpoint:
        ctx, public = context(endpoint.address, lambda public: office_wire.peer_key(token, public))
        holder[office_wire.key_tag(public)] = office_wire.peer_key(token, public)
        outcome = TunnelSpeedCheck().run(check_context(ctx))
        assert outcome.status is Status.passed, outcome.summary
        assert outcome.metrics["download_mbps"] and outcome.metrics["upload_mbps"]
        # the same computer with a key the office does not know: no answer, unknown with a fix
        wrong, _ = context(endpoint.address, os.urandom(32))
        outcome = TunnelSpeedCheck().run(check_context(wrong, 20))
        assert outcome.status is Status.unknown and outcome.fix


def test_speed_tunnel_skips_without_a_responder_or_key() -> None:
    ctx, _ = context(None, None)
    outcome = TunnelSpeedCheck().run(check_context(ctx))  # no responder
    assert outcome.status is Status.skip and "provision" not in outcome.summary
    ctx, _ = context(("192.0.2.50", 4789), None)
    url, why = speed_endpoint(check_context(ctx))
    assert url is None and "responder key" in why


def test_the_speed_url_carries_no_key() -> None:
    key = os.urandom(32)
    ctx, _ = context(("2001:db8::50", 4789), key)
    url, _ = speed_endpoint(check_context(ctx))
    assert url is not None and url.startswith("http://[2001:db8::50]:4789/t/")
    assert base64.b64encode(key).decode() not in url
    assert base64.urlsafe_b64encode(key).decode().rstrip("=") not in url


def test_speed_tunnel_without_a_responder_key_warns_it_with_rotate() -> None:
    """A config made before the office responder: a new config from IT (`rotate`, not
    `provision`, which refuses a name the profile has), not a silent skip."""
    ctx, _ = context(("192.0.2.50", 4789), None)
    outcome = TunnelSpeedCheck().run(check_context(ctx))
    assert outcome.status is Status.warn and outcome.owner is Owner.it
    assert "netsetup rotate" in (outcome.fix or "") and "provision" not in (outcome.fix or "")


def test_a_slow_tunnel_on_a_fast_line_is_for_it_not_the_isp() -> None:
    slow = SpeedResult(download_bps=0.5e6, upload_bps=0.5e6)
    it = _judge_speed(slow, "the tunnel", Owner.it)
    assert it.status is Status.warn and it.owner is Owner.it
    assert "Send this report to IT" in (it.fix or "") and "company side" in (it.fix or "")
    assert "internet provider" not in (it.fix or "")
    isp = _judge_speed(slow, "your internet connection", Owner.isp)
    assert isp.owner is Owner.isp and "internet provider" in (isp.fix or "")


def test_speedtest_net_failing_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """speedtest.net unreachable says nothing about the company connection: a skip that says
    why, not an unknown that leaves the verdict open. (The speedtest itself is replaced: no test
    may reach the internet.)"""
    from netsetup.diagnose import speed

    monkeypatch.delenv("NETSETUP_OFFLINE")
    monkeypatch.setattr(
        speed, "run_speedtest", lambda request, seconds: SpeedResult(error="no server answered")
    )
    ctx, _ = context(None, None, offline=False)
    outcome = InternetSpeedCheck().run(check_context(ctx))
    assert outcome.status is Status.skip
    assert "no server answered" in outcome.summary and "speedtest.net" in outcome.summary


_PARENT = """
import sys, time
from netsetup.diagnose.speed import SpeedChild
c = SpeedChild({"mode": "mini", "url": sys.argv[1], "directions": ["download", "upload"],
                "threads": 2, "length_s": 30, "timeout_s": 40})
print(c.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int, within_s: float) -> bool:
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_speed_child_dies_with_diagnose(
    silent_server: tuple[str, int], how: signal.Signals
) -> None:
    """A diagnose ended by SIGTERM (or even SIGKILL) leaves no speed child behind (here one
    waiting on an endpoint that never answers: it writes nothing, so no broken pipe ends it)."""
    host, port = silent_server
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, f"http://{host}:{port}/t/{GOOD}/"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.5)  # the child is loading by now
        assert psutil.Process(child).is_running()
        parent.send_signal(how)
        parent.wait(10)
        assert _gone(child, 5), "the speed child outlived diagnose"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
