"""What the diagnose unit tests share: a client config, a check's context, small local servers.

Every server listens on 127.0.0.1 (a port the kernel picks) and is stopped by the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext, DiagnoseContext, DiagnoseOptions
from netsetup.keys import generate_keypair

CONTACT = "it@acme-dental.example"


def config_text(
    lines: list[str],
    dns: str | None = "127.0.0.1",
    allowed: str = "192.0.2.0/24, 198.18.10.0/24",
    address: str = "198.18.10.2/32",
    endpoint: str = "127.0.0.1:51820",
) -> str:
    keys = generate_keypair()
    gateway = generate_keypair()
    interface = [
        "[Interface]",
        f"PrivateKey = {keys.private.reveal()}",
        f"Address = {address}",
    ]
    if dns:
        interface.append(f"DNS = {dns}")
    return "\n".join(
        [
            f"# netsetup-diagnose: v=1 profile=acme-dental contact={CONTACT}",
            *[f"# netsetup-diagnose: {line}" for line in lines],
            *interface,
            "",
            "[Peer]",
            f"PublicKey = {gateway.public}",
            f"AllowedIPs = {allowed}",
            f"Endpoint = {endpoint}",
            "",
        ]
    )


def context(text: str, deadline_s: float = 10.0) -> DiagnoseContext:
    return DiagnoseContext(ClientConfig.parse(text), options=DiagnoseOptions(deadline_s=deadline_s))


def view(ctx: DiagnoseContext, budget_s: float = 5.0) -> CheckContext:
    return CheckContext(ctx, time.monotonic() + budget_s)


@contextmanager
def tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that runs `handle(conn)` per connection; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_guarded, args=(handle, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _guarded(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
    with conn:
        try:
            conn.settimeout(5)
            handle(conn)
        except OSError:
            pass


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
