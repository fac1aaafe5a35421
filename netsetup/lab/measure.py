"""The classic tools the lab compares diagnose's figures with: `iperf3` (throughput with several
streams) and `ping` (round trips), run in the lab's namespaces. For lab tests and benchmarks only
(root, Linux): diagnose itself never shells out.
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netsetup.lab.proc import LabError, in_ns

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

IPERF_PORT = 5201
_RTT = re.compile(r"time=([0-9.]+) ms")


@contextlib.contextmanager
def iperf3_server(lab: Lab, host: str, address: str, port: int = IPERF_PORT) -> Iterator[None]:
    """`iperf3 -s` on `address` in `host`'s namespace for the block; stopped (and waited for)
    after it."""
    argv = ["iperf3", "-s", "-B", address, "-p", str(port)]
    process = subprocess.Popen(
        in_ns(lab.ns(host), argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)  # listening
        if process.poll() is not None:
            raise LabError(f"iperf3 -s on {address} ended at once (code {process.returncode})")
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class Throughput:
    sent_bps: float
    received_bps: float


def iperf3(
    lab: Lab,
    host: str,
    server: str,
    *,
    seconds: float = 5.0,
    streams: int = 4,
    reverse: bool = False,
    port: int = IPERF_PORT,
) -> Throughput:
    """`iperf3 -c server -P streams -t seconds [-R] --json` from `host`: the receiver's rate is
    what got through."""
    argv = ["iperf3", "-c", server, "-p", str(port), "-P", str(streams), "-t", f"{seconds:g}"]
    argv += ["-R"] if reverse else []
    done = subprocess.run(
        in_ns(lab.ns(host), [*argv, "--json"]),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    try:
        end = json.loads(done.stdout)["end"]
        return Throughput(
            float(end["sum_sent"]["bits_per_second"]),
            float(end["sum_received"]["bits_per_second"]),
        )
    except (ValueError, KeyError) as exc:
        raise LabError(f"iperf3 gave no result: {done.stdout[-300:]} {done.stderr[-300:]}") from exc


def start_iperf3(
    lab: Lab, host: str, server: str, *, seconds: float, streams: int = 4, reverse: bool = False
) -> subprocess.Popen[str]:
    """iperf3 as a background load (the caller waits for it)."""
    argv = ["iperf3", "-c", server, "-p", str(IPERF_PORT), "-P", str(streams)]
    argv += ["-t", f"{seconds:g}"] + (["-R"] if reverse else [])
    return subprocess.Popen(
        in_ns(lab.ns(host), argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )


def ping_rtts(
    lab: Lab, host: str, target: str, *, count: int = 20, interval: float = 0.1
) -> list[float]:
    """The round trips (ms) `ping` measured from `host` to `target`; lost ones are missing."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "2", target]
    done = subprocess.run(
        in_ns(lab.ns(host), argv),
        capture_output=True,
        text=True,
        timeout=count * interval + 15,
        check=False,
    )
    return [float(x) for x in _RTT.findall(done.stdout)]


def median(values: list[float]) -> float:
    if not values:
        raise LabError("no value to take the median of (every probe lost?)")
    return float(statistics.median(values))
