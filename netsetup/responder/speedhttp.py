"""The office responder's HTTP speed endpoint: what speedtest-cli's mini-server mode talks to.

`speed.tunnel` runs speedtest-cli (netsetup.diagnose.speedrun) against
`http://<responder>:<port>/t/<ticket>/`: the paths below the ticket are those of a Speedtest Mini
server (speedtest.py 2.1.3):

- `/` answers `upload_extension: "php"` (how `set_mini_server` recognises a mini server);
- `speedtest/latency.txt` answers `test=test` (three of them are the ping);
- `speedtest/random{N}x{N}.jpg` streams N*N*8 bytes (the download: each stream is read until
  the test's time is up, so it must last longer than that);
- `speedtest/upload.php` (POST) reads the body and answers `size=<bytes read>` (the upload; a body
  cut short when the client's time is up is normal and tolerated).

The ticket (netsetup.responder.office_wire.speed_ticket: the peer's key tag, an expiry, a MAC) is
in the path because speedtest-cli's latency requests use a bare HTTPConnection that cannot carry
a header. A request whose ticket `authorize` refuses, or that is not HTTP the endpoint serves, is
closed without a byte (no error page, no Server banner). Connections are bounded (MAX_CONNECTIONS
at once, MAX_PER_SOURCE from one address: more are closed at once), the request line and headers
must arrive within HEADER_DEADLINE_S, every read has a timeout, a download stops when its ticket
expires (`expiry(ticket)`), nothing is logged (a path holds a ticket). Standard library only: it
runs in the office responder.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_CONNECTIONS = 16
MAX_PER_SOURCE = 10  # a speed test's 4 streams (speedtest-cli queues a few more), not all 16
READ_TIMEOUT_S = 10.0
HEADER_DEADLINE_S = 5.0  # for the request line and all headers, however slowly they drip
MAX_SIDE = 4000  # random4000x4000.jpg: 128 MB, longer than any test lasts through a tunnel
MAX_UPLOAD = 64 << 20  # bytes read from one upload body at most (the rest is not read)
CHUNK = 64 << 10
_FILL = bytes(range(256)) * (CHUNK // 256)  # what a "jpg" is made of: only its length matters
MINI_INDEX = (
    b'<html><body>netsetup speed endpoint<script>upload_extension: "php"</script></body></html>\n'
)
LATENCY = b"test=test"
_TICKET_PATH = re.compile(r"^/t/([A-Za-z0-9_-]{1,200})(/.*)?$")
_RANDOM = re.compile(r"^/speedtest/random(\d{1,4})x(\d{1,4})\.jpg$")

Authorize = Callable[[str], bool]
Expiry = Callable[[str], float | None]  # a ticket's expiry (Unix time), None: none known


def _no_expiry(ticket: str) -> float | None:
    return None


def split_path(raw: str) -> tuple[str, str] | None:
    """(ticket, path below it) of a request path (query dropped), or None when it has none."""
    path = raw.split("?", 1)[0]
    match = _TICKET_PATH.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2) or "/"


def random_size(path: str) -> int | None:
    """The byte count of `speedtest/randomNxN.jpg` (N*N*8, N <= MAX_SIDE), None otherwise."""
    match = _RANDOM.match(path)
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        return None
    return width * height * 8


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT_S
    server_version = "netsetup-speed"
    sys_version = ""

    _deadline: threading.Timer | None = None
    _ticket: str = ""

    def log_message(self, format: str, *args: Any) -> None:  # a path holds a ticket
        return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """No error page to anyone: the connection is closed, nothing sent."""
        self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)  # no Server banner, no Date

    def handle_one_request(self) -> None:
        """One request, its line and headers within HEADER_DEADLINE_S (a slow sender is cut)."""
        self._deadline = threading.Timer(HEADER_DEADLINE_S, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if self._deadline is not None:
            self._deadline.cancel()
        return parsed

    def _below_ticket(self) -> str | None:
        """The path below a valid ticket; None (connection closed, nothing sent) otherwise."""
        split = split_path(self.path)
        if split is None or not self.server.authorize(split[0]):
            self.close_connection = True
            return None
        self._ticket = split[0]
        return split[1]

    def _send(self, body: bytes, status: int = 200, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self._below_ticket()
        if path is None:
            return
        if path == "/":
            self._send(MINI_INDEX, kind="text/html")
        elif path == "/speedtest/latency.txt":
            self._send(LATENCY)
        elif path == "/speedtest/upload.php":
            self._send(b"size=0")
        else:
            size = random_size(path)
            if size is None:
                self._send(b"not found", 404)
            else:
                self._stream(size)

    def _stream(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view = memoryview(_FILL)
        left = size
        expiry = self.server.expiry(self._ticket)
        with contextlib.suppress(OSError):  # the client stops reading when its time is up
            while left > 0:
                if expiry is not None and time.time() > expiry:
                    self.close_connection = True  # the ticket is over: so is the stream
                    return
                self.wfile.write(view[: min(left, CHUNK)])
                left -= min(left, CHUNK)

    def do_POST(self) -> None:
        path = self._below_ticket()
        if path is None:
            return
        if path != "/speedtest/upload.php":
            self.close_connection = True
            return
        received = self._drain()
        with contextlib.suppress(OSError):
            self._send(f"size={received}".encode())

    def _drain(self) -> int:
        """Read the body (up to MAX_UPLOAD bytes): how many bytes came, also when cut short."""
        try:
            length = min(int(self.headers.get("Content-Length", "0")), MAX_UPLOAD)
        except ValueError:
            length = 0
        received = 0
        with contextlib.suppress(OSError):
            while received < length:
                chunk = self.rfile.read(min(CHUNK, length - received))
                if not chunk:
                    break
                received += len(chunk)
        return received


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(
        self, address: tuple[str, int], authorize: Authorize, expiry: Expiry = _no_expiry
    ) -> None:
        self.authorize, self.expiry = authorize, expiry
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.per_source: dict[str, int] = {}
        self.counting = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def _take(self, source: str) -> bool:
        with self.counting:
            if self.per_source.get(source, 0) >= MAX_PER_SOURCE:
                return False
            if not self.slots.acquire(blocking=False):
                return False
            self.per_source[source] = self.per_source.get(source, 0) + 1
            return True

    def _give_back(self, source: str) -> None:
        with self.counting:
            left = self.per_source.pop(source, 1) - 1
            if left > 0:
                self.per_source[source] = left
            self.slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        source = str(client_address[0])
        if not self._take(source):  # too many at once: closed, nothing sent
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._give_back(source)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_back(str(client_address[0]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client gone mid-transfer is normal; nothing to log (paths hold tickets)


class SpeedServer:
    """The speed endpoint on `address` (host, port; port 0 picks one): `start()` serves in a
    thread, `close()` stops. `authorize(ticket)` says whether a ticket is valid now, `expiry`
    until when (a download still running then is cut)."""

    def __init__(
        self, address: tuple[str, int], authorize: Authorize, expiry: Expiry = _no_expiry
    ) -> None:
        self._server = _Server(address, authorize, expiry)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def url(self, ticket: str) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/t/{ticket}/"

    def start(self) -> SpeedServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="speed endpoint", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> SpeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
