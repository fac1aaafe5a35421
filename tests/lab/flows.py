"""Small traffic tools the enforcement tests run inside lab namespaces (stdlib only).

    python flows.py serve-udp ADDRESS PORT        answer every datagram, print "got SRC" for each
    python flows.py client                        hold flows, driven line by line on stdin
    python flows.py send-udp --source S HOST PORT one datagram from address S; exit 0 on an answer
    python flows.py icmp-error ...                an ICMP "fragmentation needed" about a TCP flow
    python flows.py watch-icmp                    print "icmp SRC INNER_DST INNER_DPORT" per error

Every tool prints "ready" once it listens, and flushes each line, so a test can wait for it.
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
import time

SIP_OPTIONS = (
    "OPTIONS sip:assistant@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK-lab\r\n"
    "From: <sip:pbx@{source}>;tag=lab\r\nTo: <sip:assistant@{host}>\r\nCall-ID: lab-call\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def say(line: str) -> None:
    print(line, flush=True)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve_udp(address: str, port: int) -> None:
    sock = socket.socket(_family(address), socket.SOCK_DGRAM)
    sock.bind((address, port))
    say("ready")
    while True:
        data, peer = sock.recvfrom(65535)
        say(f"got {peer[0]}")
        reply = b"SIP/2.0 200 OK\r\n\r\n" if data.startswith(b"OPTIONS") else data
        sock.sendto(reply, peer)


def send_udp(source: str, host: str, port: int, timeout: float) -> int:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.sendto(SIP_OPTIONS.format(host=host, source=source).encode(), (host, port))
    try:
        data, _ = sock.recvfrom(65535)
    except OSError as exc:
        say(f"no answer: {exc}")
        return 1
    say(data.decode(errors="replace").splitlines()[0])
    return 0


class Client:
    """One TCP session and one UDP socket kept open across commands, so their packets stay in the
    same conntrack entries: `tcp-open H P`, `tcp-echo`, `udp-echo H P`, `tcp-new H P`,
    `udp-new H P`. Each answers one line: "ok ..." or "fail ..."."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tcp: socket.socket | None = None
        self.udp: socket.socket | None = None

    def handle(self, words: list[str]) -> str:
        command, args = words[0], words[1:]
        try:
            if command == "tcp-open":
                self.tcp = self._connect(args[0], int(args[1]))
                return f"ok {self.tcp.getsockname()[1]}"
            if command == "tcp-echo" and self.tcp is not None:
                return self._tcp_echo(self.tcp)
            if command == "tcp-new":
                self._connect(args[0], int(args[1])).close()
                return "ok"
            if command == "udp-echo":
                if self.udp is None:
                    self.udp = socket.socket(_family(args[0]), socket.SOCK_DGRAM)
                return self._udp_echo(self.udp, args[0], int(args[1]))
            if command == "udp-new":
                with socket.socket(_family(args[0]), socket.SOCK_DGRAM) as sock:
                    return self._udp_echo(sock, args[0], int(args[1]))
        except OSError as exc:
            return f"fail {exc}"
        return f"fail unknown command {command}"

    def _connect(self, host: str, port: int) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=self.timeout)
        sock.recv(4096)  # the service's greeting
        return sock

    def _tcp_echo(self, sock: socket.socket) -> str:
        sock.sendall(b"still there?\n")
        ready, _, _ = select.select([sock], [], [], self.timeout)
        if not ready:
            return "fail no echo"
        return "ok" if sock.recv(4096) else "fail closed"

    def _udp_echo(self, sock: socket.socket, host: str, port: int) -> str:
        sock.sendto(b"rtp-like", (host, port))
        ready, _, _ = select.select([sock], [], [], self.timeout)
        if not ready:
            return "fail no echo"
        sock.recv(65535)
        return "ok"


def client(timeout: float) -> None:
    tools = Client(timeout)
    say("ready")
    for line in sys.stdin:
        if line.strip():
            say(tools.handle(line.split()))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_error(source: str, inner_src: str, inner_dst: str, sport: int, dport: int) -> None:
    """Send to `inner_src` what a router on the way would send about a too-big TCP packet from
    `inner_src`:`sport` to `inner_dst`:`dport` (type 3 code 4, next-hop MTU 1280)."""
    inner = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        1400,
        0,
        0x4000,
        64,
        socket.IPPROTO_TCP,
        0,
        socket.inet_aton(inner_src),
        socket.inet_aton(inner_dst),
    )
    inner = inner[:10] + struct.pack("!H", _checksum(inner)) + inner[12:]
    tcp = struct.pack("!HHI", sport, dport, 1)
    body = struct.pack("!HH", 0, 1280) + inner + tcp
    header = struct.pack("!BBH", 3, 4, 0)
    packet = struct.pack("!BBH", 3, 4, _checksum(header + body)) + body
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.bind((source, 0))
        sock.sendto(packet, (inner_src, 0))
    say("sent")


def watch_icmp(seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    say("ready")
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        packet, peer = sock.recvfrom(65535)
        icmp = packet[(packet[0] & 0x0F) * 4 :]
        if icmp[0] != 3 or len(icmp) < 8 + 20 + 4:
            continue
        inner = icmp[8:]
        inner_dst = socket.inet_ntoa(inner[16:20])
        dport = struct.unpack("!H", inner[(inner[0] & 0x0F) * 4 + 2 :][:2])[0]
        say(f"icmp {peer[0]} {inner_dst} {dport}")


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="tool", required=True)
    serve = sub.add_parser("serve-udp")
    serve.add_argument("address")
    serve.add_argument("port", type=int)
    hold = sub.add_parser("client")
    hold.add_argument("--timeout", type=float, default=1.5)
    send = sub.add_parser("send-udp")
    send.add_argument("--source", required=True)
    send.add_argument("--timeout", type=float, default=2.0)
    send.add_argument("host")
    send.add_argument("port", type=int)
    error = sub.add_parser("icmp-error")
    for name in ("--source", "--inner-src", "--inner-dst"):
        error.add_argument(name, required=True)
    error.add_argument("--sport", type=int, required=True)
    error.add_argument("--dport", type=int, required=True)
    watch = sub.add_parser("watch-icmp")
    watch.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.tool == "serve-udp":
        serve_udp(args.address, args.port)
    elif args.tool == "client":
        client(args.timeout)
    elif args.tool == "send-udp":
        return send_udp(args.source, args.host, args.port, args.timeout)
    elif args.tool == "icmp-error":
        icmp_error(args.source, args.inner_src, args.inner_dst, args.sport, args.dport)
    else:
        watch_icmp(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
