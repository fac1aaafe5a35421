"""The company's web portal in the lab: HTTPS for browsers, the file-service greeting for probes.

A client that speaks first with a TLS ClientHello gets a TLS session (the lab's self-signed
certificate) and `200 OK` for any HTTP request, so `reach.<portal>` sees a real TLS handshake and
an HTTP status. A client that waits is greeted like the file service (`netsetup-lab file-service
ADDRESS:PORT`, then an echo), as the lab's reachability probes expect of every office port.
It runs inside the office namespace:
`python -m netsetup.lab.portalservice --cert C --key K --listen 192.0.2.20:443`.
"""

from __future__ import annotations

import argparse
import signal
import socket
import ssl
import threading
from types import FrameType

from netsetup.lab.fileservice import GREETING, MAX_ECHO

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello
WAIT_FOR_CLIENT_S = 0.5  # a client that says nothing by then gets the greeting
BODY = b"netsetup-lab portal\n"


def _https(conn: socket.socket, context: ssl.SSLContext) -> None:
    with context.wrap_socket(conn, server_side=True) as tls:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 16384:
            chunk = tls.recv(4096)
            if not chunk:
                return
            request += chunk
        head = request.split(b" ", 1)[0] == b"HEAD"
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
            + (b"" if head else BODY)
        )


def _greet(conn: socket.socket) -> None:
    host, port = conn.getsockname()[:2]
    conn.sendall(f"{GREETING} {host}:{port}\r\n".encode())
    echoed = 0
    conn.settimeout(30)
    while echoed < MAX_ECHO:
        data = conn.recv(4096)
        if not data:
            return
        conn.sendall(data)
        echoed += len(data)


def _serve_one(conn: socket.socket, context: ssl.SSLContext) -> None:
    with conn:
        try:
            conn.settimeout(WAIT_FOR_CLIENT_S)
            try:
                first = conn.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                first = b""
            conn.settimeout(10)
            if first and first[0] == TLS_HANDSHAKE:
                _https(conn, context)
            else:
                _greet(conn)
        except (OSError, ssl.SSLError):
            return


def _listen(endpoint: str) -> socket.socket:
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(64)
    return sock


def _accept_loop(listener: socket.socket, context: ssl.SSLContext) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_one, args=(conn, context), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", required=True, help="ADDRESS:PORT")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    listeners = [_listen(e) for e in args.listen]
    for listener in listeners:
        threading.Thread(target=_accept_loop, args=(listener, context), daemon=True).start()
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    stop.wait()
    for listener in listeners:
        listener.close()


if __name__ == "__main__":
    main()
