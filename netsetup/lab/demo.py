"""`netsetup lab demo`: up, provision an assistant, bring the tunnel up, show it working, down.

The checks are the same measurements the lab tests make, from the assistant's machine through
the tunnel: the gateway, the company DNS, SIP OPTIONS over each transport, the SSH banner and the
file server's port. It ends with `netsetup diagnose`, as the assistant would run it at home.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netsetup.lab import probe
from netsetup.lab.lab import Lab
from netsetup.lab.proc import require_root
from netsetup.profile.model import Profile


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DemoResult:
    prefix: str
    handshake_s: float | None
    up_s: float
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.handshake_s is not None and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "prefix": self.prefix,
            "ok": self.ok,
            "up_s": round(self.up_s, 3),
            "handshake_s": round(self.handshake_s, 3) if self.handshake_s is not None else None,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def tunnel_checks(lab: Lab, host: str = "home") -> list[Check]:
    """What an assistant in dedicated mode should be able to use through the tunnel."""
    profile = lab.profile()
    ns = lab.ns(host)
    checks: list[Check] = []
    gateway = str(profile.network.gateway_address_v4)
    pinged = probe.ping(ns, gateway, count=2, interval=0.2)
    checks.append(Check(f"ping gateway {gateway}", pinged.ok, f"{pinged.received}/{pinged.sent}"))
    for server in profile.dns.servers:
        for name, address in profile.dns.records:
            answer = probe.dns_lookup(ns, str(server), name)
            got = answer.detail.get("answers", [])
            checks.append(Check(f"dns {name}", str(address) in got, answer.error or ", ".join(got)))
    if profile.voip is not None:
        for transport in profile.voip.transports:
            port = profile.voip.tls_port if transport == "tls" else profile.voip.sip_port
            sip = probe.sip_options(ns, str(profile.voip.sip_server), transport, port)
            status = sip.detail.get("status")
            checks.append(
                Check(
                    f"sip OPTIONS {transport}",
                    status == 200,
                    sip.error or f"{status} {sip.detail.get('reason', '')}",
                )
            )
    # SSH where the profile's diagnose targets expect it, else on the first office host
    ssh_targets = [
        (str(address), target.port or 22)
        for target in profile.diagnose.targets
        if target.kind == "ssh"
        for address in [_resolve(profile, target.host)]
        if address is not None
    ] or [(str(a), port) for a in lab.plan.office_hosts[:1] for port in lab.plan.ssh_ports]
    for host, port in ssh_targets:
        banner = probe.tcp_banner(ns, host, port)
        text = str(banner.detail.get("banner", ""))
        checks.append(Check(f"ssh {host}:{port}", text.startswith("SSH-"), banner.error or text))
    for service in lab.plan.tcp_services:
        banner = probe.tcp_banner(ns, str(service.host), service.port)
        checks.append(
            Check(
                f"{service.name} {service.host}:{service.port}",
                banner.ok,
                banner.error or str(banner.detail.get("banner", "")),
            )
        )
    return checks


def _resolve(profile: Profile, host: object) -> object | None:
    """An IP address as is, a name through the profile's DNS records (the lab's zone)."""
    if not isinstance(host, str):
        return host
    return next((address for name, address in profile.dns.records if name == host), None)


def diagnose_check(lab: Lab, echo: Callable[[str], None]) -> Check:
    """What the assistant would run at home: `netsetup diagnose`, its output shown as is. It
    passes when no check failed (exit 0; a warning is still shown)."""
    import re

    from netsetup.lab.diagnose import run_diagnose

    echo("netsetup diagnose, on the assistant's machine:")
    ran = run_diagnose(lab)
    for line in (ran.stdout + ran.stderr).splitlines():
        echo(f"  | {line}")
    verdict = re.search(r"(?m)^(PASS|WARN|UNKNOWN|FAIL): (.*)$", ran.stdout)
    detail = f"{verdict.group(1)}: {verdict.group(2)}" if verdict else f"exit {ran.returncode}"
    return Check("netsetup diagnose", ran.returncode == 0, detail)


def run_demo(profile: str | Path, echo: Callable[[str], None]) -> DemoResult:
    """Up, connect, check, down. The caller keeps SIGTERM turned into an interrupt (the CLI does)
    so the `finally` below also runs on SIGTERM; `down` itself defers signals until it is done."""
    require_root()
    started = time.monotonic()
    lab = Lab.create(profile)
    echo(f"lab {lab.prefix}: building namespaces, WireGuard gateway, SIP, SSH, DNS ...")
    try:
        lab.up()
        up_s = time.monotonic() - started
        echo(f"lab up in {up_s:.1f}s; provisioning assistant 'demo-assistant' (dedicated)")
        config = lab.provision("demo-assistant", "dedicated")
        echo(f"client config {config}; wg-quick up in home")
        lab.tunnel_up(config)
        handshake = lab.wait_handshake(timeout=15)
        echo(f"handshake after {handshake:.2f}s" if handshake is not None else "no handshake!")
        result = DemoResult(lab.prefix, handshake, up_s)
        result.checks = tunnel_checks(lab)
        result.checks.append(diagnose_check(lab, echo))
        return result
    finally:
        echo(f"tearing down lab {lab.prefix}")
        lab.down()
