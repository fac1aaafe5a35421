"""One speed test, in a child process: `python -m netsetup.diagnose.speedrun` (see speed.py).

speedtest-cli 2.1.3 fetches speedtest.net's configuration in `Speedtest()`'s constructor, its
worker threads are not daemons and a stalled read blocks for its whole timeout: so every speed
test runs here, in a process of its own that the parent kills at its deadline. The request comes
on stdin (a ticket URL must not show in `ps`), JSON lines go to stdout:

    {"event": "start", "direction": "download"}   as each direction begins (bufferbloat waits
    {"event": "start", "direction": "upload"}      for it before it measures the loaded RTT)
    {"result": {"download_bps": ..., "upload_bps": ..., "ping_ms": ..., ...}}
    {"error": "..."}                               instead of a result

Request: {"mode": "mini", "url": "http://<responder>/t/<ticket>/", "directions": [...],
"threads": 4, "length_s": 5, "timeout_s": 10} for the office responder's endpoint (no
speedtest.net at all, no proxy), or {"mode": "internet", ...} for speedtest.net itself (HTTPS;
the client's IP, its location and the server's are never written out: bits per second, the ping
and byte counts only).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import IO, Any

DIRECTIONS = ("download", "upload")
DEFAULT_THREADS = 4
DEFAULT_LENGTH_S = 5.0
DOWNLOAD_SIDE = 4000  # random4000x4000.jpg: the endpoint streams 128 MB, longer than any test
# Upload requests are long (each stream keeps one connection for the whole test on a home line,
# as iperf3's streams do: a new connection per megabyte would slow-start into the queue again and
# again, a harsher load than the one bufferbloat is compared with) and made on the fly (LazyUpload),
# so their size costs no memory. The rate is bytes / time, whether or not all are sent.
UPLOAD_SIZE = 32 << 20
UPLOAD_REQUESTS = 16
_FILL = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 1821  # ~64 KiB of what speedtest-cli sends


def mini_config(threads: int, length_s: float) -> dict[str, Any]:
    """speedtest-cli's configuration for a mini server, without asking speedtest.net: `threads`
    streams per direction, each lasting `length_s` (the server's download is longer)."""
    return {
        "client": {},
        "ignore_servers": [],
        "sizes": {"upload": [UPLOAD_SIZE], "download": [DOWNLOAD_SIDE]},
        "counts": {"upload": UPLOAD_REQUESTS, "download": threads},
        "threads": {"upload": threads, "download": threads},
        "length": {"upload": length_s, "download": length_s},
        "upload_max": UPLOAD_REQUESTS,
    }


NOTSENT_LOWAT = 16 << 10


def _low_water_handler(timeout: float) -> Any:
    """speedtest-cli's HTTP handler whose sockets keep little unsent data (TCP_NOTSENT_LOWAT,
    where the system has it): speedtest-cli counts an upload's bytes as they are handed to the
    socket, so megabytes still waiting in a send buffer when the time is up would count as sent
    (measured: +14 % on a 10 Mbit/s link)."""
    import socket

    import speedtest

    class LowWaterConnection(speedtest.SpeedtestHTTPConnection):  # type: ignore[misc]
        def connect(self) -> None:
            super().connect()
            option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
            if option is not None:
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)

    class LowWaterHandler(speedtest.SpeedtestHTTPHandler):  # type: ignore[misc]
        def http_open(self, req: Any) -> Any:
            build = speedtest._build_connection(LowWaterConnection, None, self.timeout)
            return self.do_open(build, req)

    return LowWaterHandler(timeout=timeout)


def no_proxy_opener(timeout: float) -> Any:
    """speedtest-cli's opener without the environment's proxies: the tunnel test must go
    through the tunnel, never to an HTTP_PROXY the computer has set for the web."""
    import urllib.request

    import speedtest

    opener = urllib.request.OpenerDirector()
    opener.addheaders = [("User-agent", speedtest.build_user_agent())]
    for handler in (
        urllib.request.ProxyHandler({}),
        _low_water_handler(timeout),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _lazy_upload_class() -> Any:
    import timeit

    import speedtest

    class LazyUpload(speedtest.HTTPUploaderData):  # type: ignore[misc]
        """speedtest-cli's upload body, made while it is sent instead of allocated up front
        (`pre_allocate` would hold every request's bytes at once); stops at the test's time."""

        def pre_allocate(self) -> None:
            self._sent = 0

        def read(self, n: int = 10240) -> bytes:
            in_time = timeit.default_timer() - self.start <= self.timeout
            if not in_time or self._shutdown_event.isSet():
                raise speedtest.SpeedtestUploadTimeout()
            sent = getattr(self, "_sent", 0)
            chunk = _FILL[: max(0, min(n, self.length - sent, len(_FILL)))]
            self._sent = sent + len(chunk)
            self.total.append(len(chunk))
            return chunk

    return LazyUpload


def _local_speedtest_class() -> Any:
    import speedtest

    # speedtest.upload() builds its bodies from this module attribute: ours, in this child only
    speedtest.HTTPUploaderData = _lazy_upload_class()

    class LocalSpeedtest(speedtest.Speedtest):  # type: ignore[misc]
        """A Speedtest whose configuration is ours (its mini-server mode without the fetch of
        speedtest.net's configuration that the constructor does first)."""

        def __init__(self, threads: int, length_s: float, timeout: float) -> None:
            self._mini = mini_config(threads, length_s)
            super().__init__(timeout=timeout)

        def get_config(self) -> dict[str, Any]:
            self._opener = no_proxy_opener(self._timeout)
            self.config.update(self._mini)
            self.lat_lon = (0.0, 0.0)
            return self.config  # type: ignore[no-any-return]

    return LocalSpeedtest


def _emit(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def measure(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    """Run the test `request` asks for; events to `out` as each direction starts. Returns the
    result (numbers only)."""
    threads = max(DEFAULT_THREADS, int(request.get("threads", DEFAULT_THREADS)))
    length = float(request.get("length_s", DEFAULT_LENGTH_S))
    timeout = float(request.get("timeout_s", 10.0))
    directions = [d for d in request.get("directions", DIRECTIONS) if d in DIRECTIONS]
    if request.get("mode") == "internet":
        test = _internet_speedtest(length, timeout)
    else:
        test = _local_speedtest_class()(threads, length, timeout)
        test.get_best_server(test.set_mini_server(str(request["url"])))
    result: dict[str, Any] = {"ping_ms": round(float(test.results.ping), 2)}
    for direction in directions:
        _emit(out, {"event": "start", "direction": direction})
        if direction == "download":
            result["download_bps"] = round(float(test.download(threads=threads)), 1)
            result["bytes_received"] = int(test.results.bytes_received)
        else:
            rate = test.upload(threads=threads, pre_allocate=False)
            result["upload_bps"] = round(float(rate), 1)
            result["bytes_sent"] = int(test.results.bytes_sent)
    result["threads"] = threads
    result["length_s"] = length
    return result


def _internet_speedtest(length: float, timeout: float) -> Any:
    """speedtest.net itself, over HTTPS, the nearest server; shorter than its default 10 s."""
    import speedtest

    test = speedtest.Speedtest(timeout=timeout, secure=True)
    test.config["length"] = {"upload": length, "download": length}
    test.get_best_server()
    return test


_TICKET = re.compile(r"/t/[A-Za-z0-9_-]+")


def _plain_error(exc: BaseException) -> str:
    """One line, the ticket masked (speedtest-cli names the URL in its errors)."""
    text = (str(exc) or type(exc).__name__).splitlines()[0][:200]
    return f"{type(exc).__name__}: {_TICKET.sub('/t/<ticket>', text)}"


PARENT_ENV = "NETSETUP_SPEED_PARENT"  # the pid of the diagnose that started this child
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None) -> bool:
    """On Linux, have the kernel SIGKILL this process when the one that started it dies (by
    SIGTERM, SIGKILL, anything: no orphan keeps loading the line). False when the parent is
    already gone (then this process should not start at all)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return parent is None or os.getppid() == parent


def _parent() -> int | None:
    text = os.environ.get(PARENT_ENV, "")
    return int(text) if text.isdigit() else None


def main(argv: Sequence[str] | None = None, stdin: IO[str] = sys.stdin) -> int:
    if not die_with_parent(_parent()):
        return 1  # the parent died before it could ask for anything
    warnings.simplefilter("ignore")  # speedtest-cli's Event.isSet() on 3.11: nobody can act
    try:
        request = json.loads(stdin.readline() or "{}")
        if not isinstance(request, dict):
            raise ValueError("the request is not a JSON object")
        result = measure(request, sys.stdout)
    except Exception as exc:  # the parent reports it as unknown, with this line
        _emit(sys.stdout, {"error": _plain_error(exc)})
        return 1
    _emit(sys.stdout, {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
