"""The `dns` check: company names resolve through the tunnel's DNS server and the system's resolver.

Each name of the config's `dns-name` lines is asked directly at the config's DNS server(s)
(dnspython, through the tunnel) and then through the system's resolver (what the assistant's
programs use). A name the company's DNS does not know (NXDOMAIN) and a DNS server that does not
answer are failures for IT; a system that does not send company names to the tunnel's server is a
warning at most (Windows asks every adapter), naming the rule that is missing on this platform.

`company_lookup` and `system_lookup` are shared with `reach` and `ssh`: a name is asked once per
run, whichever check asks first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Metric, Outcome, Owner, Status

T = TypeVar("T")

DNS_PORT = 53
QUERY_TIMEOUT_S = 2.0  # one question to one server (a LAN answers in milliseconds)
RETRANSMIT_S = 0.4  # asked again after this long without an answer (a lost datagram)
SYSTEM_TIMEOUT_S = 1.0  # the system resolver, once the company's server has answered

# how a direct query ended
ANSWERED, NXDOMAIN, NO_ANSWER, NO_ADDRESS, NO_SERVER = (
    "answered",
    "nxdomain",
    "no-answer",
    "no-address",
    "no-server",
)


@dataclass(frozen=True)
class Lookup:
    """One name asked at one resolver: the addresses, or how it ended without them."""

    name: str
    result: str  # ANSWERED, NXDOMAIN, NO_ANSWER (timeout), NO_ADDRESS, NO_SERVER
    addresses: tuple[str, ...] = ()
    server: str | None = None
    ms: float | None = None
    detail: str = ""


def ask_it(ctx: CheckContext | DiagnoseContext) -> str:
    """'ask IT (it@example)': whom the assistant asks, with the contact when the config has it."""
    contact = ctx.info.contact
    return f"ask IT ({contact})" if contact else "ask the company's IT"


def call_with_timeout(function: Callable[[], T], timeout: float) -> tuple[bool, T | None]:
    """`function()` in a daemon thread; (True, value) when it ended within `timeout`, else
    (False, None). For calls with no timeout of their own (getaddrinfo); exceptions propagate."""
    box: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            box.append(function())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, name="call-with-timeout", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if error:
        raise error[0]
    return (True, box[0]) if box else (False, None)


def query_server(name: str, server: str, timeout: float) -> Lookup:
    """Ask `server` for the A (then AAAA) records of `name`, over UDP (TCP when truncated)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    started = time.monotonic()
    addresses: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            return Lookup(name, NO_ANSWER, server=server, detail="no answer in time")
        query = dns.message.make_query(name, rdtype)
        try:
            response = _retransmitted(query, server, started + timeout)
        except dns.exception.Timeout:
            return Lookup(name, NO_ANSWER, server=server, detail=f"no answer in {timeout:g} s")
        except (OSError, dns.exception.DNSException) as exc:
            return Lookup(name, NO_ANSWER, server=server, detail=str(exc) or type(exc).__name__)
        ms = (time.monotonic() - started) * 1000
        if response.rcode() == dns.rcode.NXDOMAIN:
            return Lookup(name, NXDOMAIN, server=server, ms=ms)
        for rrset in response.answer:
            addresses += [r.to_text() for r in rrset if r.rdtype == rdtype]
        if addresses:
            return Lookup(name, ANSWERED, tuple(addresses), server, ms)
    ms = (time.monotonic() - started) * 1000
    return Lookup(name, NO_ADDRESS, server=server, ms=ms)


def _retransmitted(query: Any, server: str, until: float) -> Any:
    """The answer to `query`, sent again every RETRANSMIT_S until `until` (time.monotonic()),
    as every resolver does: one lost datagram on a lossy line is not a broken DNS."""
    import dns.exception
    import dns.query

    while True:
        left = until - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        try:
            response, _ = dns.query.udp_with_fallback(
                query, server, timeout=min(RETRANSMIT_S, left), port=DNS_PORT
            )
            return response
        except dns.exception.Timeout:
            continue


def _ask_servers(name: str, servers: Sequence[str], ctx: CheckContext) -> Lookup:
    if not servers:
        return Lookup(name, NO_SERVER, detail="the config has no DNS = line")
    last = Lookup(name, NO_ANSWER)
    for server in servers:
        last = query_server(name, server, ctx.time_left(QUERY_TIMEOUT_S))
        if last.result != NO_ANSWER:
            return last
    return last


def company_lookup(ctx: CheckContext, name: str) -> Lookup:
    """`name` asked at the config's DNS servers (once per run, shared by the checks)."""
    servers = [str(s) for s in ctx.config.dns_servers]
    return ctx.once(f"dns.company:{name}", lambda: _ask_servers(name, servers, ctx))


def _getaddrinfo(name: str) -> tuple[str, ...]:
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _system(name: str, timeout: float) -> Lookup:
    started = time.monotonic()
    try:
        done, found = call_with_timeout(lambda: _getaddrinfo(name), timeout)
    except socket.gaierror as exc:
        unknown = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5))
        return Lookup(name, NXDOMAIN if unknown else NO_ANSWER, detail=exc.strerror or "")
    except OSError as exc:
        return Lookup(name, NO_ANSWER, detail=str(exc))
    ms = (time.monotonic() - started) * 1000
    if not done or found is None:
        return Lookup(name, NO_ANSWER, detail=f"no answer in {timeout:g} s")
    return Lookup(name, ANSWERED, found, ms=ms)


def system_lookup(ctx: CheckContext, name: str) -> Lookup:
    """`name` through the system's resolver (getaddrinfo), bounded by the check's time."""
    return ctx.once(f"dns.system:{name}", lambda: _system(name, ctx.time_left(SYSTEM_TIMEOUT_S)))


def resolve_target(ctx: CheckContext, host: str) -> tuple[list[str], str | None]:
    """The addresses of a target's name: the company's DNS first (as the tunnel serves it),
    then the system's resolver. ([], why) when neither knows it."""
    company = company_lookup(ctx, host)
    if company.result == ANSWERED:
        return list(company.addresses), None
    if company.result == NXDOMAIN:
        return [], f"the company's DNS does not know {host}"
    system = system_lookup(ctx, host)
    if system.result == ANSWERED:
        return list(system.addresses), None
    return [], f"{host} does not resolve ({company.detail or system.detail or company.result})"


# -- the check -----------------------------------------------------------------------------------


def _domain_of(ctx: CheckContext, names: Sequence[str]) -> str:
    """The company's domain: the config's search domain, else the names' common suffix."""
    if ctx.config.search_domains:
        return ctx.config.search_domains[0].rstrip(".").lower()
    parts = [n.rstrip(".").lower().split(".")[1:] for n in names]
    common: list[str] = []
    for labels in zip(*(reversed(p) for p in parts), strict=False):
        if len(set(labels)) != 1:
            break
        common.insert(0, labels[0])
    return ".".join(common) or names[0].split(".", 1)[-1]


class DnsCheck(Check):
    id = "dns"
    title = "Company names resolve through the tunnel"
    budget_s = 3.0
    needs = ("tunnel.handshake",)

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def run(self, ctx: CheckContext) -> Outcome:
        servers = [str(s) for s in ctx.config.dns_servers]
        if not servers:
            return Outcome.skip(
                "the config names no DNS server (no DNS = line): company names are not checked"
            )
        direct = _parallel([lambda n=n: company_lookup(ctx, n) for n in self.names])  # type: ignore[misc]
        problem = _server_problem(ctx, direct, servers) or _unknown_names(ctx, direct)
        if problem is not None:
            return problem
        system = _parallel(
            [lambda n=d.name: system_lookup(ctx, n) for d in direct if d.result == ANSWERED]  # type: ignore[misc]
        )
        return _judge_system(ctx, direct, system, servers)


def _parallel(calls: Sequence[Callable[[], Lookup]]) -> list[Lookup]:
    """Run lookups at once (each bounds its own time); results in the order of `calls`."""
    results: list[Lookup | None] = [None] * len(calls)

    def one(index: int) -> None:
        results[index] = calls[index]()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def _metrics(lookups: Sequence[Lookup]) -> dict[str, Metric]:
    return {
        d.name: {"result": d.result, "addresses": list(d.addresses), "ms": _round(d.ms)}
        for d in lookups
    }


def _round(ms: float | None) -> float | None:
    return round(ms, 1) if ms is not None else None


def _server_problem(ctx: CheckContext, direct: list[Lookup], servers: list[str]) -> Outcome | None:
    silent = [d for d in direct if d.result == NO_ANSWER]
    if not silent:
        return None
    listed = ", ".join(servers)
    if len(silent) == len(direct):
        summary = f"the company's DNS server ({listed}) does not answer through the tunnel"
    else:
        names = ", ".join(d.name for d in silent)
        summary = f"the company's DNS server ({listed}) did not answer for {names}"
    return Outcome.problem(
        Status.fail,
        summary,
        f"{ask_it(ctx)} to check the DNS service on {listed}: "
        "company names cannot be found while it does not answer",
        Owner.it,
        servers=servers,
        direct=_metrics(direct),
    )


def _unknown_names(ctx: CheckContext, direct: list[Lookup]) -> Outcome | None:
    missing = [d.name for d in direct if d.result in (NXDOMAIN, NO_ADDRESS)]
    if not missing:
        return None
    listed = ", ".join(missing)
    return Outcome.problem(
        Status.fail,
        f"the company's DNS does not know {listed}",
        f"{ask_it(ctx)} to add {listed} to the company's DNS",
        Owner.it,
        unknown=missing,
        direct=_metrics(direct),
    )


def _judge_system(
    ctx: CheckContext, direct: list[Lookup], system: list[Lookup], servers: list[str]
) -> Outcome:
    from netsetup.diagnose.platform.dns import missing_rule, read_policy

    metrics: dict[str, Metric] = {"servers": servers, "direct": _metrics(direct)}
    metrics["system"] = _metrics(system)
    wrong = [
        s.name
        for d, s in zip(direct, system, strict=True)
        if s.result != ANSWERED or not set(s.addresses) & set(d.addresses)
    ]
    policy = read_policy()
    domain = _domain_of(ctx, [d.name for d in direct])
    routed_to = list(policy.servers_for(domain)) if policy.readable else []
    metrics["policy"] = {"source": policy.source, "readable": policy.readable, "note": policy.note}
    metrics["policy_servers"] = routed_to
    leaked = [s for s in routed_to if s not in servers]
    if not wrong and not leaked:
        slowest = max((d.ms or 0.0 for d in direct), default=0.0)
        return Outcome(
            Status.passed,
            f"{len(direct)} company names resolve through the tunnel's DNS ({', '.join(servers)}) "
            f"and the system's resolver (slowest {slowest:.0f} ms)",
            metrics,
        )
    rule = missing_rule(domain, servers)
    if wrong:
        summary = (
            f"the system's resolver does not give the company's answer for {', '.join(wrong)}: "
            "it does not ask the tunnel's DNS"
        )
    else:
        summary = (
            f"company names may also go to other DNS servers ({', '.join(leaked)}), "
            "not only the tunnel's"
        )
    return Outcome.problem(
        Status.warn, summary, f"{ask_it(ctx)} to set up {rule}", Owner.it, **metrics
    )


@register_family("dns")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    if not ctx.info.dns_names:
        return ()
    return (DnsCheck(ctx.info.dns_names),)
