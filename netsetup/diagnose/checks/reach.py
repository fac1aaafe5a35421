"""The `reach.<name>` checks: each diagnose target of kind tcp, https or rdp answers.

- `tcp`: the TCP connection is accepted (its connect time is measured);
- `https`: the TLS handshake and the HTTP status of `HEAD /` (the portal). A certificate this
  computer does not trust (the lab's is self-signed) is a warning, never a failure: the profile
  pins no certificate, and the portal still works once the assistant accepts it;
- `rdp`: an X.224 Connection Request with an RDP negotiation request must get a Connection
  Confirm, so a port that accepts TCP but is not a remote desktop is told apart.

A refused connection (RST) and no answer at all are failures for IT, worded so the assistant
can pass them on. A name that does not resolve skips, pointing at the `dns` check.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netsetup.diagnose.checks.dns import ask_it, resolve_target
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Metric, Outcome, Owner, Status
from netsetup.profile.model import Target

if TYPE_CHECKING:
    import ssl

DEFAULT_PORTS = {"tcp": 0, "https": 443, "rdp": 3389, "ssh": 22}
REACH_KINDS = ("tcp", "https", "rdp")
CONNECT_TIMEOUT_S = 3.0
WHAT = {"tcp": "service", "https": "web portal", "rdp": "remote desktop", "ssh": "SSH server"}


def target_port(target: Target) -> int:
    return target.port or DEFAULT_PORTS[target.kind]


def shown(target: Target) -> str:
    """`files.acme-dental.example:445`: how the assistant and IT name the target."""
    host = target.host
    text = f"[{host}]" if isinstance(host, ipaddress.IPv6Address) else str(host)
    return f"{text}:{target_port(target)}"


def through_tunnel(ctx: DiagnoseContext, target: Target) -> bool:
    """True when the target's traffic goes through the tunnel: its address is in AllowedIPs, or
    it is a name (a company name, answered by the company's DNS)."""
    if isinstance(target.host, str):
        return True
    return any(
        target.host.version == net.version and target.host in net for net in ctx.config.allowed_ips
    )


def needs_for(ctx: DiagnoseContext, target: Target) -> tuple[str, ...]:
    return ("tunnel.handshake",) if through_tunnel(ctx, target) else ()


@dataclass(frozen=True)
class Connected:
    sock: socket.socket
    address: str
    connect_ms: float


class Unreachable(Exception):
    """The target could not be reached; carries the finished outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


def connect(ctx: CheckContext, target: Target, label: str) -> Connected:
    """A TCP connection to the target (its name resolved first), or Unreachable with the
    outcome that says why: skip (the name), fail (refused, no answer) for IT."""
    port = target_port(target)
    if isinstance(target.host, str):
        addresses, why = resolve_target(ctx, target.host)
        if not addresses:
            raise Unreachable(Outcome.skip(f"not checked: {why}; see the dns check"))
    else:
        addresses = [str(target.host)]
    address = addresses[0]
    started = time.monotonic()
    try:
        sock = socket.create_connection((address, port), timeout=ctx.time_left(CONNECT_TIMEOUT_S))
    except ConnectionRefusedError:
        raise Unreachable(_refused(ctx, target, label, address)) from None
    except TimeoutError:
        raise Unreachable(_silent(ctx, target, label, address)) from None
    except OSError as exc:
        raise Unreachable(_unreachable(ctx, target, label, address, exc)) from None
    return Connected(sock, address, (time.monotonic() - started) * 1000)


def _refused(ctx: CheckContext, target: Target, label: str, address: str) -> Outcome:
    return Outcome.problem(
        Status.fail,
        f"the {label} ({shown(target)}) refuses connections",
        f"{ask_it(ctx)} to check the {label} on {shown(target)}: it refuses connections "
        "(the service is stopped or a firewall rejects it)",
        Owner.it,
        address=address,
        port=target_port(target),
        error="refused",
    )


def _silent(ctx: CheckContext, target: Target, label: str, address: str) -> Outcome:
    return Outcome.problem(
        Status.fail,
        f"the {label} ({shown(target)}) does not answer: the connection attempt got no reply",
        f"{ask_it(ctx)} whether the {label} on {shown(target)} is up and whether a firewall "
        "drops connections to it",
        Owner.it,
        address=address,
        port=target_port(target),
        error="no answer",
    )


def _unreachable(
    ctx: CheckContext, target: Target, label: str, address: str, exc: OSError
) -> Outcome:
    return Outcome.problem(
        Status.fail,
        f"the {label} ({shown(target)}) cannot be reached: {exc.strerror or exc}",
        f"{ask_it(ctx)} to check the route to {address} (the tunnel's AllowedIPs)",
        Owner.it,
        address=address,
        port=target_port(target),
        error=exc.strerror or str(exc),
    )


# -- by kind --------------------------------------------------------------------------------------


def probe_tcp(ctx: CheckContext, target: Target, c: Connected) -> Outcome:
    return Outcome.passed(
        f"the {_label(target)} ({shown(target)}) accepts connections "
        f"({c.connect_ms:.0f} ms to connect)",
        address=c.address,
        port=target_port(target),
        connect_ms=round(c.connect_ms, 1),
    )


def _label(target: Target) -> str:
    """'web portal' for a target named portal, 'service fileserver' otherwise."""
    what = WHAT[target.kind]
    return what if target.name in what.split() else f"{what} {target.name}"


@functools.lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per kind for the run: loading the CA store takes a while, and it is done
    before connecting (a server waits only so long for the ClientHello)."""
    import ssl

    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _handshake(
    ctx: CheckContext, target: Target, verify: bool, c: Connected | None = None
) -> tuple[ssl.SSLSocket, Connected, float]:
    """The TLS session on `c` (a new connection when None), and the handshake's milliseconds."""
    c = c or connect(ctx, target, _label(target))
    context = _tls_context(verify)
    hostname = str(target.host)  # an address is checked against the certificate's IP names
    c.sock.settimeout(ctx.time_left(CONNECT_TIMEOUT_S))
    started = time.monotonic()
    try:
        tls = context.wrap_socket(c.sock, server_hostname=hostname)
        return tls, c, (time.monotonic() - started) * 1000
    except BaseException:
        c.sock.close()
        raise


def _http_status(ctx: CheckContext, tls: ssl.SSLSocket, target: Target) -> int:
    import http.client

    tls.settimeout(ctx.time_left(CONNECT_TIMEOUT_S))
    host = target.host if isinstance(target.host, str) else str(target.host)
    tls.sendall(
        f"HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netsetup-diagnose\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    response = http.client.HTTPResponse(tls, method="HEAD")
    response.begin()
    return response.status


def probe_https(ctx: CheckContext, target: Target, first: Connected) -> Outcome:
    import ssl

    label = _label(target)
    trust_problem = None
    try:
        try:
            tls, _, tls_ms = _handshake(ctx, target, verify=True, c=first)
        except ssl.SSLCertVerificationError as exc:
            trust_problem = exc.verify_message or str(exc)
            tls, _, tls_ms = _handshake(ctx, target, verify=False)
    except (ssl.SSLError, OSError) as exc:
        return _not_tls(ctx, target, first, exc)
    try:
        status = _http_status(ctx, tls, target)
    except (OSError, ValueError) as exc:  # http.client's errors are ValueError/OSError kinds
        return Outcome.problem(
            Status.fail,
            f"the {label} ({shown(target)}) does TLS but gives no web answer ({exc})",
            f"{ask_it(ctx)} to check the web server behind {shown(target)}",
            Owner.it,
            connect_ms=round(first.connect_ms, 1),
            tls_ms=round(tls_ms, 1),
        )
    finally:
        tls.close()
    return _judge_https(ctx, target, first, tls_ms, status, trust_problem)


def _not_tls(ctx: CheckContext, target: Target, c: Connected, exc: BaseException) -> Outcome:
    return Outcome.problem(
        Status.fail,
        f"something answers on {shown(target)}, but the TLS handshake failed ({exc})",
        f"{ask_it(ctx)} to check the web server's TLS setup on {shown(target)}",
        Owner.it,
        connect_ms=round(c.connect_ms, 1),
    )


def _judge_https(
    ctx: CheckContext,
    target: Target,
    c: Connected,
    tls_ms: float,
    status: int,
    trust_problem: str | None,
) -> Outcome:
    label = _label(target)
    metrics: dict[str, Metric] = {
        "address": c.address,
        "connect_ms": round(c.connect_ms, 1),
        "tls_ms": round(tls_ms, 1),
        "http_status": status,
        "certificate_trusted": trust_problem is None,
    }
    if status >= 500:
        return Outcome.problem(
            Status.fail,
            f"the {label} ({shown(target)}) answers with an error (HTTP {status})",
            f"{ask_it(ctx)} to check the portal's server: it answers HTTP {status}",
            Owner.it,
            **metrics,
        )
    if trust_problem is not None:
        return Outcome.problem(
            Status.warn,
            f"the {label} ({shown(target)}) answers (HTTP {status}), but this computer does not "
            f"trust its certificate ({trust_problem})",
            f"{ask_it(ctx)} for a certificate from a trusted authority on {shown(target)}, "
            "or for the company's certificate to install; do not accept unknown certificates",
            Owner.it,
            **metrics,
        )
    return Outcome(
        Status.passed,
        f"the {label} ({shown(target)}) answers over TLS (HTTP {status}, "
        f"{c.connect_ms + tls_ms:.0f} ms)",
        metrics,
    )


# RDP: TPKT (RFC 1006) around an X.224 Connection Request carrying an RDP Negotiation Request
# ([MS-RDPBCGR] 2.2.1.1) that offers TLS and CredSSP.
_RDP_COOKIE = b"Cookie: mstshash=netsetup\r\n"
_RDP_NEG_REQ = struct.pack("<BBHI", 0x01, 0x00, 8, 0x00000003)
X224_CONNECTION_CONFIRM = 0xD0


def rdp_connection_request() -> bytes:
    body = _RDP_COOKIE + _RDP_NEG_REQ
    x224 = bytes([6 + len(body), 0xE0, 0, 0, 0, 0, 0]) + body
    return struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224


def is_connection_confirm(reply: bytes) -> bool:
    """A TPKT (version 3) holding an X.224 Connection Confirm."""
    return len(reply) >= 7 and reply[0] == 3 and reply[5] & 0xF0 == X224_CONNECTION_CONFIRM


def _read_reply(ctx: CheckContext, sock: socket.socket) -> bytes:
    reply = b""
    while len(reply) < 11:
        sock.settimeout(max(0.05, ctx.time_left(CONNECT_TIMEOUT_S)))
        try:
            chunk = sock.recv(64)
        except TimeoutError:
            break
        if not chunk:
            break
        reply += chunk
        if reply[:1] != b"\x03":
            break  # not TPKT: no need to wait for more
    return reply


def probe_rdp(ctx: CheckContext, target: Target, c: Connected) -> Outcome:
    started = time.monotonic()
    try:
        c.sock.sendall(rdp_connection_request())
        reply = _read_reply(ctx, c.sock)
    except OSError:
        reply = b""
    finally:
        c.sock.close()
    metrics: dict[str, Metric] = {"address": c.address, "connect_ms": round(c.connect_ms, 1)}
    if not is_connection_confirm(reply):
        heard = "no reply" if not reply else f"{len(reply)} bytes that are not RDP"
        return Outcome.problem(
            Status.fail,
            f"something answers on {shown(target)} but it is not a remote desktop ({heard})",
            f"{ask_it(ctx)} to check the remote desktop of {target.name} on {shown(target)}: "
            "another program holds its port, or the address is wrong",
            Owner.it,
            reply_bytes=len(reply),
            **metrics,
        )
    rdp_ms = (time.monotonic() - started) * 1000
    return Outcome.passed(
        f"the remote desktop {target.name} ({shown(target)}) answers "
        f"({c.connect_ms + rdp_ms:.0f} ms)",
        rdp_ms=round(rdp_ms, 1),
        **metrics,
    )


PROBES = {"tcp": probe_tcp, "https": probe_https, "rdp": probe_rdp}


class ReachCheck(Check):
    budget_s = 4.0

    def __init__(self, target: Target, needs: tuple[str, ...]) -> None:
        self.target = target
        self.id = f"reach.{target.name}"
        self.title = f"{WHAT[target.kind].capitalize()} {target.name} ({shown(target)}) answers"
        self.needs = needs

    def run(self, ctx: CheckContext) -> Outcome:
        if self.target.kind == "https":
            _tls_context(True), _tls_context(False)  # ready before the connection is
        try:
            connected = connect(ctx, self.target, _label(self.target))
        except Unreachable as exc:
            return exc.outcome
        try:
            return PROBES[self.target.kind](ctx, self.target, connected)
        except Unreachable as exc:  # a second connection (https without trust) failed
            return exc.outcome
        finally:
            connected.sock.close()


@register_family("reach")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return [
        ReachCheck(t, needs_for(ctx, t))
        for t in ctx.info.targets
        if t.kind in REACH_KINDS and (t.port or DEFAULT_PORTS[t.kind])
    ]
