"""Speed tests in a child process that is killed at its deadline (see speedrun.py for why).

`SpeedChild` starts `python -m netsetup.diagnose.speedrun` in a new session (a new process group
on Windows), gives it the request on stdin and reads its JSON lines in a thread: `started(...)`
says when a direction's load began (bufferbloat measures the loaded RTT from then), `result(...)`
waits for the outcome until a deadline and then kills the whole group. A hang in speedtest-cli
never blocks the report; children still alive when the program exits are killed too, and so
they are when it is ended by SIGTERM (a handler kills their groups) or dies any other way (on
Linux the child asks the kernel for SIGKILL when its parent dies: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class SpeedResult:
    """What one speed test measured (None: not measured), or why it could not."""

    download_bps: float | None = None
    upload_bps: float | None = None
    ping_ms: float | None = None
    bytes_received: int | None = None
    bytes_sent: int | None = None
    error: str | None = None
    timed_out: bool = False

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SpeedResult:
        def number(name: str) -> float | None:
            value = record.get(name)
            return float(value) if isinstance(value, int | float) else None

        def count(name: str) -> int | None:
            value = record.get(name)
            return int(value) if isinstance(value, int) else None

        return cls(
            download_bps=number("download_bps"),
            upload_bps=number("upload_bps"),
            ping_ms=number("ping_ms"),
            bytes_received=count("bytes_received"),
            bytes_sent=count("bytes_sent"),
        )


@dataclass
class _Events:
    started: dict[str, float] = field(default_factory=dict)  # direction -> time.monotonic()
    result: SpeedResult | None = None
    done: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)


def _spawn_options() -> dict[str, Any]:
    from netsetup.diagnose.speedrun import PARENT_ENV

    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP, "env": env}
    return {"start_new_session": True, "env": env}


_SIGTERM_LOCK = threading.Lock()
_sigterm_installed = False


def kill_children_on_sigterm() -> None:
    """Install (once, from the main thread) a SIGTERM handler that kills every live speed child's
    group and then does what SIGTERM did before (the previous handler, or the default: the
    process ends)."""
    global _sigterm_installed
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return
    with _SIGTERM_LOCK:
        if _sigterm_installed:
            return
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            _kill_live_children()
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
        _sigterm_installed = True


class SpeedChild:
    """One speed test running in a child process."""

    def __init__(self, request: dict[str, Any]) -> None:
        kill_children_on_sigterm()
        self._events = _Events()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "netsetup.diagnose.speedrun"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            **_spawn_options(),
        )
        with _LIVE_LOCK:
            _LIVE.add(self._process)
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.close()
        except OSError:  # it died at once: the reader reports that
            pass
        self._reader = threading.Thread(target=self._read, name="speed child", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._take(record)
        with self._events.changed:
            if self._events.result is None:
                self._events.result = SpeedResult(error="the speed test ended without a result")
            self._events.done.set()
            self._events.changed.notify_all()

    def _take(self, record: dict[str, Any]) -> None:
        with self._events.changed:
            if record.get("event") == "start":
                self._events.started[str(record.get("direction"))] = time.monotonic()
            elif isinstance(record.get("result"), dict):
                self._events.result = SpeedResult.from_record(record["result"])
            elif "error" in record:
                self._events.result = SpeedResult(error=str(record["error"])[:300])
            self._events.changed.notify_all()

    def started(self, direction: str, deadline: float) -> float | None:
        """When the `direction` load began (time.monotonic()), waiting until `deadline` at most;
        None if it did not (the test ended or failed first)."""
        with self._events.changed:
            while direction not in self._events.started and not self._events.done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._events.changed.wait(left)
            return self._events.started.get(direction)

    def result(self, deadline: float) -> SpeedResult:
        """The outcome, waiting until `deadline` (time.monotonic()); then the child is killed."""
        finished = self._events.done.wait(max(0.0, deadline - time.monotonic()))
        self.kill()
        if not finished or self._events.result is None:
            return SpeedResult(error="the speed test did not finish in time", timed_out=True)
        return self._events.result

    def kill(self) -> None:
        """End the child and everything it started (idempotent)."""
        _kill(self._process)
        with _LIVE_LOCK:
            _LIVE.discard(self._process)

    @property
    def pid(self) -> int:
        return self._process.pid


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            if sys.platform == "win32":
                process.kill()
            else:
                os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.wait(2)


def run_speedtest(request: dict[str, Any], timeout: float) -> SpeedResult:
    """Run one speed test; at most `timeout` seconds, whatever the child does."""
    child = SpeedChild(request)
    return child.result(time.monotonic() + timeout)


@atexit.register
def _kill_live_children() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
        _LIVE.clear()
    for process in live:
        _kill(process)


kill_children_on_sigterm()  # when imported by the main thread (else: by the first child's)
