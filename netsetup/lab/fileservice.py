"""A small TCP service standing in for the office's file server and document portal.

It greets every connection with one line naming the service, then echoes what it receives, so a
probe can tell "connected to the right host and port" from "something else answered". It runs
inside the office namespace: `python -m netsetup.lab.fileservice --listen 192.0.2.30:445 ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

GREETING = "netsetup-lab file-service"
MAX_ECHO = 64 * 1024


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host, port = writer.get_extra_info("sockname")[:2]
    writer.write(f"{GREETING} {host}:{port}\r\n".encode())
    echoed = 0
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await writer.drain()
        while echoed < MAX_ECHO:
            data = await asyncio.wait_for(reader.read(4096), timeout=30)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            echoed += len(data)
    writer.close()


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(endpoints: list[str]) -> None:
    servers = [await asyncio.start_server(_serve_one, *_split(e)) for e in endpoints]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", required=True, help="ADDRESS:PORT")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
