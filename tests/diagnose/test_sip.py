"""sip.udp / sip.tcp / sip.tls against a small SIP server on 127.0.0.1: the OPTIONS it gets (a
valid request with our User-Agent), the answer's code, server and (TLS) certificate subject;
a padded OPTIONS lost alone warns to use TCP/TLS; UDP silent while TCP answers fails with that
fix; the pacer; the SIP ALG comparison against the witness's mirror (and a rewriting proxy)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.diagnose import sip
from netsetup.diagnose.checks.sip import SipCheck
from netsetup.diagnose.result import Owner, Status
from netsetup.diagnose.sipalg import Path as AlgPath
from netsetup.diagnose.sipalg import _through, changed_fields, fields
from netsetup.responder.sipmirror import Mirrored, parse_message
from netsetup.responder.witness import Witness, open_sockets, serve

from ..responder.support import FakeGateway
from .helpers import config_text, context, view

SERVER = "Kamailio (5.6) \x1b[31mred\r\n"


def _reply(request: bytes, code: str = "200 OK") -> bytes:
    message = parse_message(request)
    lines = [f"SIP/2.0 {code}"]
    lines += [f"Via: {v}" for v in message.all("via")]
    for name in ("from", "to", "call-id", "cseq"):
        lines.append(f"{name}: {message.first(name)}")
    lines += [f"Server: {SERVER.strip()}", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class Pbx:
    """UDP and TCP (and TLS) SIP on 127.0.0.1 answering OPTIONS; what it got is kept."""

    def __init__(self, tls_dir: Path | None, udp_max: int = 65535, udp_on: bool = True) -> None:
        self.udp_max, self.udp_on = udp_max, udp_on
        self.got: list[bytes] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.create_server(("127.0.0.1", self.port))
        self.tls = socket.create_server(("127.0.0.1", 0))
        self.tls_port = self.tls.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if tls_dir is not None:
            from netsetup.lab.services import make_certificate

            key, cert = make_certificate(tls_dir, "pbx.example", ["127.0.0.1"], datetime.now(UTC))
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert, key)
        for listener in (self.tcp, self.tls):
            listener.settimeout(0.1)
        self.stop = threading.Event()
        for target in (self._udp, self._tcp):
            threading.Thread(target=target, daemon=True).start()

    def _udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.got.append(data)
            if self.udp_on and len(data) <= self.udp_max:
                self.udp.sendto(_reply(data), peer)

    def _tcp(self) -> None:
        while not self.stop.is_set():
            for listener in (self.tcp, self.tls):
                try:
                    conn, _ = listener.accept()
                except (TimeoutError, OSError):
                    continue
                threading.Thread(
                    target=self._stream, args=(conn, listener is self.tls), daemon=True
                ).start()

    def _stream(self, conn: socket.socket, tls: bool) -> None:
        try:
            conn.settimeout(5)
            if tls:
                assert self.context is not None
                conn = self.context.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            self.got.append(data)
            conn.sendall(_reply(data))
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        for sock in (self.udp, self.tcp, self.tls):
            sock.close()


@contextmanager
def pbx(tmp_path: Path, **kwargs: object) -> Iterator[Pbx]:
    server = Pbx(tmp_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


def _ctx(server: Pbx, transports: str = "udp,tcp,tls", budget: float = 12.0):  # type: ignore[no-untyped-def]
    line = (
        f"sip=127.0.0.1 domain=pbx.example transports={transports} "
        f"sip-port={server.port} tls-port={server.tls_port}"
    )
    return view(context(config_text([line]), deadline_s=60), budget)


def test_options_is_a_valid_request_with_our_user_agent() -> None:
    request = sip.options("udp", ("192.168.1.5", 40000), ("192.0.2.40", 5060), "pbx.example")
    message = parse_message(request.data)
    assert message.start == "OPTIONS sip:pbx.example SIP/2.0"
    assert message.first("user-agent") == sip.USER_AGENT
    assert sip.USER_AGENT.startswith("netsetup-diagnose/")
    assert request.branch in (message.first("via") or "") and request.branch.startswith("z9hG4bK")
    assert message.first("cseq") == "1 OPTIONS" and message.first("content-length") == "0"
    padded = sip.options("udp", ("192.168.1.5", 40000), ("192.0.2.40", 5060), None, 1500)
    assert len(padded.data) == 1500 and parse_message(padded.data).first("x-netsetup-pad")


def test_udp_tcp_tls_pass_with_code_server_and_certificate(tmp_path: Path) -> None:
    with pbx(tmp_path) as server:
        ctx = _ctx(server)
        for transport in ("udp", "tcp", "tls"):
            outcome = SipCheck(transport).run(ctx)
            assert outcome.status is Status.passed, outcome
            assert outcome.metrics["code"] == 200
            assert outcome.metrics["server"] == "Kamailio (5.6) [31mred"  # no escape byte
            assert isinstance(outcome.metrics["rtt_ms"], float)
        assert "CN=pbx.example" in str(outcome.metrics["certificate"])
        assert any(len(g) == 1500 for g in server.got)  # the padded one went out, and answered
        agents = [parse_message(g).first("user-agent") for g in server.got]
        assert agents and all(a == sip.USER_AGENT for a in agents)


def test_only_the_padded_options_lost_warns_to_use_tcp(tmp_path: Path) -> None:
    with pbx(tmp_path, udp_max=1200) as server:
        outcome = SipCheck("udp").run(_ctx(server))
    assert outcome.status is Status.warn and outcome.owner is Owner.assistant
    assert "TCP or TLS" in (outcome.fix or "")
    assert outcome.metrics["padded_bytes"] == 1500


def test_udp_silent_while_tcp_answers_fails_with_the_tcp_fix(tmp_path: Path) -> None:
    with pbx(tmp_path, udp_on=False) as server:
        outcome = SipCheck("udp").run(_ctx(server, "udp,tcp"))
        assert server.got  # it was sent (three times at most)
    assert outcome.status is Status.fail
    assert outcome.metrics["works_over"] == "tcp"
    assert "TCP" in (outcome.fix or "") and "ask IT" in (outcome.fix or "")


def test_nothing_answers_fails_for_it(tmp_path: Path) -> None:
    with pbx(tmp_path, udp_on=False) as server:
        ctx = _ctx(server, "udp")
    outcome = SipCheck("tcp").run(ctx)  # the server is gone: refused
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "refused" in outcome.summary


def test_the_pacer_gives_one_slot_a_second_per_destination() -> None:
    pacer = sip.Pacer(interval=1.0)
    now = time.monotonic()
    assert pacer.turn("192.0.2.40", now + 5)
    # the next slot is a second away: not before a deadline half a second off
    assert not pacer.turn("192.0.2.40", time.monotonic() + 0.5)
    assert pacer.turn("192.0.2.41", time.monotonic() + 0.5)  # another destination: at once


# -- sip.alg's comparison -------------------------------------------------------------------


def test_fields_and_changes() -> None:
    sent = sip.invite("udp", ("192.168.1.5", 40000), ("203.0.113.1", 5060), 16384, 1200).data
    found = fields(sent)
    assert found["sdp c="] == "IN IP4 192.168.1.5" and found["sdp m="].startswith("audio 16384")
    assert "192.168.1.5:40000" in found["via 1"] and found["via count"] == "1"
    assert changed_fields(sent, Mirrored(sent, None)) == ()
    rewritten = sent.replace(b"192.168.1.5", b"198.51.100.2")
    changed = changed_fields(sent, Mirrored(rewritten, None))
    assert {"via 1", "contact", "sdp c=", "sdp o="} <= set(changed)
    import hashlib

    assert changed_fields(sent, Mirrored(None, hashlib.sha256(sent).hexdigest())) == ()


@pytest.fixture
def mirror_port() -> Iterator[int]:
    sockets = open_sockets(["127.0.0.1"], 0)
    port = int(sockets[0].getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(Witness(FakeGateway(), None), sockets, stop))
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        sockets[0].close()


def test_the_mirror_returns_the_invite_intact(mirror_port: int) -> None:
    found = _through("udp", ("127.0.0.1", mirror_port), time.monotonic() + 5)
    assert found == AlgPath(f"udp {mirror_port}", ())


def test_a_rewriting_proxy_is_seen(mirror_port: int) -> None:
    """A stand-in ALG: a UDP proxy on the loopback that rewrites the sender's address in what
    it forwards, as a router's SIP helper does (127.0.0.1 -> 127.0.0.2)."""
    proxy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proxy.bind(("127.0.0.1", 0))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.connect(("127.0.0.1", mirror_port))
    stop = threading.Event()

    def run() -> None:
        proxy.settimeout(0.1)
        while not stop.is_set():
            try:
                data, client = proxy.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            upstream.send(data.replace(b"127.0.0.1", b"127.0.0.2"))
            upstream.settimeout(2)
            try:
                proxy.sendto(upstream.recv(65535), client)
            except OSError:
                continue

    threading.Thread(target=run, daemon=True).start()
    try:
        found = _through("udp", proxy.getsockname(), time.monotonic() + 5)
    finally:
        stop.set()
        proxy.close()
        upstream.close()
    assert found.changed is not None
    assert {"via 1", "contact", "sdp c=", "sdp o="} <= set(found.changed)


def test_tls_silent_while_udp_answers_warns_it_to_fix_the_profile(tmp_path: Path) -> None:
    """The default transports list TLS; a PBX that does not offer it is a profile to correct,
    not a failed run."""
    with pbx(tmp_path) as server:
        server.tls.close()  # the PBX offers UDP and TCP only
        ctx = _ctx(server)
        outcome = SipCheck("tls").run(ctx)
        tcp = SipCheck("tcp").run(ctx)
    assert tcp.status is Status.passed
    assert outcome.status is Status.warn and outcome.owner is Owner.it, outcome
    assert "[voip] transports" in (outcome.fix or "") and "TLS" in (outcome.fix or "")
    assert outcome.metrics["works_over"] in ("udp", "tcp")


def test_tcp_silent_while_udp_answers_warns(tmp_path: Path) -> None:
    with pbx(tmp_path) as server:
        server.tcp.close()  # the PBX listens on UDP (and TLS) only
        outcome = SipCheck("tcp").run(_ctx(server, "udp,tcp"))
    assert outcome.status is Status.warn and outcome.owner is Owner.it, outcome
    assert "remove it from [voip] transports" in (outcome.fix or "")


def test_an_alg_warns_for_the_assistant_outside_the_tunnel_only() -> None:
    from netsetup.diagnose.sipalg import _verdict

    paths = [AlgPath("udp 51821", ()), AlgPath("udp 5060", ("contact",)), AlgPath("tcp 5060", ())]
    outcome = _verdict(None, paths, {})  # type: ignore[arg-type]
    assert outcome.status is Status.warn and outcome.owner is Owner.assistant
    assert "Turn off SIP ALG in your router" in (outcome.fix or "")
    assert "outside the tunnel" in (outcome.fix or "") and "outside the tunnel" in outcome.summary


def test_5060_silent_names_the_provider_and_the_gateway_firewall() -> None:
    from netsetup.diagnose.sipalg import _verdict

    paths = [AlgPath("udp 51821", ()), AlgPath("udp 5060", None, "no answer")]
    outcome = _verdict(None, paths, {})  # type: ignore[arg-type]
    assert outcome.status is Status.warn
    assert "internet provider" in outcome.summary and "gateway firewall" in outcome.summary
    assert "render" in (outcome.fix or "") and "--firewall" in (outcome.fix or "")


@pytest.mark.parametrize("length", ["9" * 5000, "12345678", "1e3", "٣"])
def test_an_impossible_content_length_is_a_malformed_answer_not_a_crash(length: str) -> None:
    """A server (or anything on the way) answering over TCP with a Content-Length of thousands
    of digits made int() raise ValueError and crashed sip.tcp, sip.tls and sip.alg."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            reply = _reply(data).replace(b"Content-Length: 0", f"l: {length}".encode())
            conn.sendall(reply + b"x" * 100)
            time.sleep(1)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        build = lambda local: sip.options("tcp", local, ("127.0.0.1", port), None)  # noqa: E731
        found = sip.stream_exchange(("127.0.0.1", port), build, time.monotonic() + 3)
    finally:
        thread.join(3)
        server.close()
    assert found.error is not None and "malformed" in found.error
