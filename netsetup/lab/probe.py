"""Measurements taken from inside a lab host: SIP OPTIONS, a TCP banner, a DNS query, ping.

The wire-level part runs inside the namespace (`ip netns exec NS python -m netsetup.lab.probe
...`) and prints one JSON line; the functions at the bottom run it and return typed results. Every
probe has a timeout, so an unreachable host is an answer ("no reply in 2 s"), not a hang.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import ssl
import struct
import sys
from dataclasses import dataclass
from typing import Any

from netsetup.lab.proc import ns_run

# -- inside the namespace -------------------------------------------------------------------


def _sip_options(transport: str, host: str, port: int, timeout: float) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        local, local_port = sock.getsockname()[:2]
        branch = f"z9hG4bK{random.getrandbits(40):x}"
        tag = f"{random.getrandbits(32):x}"
        via_transport = transport.upper()
        target = f"[{host}]" if ":" in host else host
        local_host = f"[{local}]" if ":" in local else local
        request = (
            f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{via_transport} {local_host}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{local_host}>;tag={tag}\r\n"
            f"To: <sip:{target}>\r\n"
            f"Call-ID: {random.getrandbits(64):x}@netsetup-lab\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:probe@{local_host}:{local_port}>\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        if transport == "tls":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate
            sock = context.wrap_socket(sock, server_hostname=None)
        sock.send(request)
        data = sock.recv(65535)
        first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        match = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", first)
        if not match:
            return {"ok": False, "error": f"not a SIP reply: {first[:80]!r}"}
        return {"ok": True, "status": int(match.group(1)), "reason": match.group(2)}
    except (OSError, ssl.SSLError) as exc:
        return {"ok": False, "error": _why(exc)}
    finally:
        sock.close()


def _tcp_banner(host: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            try:
                banner = sock.recv(256).decode("utf-8", "replace").strip()
            except TimeoutError:
                banner = ""
            return {"ok": True, "banner": banner}
    except OSError as exc:
        return {"ok": False, "error": _why(exc)}


def _dns_query(server: str, name: str, qtype: str, use_tcp: bool, timeout: float) -> dict[str, Any]:
    code = {"A": 1, "AAAA": 28}[qtype]
    ident = random.getrandbits(16)
    query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        query += bytes([len(label)]) + label.encode("ascii")
    query += b"\x00" + struct.pack(">HH", code, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    try:
        if use_tcp:
            with socket.create_connection((server, 53), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(struct.pack(">H", len(query)) + query)
                length = struct.unpack(">H", _recv_exact(sock, 2))[0]
                reply = _recv_exact(sock, length)
        else:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.sendto(query, (server, 53))
                reply = sock.recv(4096)
    except OSError as exc:
        return {"ok": False, "error": _why(exc)}
    return _parse_dns(reply, ident, code)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _parse_dns(reply: bytes, ident: int, code: int) -> dict[str, Any]:
    got_id, flags, qd, an = struct.unpack(">HHHH", reply[:8])
    if got_id != ident:
        return {"ok": False, "error": "reply to another query"}
    offset = 12
    for _ in range(qd):
        offset = _skip_name(reply, offset) + 4
    answers = []
    for _ in range(an):
        offset = _skip_name(reply, offset)
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        data = reply[offset : offset + length]
        offset += length
        if rtype == code == 1:
            answers.append(socket.inet_ntop(socket.AF_INET, data))
        elif rtype == code == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, data))
    return {"ok": True, "rcode": flags & 0xF, "answers": answers}


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += length + 1


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="netsetup lab probe (runs inside a namespace)")
    sub = parser.add_subparsers(dest="kind", required=True)
    sip = sub.add_parser("sip")
    sip.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    sip.add_argument("--host", required=True)
    sip.add_argument("--port", type=int, default=5060)
    tcp = sub.add_parser("tcp")
    tcp.add_argument("--host", required=True)
    tcp.add_argument("--port", type=int, required=True)
    dns = sub.add_parser("dns")
    dns.add_argument("--server", required=True)
    dns.add_argument("--name", required=True)
    dns.add_argument("--type", choices=("A", "AAAA"), default="A")
    dns.add_argument("--tcp", action="store_true")
    for p in (sip, tcp, dns):
        p.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.kind == "sip":
        out = _sip_options(args.transport, args.host, args.port, args.timeout)
    elif args.kind == "tcp":
        out = _tcp_banner(args.host, args.port, args.timeout)
    else:
        out = _dns_query(args.server, args.name, args.type, args.tcp, args.timeout)
    sys.stdout.write(json.dumps(out) + "\n")


# -- from the host --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: dict[str, Any]

    @property
    def error(self) -> str | None:
        value = self.detail.get("error")
        return str(value) if value is not None else None


def _probe(namespace: str, args: list[str], timeout: float) -> ProbeResult:
    result = ns_run(
        namespace,
        [sys.executable, "-m", "netsetup.lab.probe", *args, "--timeout", str(timeout)],
        check=False,
        timeout=timeout + 20,
    )
    try:
        detail = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return ProbeResult(False, {"error": f"probe failed: {result.stderr.strip()[-200:]}"})
    return ProbeResult(bool(detail.get("ok")), detail)


def sip_options(
    namespace: str, host: str, transport: str = "udp", port: int = 5060, timeout: float = 2.0
) -> ProbeResult:
    """Send SIP OPTIONS; `.detail["status"]` is the reply's status code (200 when healthy)."""
    args = ["sip", "--transport", transport, "--host", host, "--port", str(port)]
    return _probe(namespace, args, timeout)


def tcp_banner(namespace: str, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
    """Connect; `.detail["banner"]` is the first line the service sent (an SSH banner...)."""
    return _probe(namespace, ["tcp", "--host", host, "--port", str(port)], timeout)


def dns_lookup(
    namespace: str,
    server: str,
    name: str,
    qtype: str = "A",
    tcp: bool = False,
    timeout: float = 2.0,
) -> ProbeResult:
    args = ["dns", "--server", server, "--name", name, "--type", qtype]
    return _probe(namespace, [*args, "--tcp"] if tcp else args, timeout)


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    output: str

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def ok(self) -> bool:
        return self.received > 0


def ping(
    namespace: str,
    host: str,
    *,
    count: int = 1,
    size: int | None = None,
    dont_fragment: bool = False,
    interval: float = 0.2,
    wait: float = 1.0,
) -> PingResult:
    """ping from inside `namespace`; with `dont_fragment` the packet may not be split on the way."""
    args = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if size is not None:
        args += ["-s", str(size)]
    if dont_fragment:
        args += ["-M", "do"]
    result = ns_run(namespace, [*args, host], check=False, timeout=count * interval + wait + 30)
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", result.stdout)
    if not match:
        return PingResult(count, 0, result.stdout + result.stderr)
    return PingResult(int(match.group(1)), int(match.group(2)), result.stdout)


if __name__ == "__main__":
    main()
