"""When a datagram really arrived: the kernel's receive timestamp (Linux SO_TIMESTAMPNS) rather
than the moment Python got round to reading it, so a busy machine's wake-up delay does not show
up as network delay (ping does the same). Elsewhere, or when the kernel gives none, the time of
reading.

Kernel timestamps are on the wall clock; they are turned into `time.monotonic_ns()` values by
how long ago they were taken, so they compare with the send times the probes carry.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

_LINUX_SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>; also the control message's type
_TIMESPEC = struct.Struct("@qq")


def enable(sock: socket.socket, platform: str = sys.platform) -> bool:
    """Ask the kernel to stamp each datagram `sock` receives; False where it cannot."""
    if not platform.startswith("linux"):
        return False
    option = getattr(socket, "SO_TIMESTAMPNS", _LINUX_SO_TIMESTAMPNS)
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    except OSError:
        return False
    return True


def arrival(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive time in `recvmsg`'s ancillary data, as a monotonic ns value (read it
    right after `recvmsg`), or None when there is none."""
    now_mono, now_wall = time.monotonic_ns(), time.time_ns()
    option = getattr(socket, "SO_TIMESTAMPNS", _LINUX_SO_TIMESTAMPNS)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == option and len(payload) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            ago = now_wall - (seconds * 1_000_000_000 + nanoseconds)
            if 0 <= ago < 10_000_000_000:  # a sane stamp (the wall clock did not jump)
                return int(now_mono - ago)
    return None


def receive(sock: socket.socket, size: int, stamped: bool) -> tuple[bytes, object, int]:
    """(data, source address, arrival as monotonic ns) of one datagram."""
    if not stamped:
        data, source = sock.recvfrom(size)
        return data, source, time.monotonic_ns()
    data, ancillary, _, source = sock.recvmsg(size, socket.CMSG_SPACE(_TIMESPEC.size))
    arrived = arrival(ancillary)
    return data, source, arrived if arrived is not None else time.monotonic_ns()
