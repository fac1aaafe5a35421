"""ICMP echo (ping) without the ping command and, where the system allows it, without admin
rights: the voice-shaped probes `lan.gateway` sends to the home router.

- Linux and macOS: a datagram ICMP socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), which needs no
  privilege on macOS and on Linux when the user's group is in net.ipv4.ping_group_range; failing
  that a raw socket (administrators only);
- Windows: IcmpSendEcho (iphlpapi) through ctypes, one call per echo in a small thread pool.

Where none works, `EchoUnavailable` says why in plain words, and the check ends `unknown`.
Replies are told apart by a random token and the sequence number in the payload (a Linux
datagram socket replaces the identifier with its own).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netsetup.diagnose.platform import rxtime
from netsetup.diagnose.voice.metrics import ProbeRecord

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
TOKEN_BYTES = 8
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_PAYLOAD_HEAD = struct.Struct(f"!{TOKEN_BYTES}sI")
IP_OVERHEAD = {4: 20 + _HEADER.size, 6: 40 + _HEADER.size}


class EchoUnavailable(Exception):
    """ICMP echo cannot be sent from here (no permission, no support): the reason, in words."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def echo_request(version: int, ident: int, seq: int, token: bytes, size: int) -> bytes:
    """An echo request whose IP packet is `size` bytes (the payload at least token + seq)."""
    payload = _PAYLOAD_HEAD.pack(token, seq)
    payload += b"\0" * max(0, size - IP_OVERHEAD[version] - len(payload))
    head = _HEADER.pack(ECHO_REQUEST[version], 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if version == 6:  # the kernel fills in the ICMPv6 checksum (it covers a pseudo-header)
        return head + payload
    total = checksum(head + payload)
    return _HEADER.pack(ECHO_REQUEST[4], 0, total, ident & 0xFFFF, seq & 0xFFFF) + payload


def parse_echo_reply(version: int, data: bytes, token: bytes) -> int | None:
    """The sequence number of an echo reply carrying our `token`, else None. An IPv4 header in
    front (raw sockets, macOS datagram sockets) is skipped."""
    if version == 4 and data and data[0] >> 4 == 4:
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < _HEADER.size + _PAYLOAD_HEAD.size:
        return None
    kind = data[0]
    if kind != ECHO_REPLY[version]:
        return None
    got, seq = _PAYLOAD_HEAD.unpack_from(data, _HEADER.size)
    return int(seq) if got == token else None


def open_echo_socket(version: int) -> socket.socket:
    """A socket that sends echo requests: datagram first (no privilege), raw as a fallback."""
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if version == 6 else socket.IPPROTO_ICMP
    errors: list[str] = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            return socket.socket(family, kind, proto)
        except OSError as exc:
            errors.append(exc.strerror or str(exc))
    hint = (
        " (Linux allows it to groups in net.ipv4.ping_group_range)"
        if sys.platform.startswith("linux")
        else ""
    )
    raise EchoUnavailable(f"this system does not let diagnose send a ping{hint}: {errors[0]}")


@dataclass(frozen=True)
class EchoPlan:
    """`count` echoes of `size` bytes, `interval_s` apart, then `settle_s` for late replies."""

    count: int
    interval_s: float = 0.02
    size: int = 200
    settle_s: float = 0.5


def echo_series(
    address: IPAddress, plan: EchoPlan, deadline: float, platform: str = sys.platform
) -> list[ProbeRecord]:
    """Echo requests on an absolute schedule; one ProbeRecord per request (t4 None: no reply).
    Raises EchoUnavailable when no echo can be sent from here."""
    if platform in ("win32", "cygwin"):  # pragma: no cover - Windows only
        return _windows_series(address, plan, deadline)
    sock = open_echo_socket(address.version)
    with sock:
        sock.setblocking(False)
        return _Series(sock, address, plan, deadline).run()


class _Series:
    def __init__(
        self, sock: socket.socket, address: IPAddress, plan: EchoPlan, deadline: float
    ) -> None:
        self.sock, self.address, self.plan, self.deadline = sock, address, plan, deadline
        self.version = address.version
        self.token = os.urandom(TOKEN_BYTES)
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.sent: dict[int, int] = {}
        self.got: dict[int, int] = {}
        self.order: dict[int, int] = {}
        self.stamped = rxtime.enable(sock)

    def run(self) -> list[ProbeRecord]:
        start = time.monotonic_ns()
        step = int(self.plan.interval_s * 1e9)
        for seq in range(self.plan.count):
            due = start + seq * step
            self._receive_until(due)
            if time.monotonic() >= self.deadline:
                break
            self._send(seq)
        self._receive_until(time.monotonic_ns() + int(self.plan.settle_s * 1e9), all_in=True)
        return [
            ProbeRecord(seq, t1, t4_ns=self.got.get(seq), arrival=self.order.get(seq))
            for seq, t1 in self.sent.items()
        ]

    def _send(self, seq: int) -> None:
        packet = echo_request(self.version, self.ident, seq, self.token, self.plan.size)
        self.sent[seq] = time.monotonic_ns()
        with contextlib.suppress(OSError):  # no route for a moment, a full buffer: lost
            self.sock.sendto(packet, (str(self.address), 0))

    def _receive_until(self, until_ns: int, all_in: bool = False) -> None:
        while True:
            left = min((until_ns - time.monotonic_ns()) / 1e9, self.deadline - time.monotonic())
            if left <= 0 or (all_in and len(self.got) == len(self.sent)):
                return
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                self._read()

    def _read(self) -> None:
        try:
            data, _, now = rxtime.receive(self.sock, 4096, self.stamped)
        except OSError:
            return
        seq = parse_echo_reply(self.version, data, self.token)
        if seq is not None and seq in self.sent and seq not in self.got:
            self.got[seq] = now
            self.order[seq] = len(self.order)


def _windows_series(
    address: IPAddress, plan: EchoPlan, deadline: float
) -> list[ProbeRecord]:  # pragma: no cover - Windows only
    import ctypes
    from concurrent.futures import ThreadPoolExecutor

    if address.version != 4:
        raise EchoUnavailable("ping over IPv6 is not supported on Windows yet")
    try:
        iphlpapi = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined]
        _declare(iphlpapi)
        handle = iphlpapi.IcmpCreateFile()
    except (OSError, AttributeError) as exc:
        raise EchoUnavailable(f"Windows' ping service (iphlpapi) is not available: {exc}") from None
    if handle in (None, 0, ctypes.c_void_p(-1).value):
        raise EchoUnavailable("Windows refused to open its ping service (IcmpCreateFile)")
    echo = _windows_echo(iphlpapi, handle, address, plan)
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            futures = []
            start = time.monotonic()
            for seq in range(plan.count):
                wait = start + seq * plan.interval_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if time.monotonic() >= deadline:
                    break
                futures.append(pool.submit(echo, seq))
            records = [f.result() for f in futures]
    finally:
        iphlpapi.IcmpCloseHandle(handle)
    return records


def _declare(iphlpapi: Any) -> None:  # pragma: no cover - Windows only
    """Argument and result types: a HANDLE is pointer-sized (an int result would cut it)."""
    import ctypes

    handle, u32 = ctypes.c_void_p, ctypes.c_uint32
    iphlpapi.IcmpCreateFile.restype = handle
    iphlpapi.IcmpCloseHandle.argtypes = [handle]
    iphlpapi.IcmpSendEcho.restype = u32
    iphlpapi.IcmpSendEcho.argtypes = [
        handle,  # IcmpHandle
        u32,  # DestinationAddress (IPAddr, network byte order)
        ctypes.c_void_p,  # RequestData
        ctypes.c_uint16,  # RequestSize
        ctypes.c_void_p,  # RequestOptions
        ctypes.c_void_p,  # ReplyBuffer
        u32,  # ReplySize
        u32,  # Timeout (ms)
    ]


def _windows_echo(
    iphlpapi: object, handle: object, address: IPAddress, plan: EchoPlan
) -> Callable[[int], ProbeRecord]:  # pragma: no cover - Windows only
    import ctypes

    destination = struct.unpack("=I", address.packed)[0]
    data_size = max(TOKEN_BYTES + 4, plan.size - IP_OVERHEAD[4])
    timeout_ms = int(max(0.2, plan.settle_s) * 1000)
    send = iphlpapi.IcmpSendEcho  # type: ignore[attr-defined]

    def one(seq: int) -> ProbeRecord:
        request = ctypes.create_string_buffer(data_size)
        reply = ctypes.create_string_buffer(64 + data_size + 8)
        t1 = time.monotonic_ns()
        count = send(handle, destination, request, data_size, None, reply, len(reply), timeout_ms)
        t4 = time.monotonic_ns()
        status = struct.unpack_from("=I", reply.raw, 4)[0]
        return ProbeRecord(seq, t1, t4_ns=t4 if count and status == 0 else None)

    return one
