"""A small NSR1 reflector on 127.0.0.1 for the voice unit tests, built from the wire module's
responder side: it answers PROBE, SUMMARY and HELLO like the office responder, and loses chosen
probes on the way in or their answers on the way out."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from netsetup.responder import office_wire as w

TOKEN = bytes(range(32))
PUBLIC = bytes(range(100, 132))
KEY = w.peer_key(TOKEN, PUBLIC)
TAG = w.key_tag(PUBLIC)


class Reflector:
    """Answers PROBE and SUMMARY like the office responder; `drop_in(seq)` loses a probe before
    it is counted, `drop_out(seq)` loses its reflect after it was counted as sent."""

    def __init__(
        self,
        drop_in: Callable[[int], bool] = lambda s: False,
        drop_out: Callable[[int], bool] = lambda s: False,
        key: bytes = KEY,
        tag: bytes = TAG,
    ) -> None:
        self.key, self.tag, self.media = key, tag, ("127.0.0.1",)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = ("127.0.0.1", int(self.sock.getsockname()[1]))
        self.drop_in, self.drop_out = drop_in, drop_out
        self.rx = self.tx = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            t2 = time.monotonic_ns()
            parsed = w.parse_request(data, {self.tag: self.key})
            if parsed is None:
                continue
            key, request = parsed
            if request.kind == w.T_PROBE:
                self._probe(key, request, t2, source)
            elif request.kind == w.T_SUMMARY:
                reply = w.summary_reply(key, request, self.rx, self.tx, 0, 0)
                self.sock.sendto(reply, source)
            elif request.kind == w.T_HELLO:
                caps = w.Caps(time.monotonic_ns(), self.media, None, w.MAX_PROBE_SIZE)
                self.sock.sendto(w.caps_reply(key, request, caps), source)

    def _probe(self, key: bytes, request: w.Request, t2: int, source: tuple[str, int]) -> None:
        if self.drop_in(request.seq):
            return
        self.rx += 1
        self.tx += 1
        reply = w.reflect(key, request, t2, time.monotonic_ns(), self.tx, self.rx)
        if not self.drop_out(request.seq):
            self.sock.sendto(reply, source)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()
