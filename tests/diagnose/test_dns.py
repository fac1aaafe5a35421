"""The dns check against a DNS server on 127.0.0.1 (dnspython answering from a dict), and the
platform's DNS policy readers (resolv.conf, /etc/resolver, NRPT)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from netsetup.diagnose.checks import dns as dns_check
from netsetup.diagnose.platform import dns as policy
from netsetup.diagnose.result import Outcome, Owner, Status

from .helpers import config_text, context, view

ZONE = {"localhost.": "127.0.0.1", "files.acme-dental.example.": "192.0.2.30"}


@pytest.fixture
def dns_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A DNS server on 127.0.0.1 (a free port the check is pointed at) answering from a dict;
    names not in it get NXDOMAIN. Yields the dict, which the test may change."""
    zone = dict(ZONE)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            if name not in zone:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", zone[name]))
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setattr(dns_check, "DNS_PORT", sock.getsockname()[1])
    try:
        yield zone
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@pytest.fixture
def resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's resolv.conf as the policy reader sees it: the tunnel's server only."""
    path = tmp_path / "resolv.conf"
    path.write_text("search acme-dental.example\nnameserver 127.0.0.1\n")
    monkeypatch.setattr(policy, "RESOLV_CONF", path)
    return path


def run(names: list[str], dns_line: str | None = "127.0.0.1", budget: float = 3.0) -> Outcome:
    lines = [f"dns-name={n}" for n in names]
    ctx = context(config_text(lines, dns=dns_line))
    checks = list(dns_check.checks(ctx))
    if not names:
        assert checks == []
        return Outcome.skip("no names")
    (check,) = checks
    assert check.id == "dns" and check.needs == ("tunnel.handshake",)
    started = time.monotonic()
    outcome = check.run(view(ctx, budget))
    assert time.monotonic() - started < budget + 0.5
    return outcome


def test_names_answered_by_the_tunnel_dns_and_the_system_pass(
    dns_server: dict[str, str], resolv_conf: Path
) -> None:
    # localhost: the system resolver knows it too (from /etc/hosts), with the same address
    outcome = run(["localhost"])
    assert outcome.status is Status.passed, outcome
    direct = outcome.metrics["direct"]
    assert isinstance(direct, dict) and direct["localhost"]["addresses"] == ["127.0.0.1"]


def test_unknown_name_fails_for_it_naming_it(dns_server: dict[str, str], resolv_conf: Path) -> None:
    outcome = run(["localhost", "mail.acme-dental.example"])
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert outcome.summary == "the company's DNS does not know mail.acme-dental.example"
    assert outcome.fix and "add mail.acme-dental.example" in outcome.fix
    assert "it@acme-dental.example" in outcome.fix


def test_silent_dns_server_fails_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # bound, never answers
    monkeypatch.setattr(dns_check, "DNS_PORT", sock.getsockname()[1])
    try:
        outcome = run(["files.acme-dental.example", "localhost"], budget=2.0)
    finally:
        sock.close()
    assert outcome.status is Status.fail and outcome.owner is Owner.it
    assert "does not answer" in outcome.summary and outcome.fix and "127.0.0.1" in outcome.fix


def test_system_resolver_not_asking_the_tunnel_dns_is_a_warning_with_the_rule(
    dns_server: dict[str, str], resolv_conf: Path
) -> None:
    # the company's server knows files.acme-dental.example; the system's resolver does not
    outcome = run(["files.acme-dental.example"])
    assert outcome.status is Status.warn and outcome.owner is Owner.it
    assert "does not ask the tunnel's DNS" in outcome.summary
    assert outcome.fix and "acme-dental.example" in outcome.fix


def test_home_resolver_in_the_policy_is_a_warning(
    dns_server: dict[str, str], resolv_conf: Path
) -> None:
    resolv_conf.write_text("nameserver 198.51.100.1\nnameserver 127.0.0.1\n")
    outcome = run(["localhost"])
    assert outcome.status is Status.warn
    assert "198.51.100.1" in outcome.summary


def test_no_dns_line_skips_and_no_names_plans_nothing() -> None:
    assert run(["localhost"], dns_line=None).status is Status.skip
    run([])


# -- the platform's DNS policy -------------------------------------------------------------------


def test_resolv_conf_is_read(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# comment\nnameserver 192.0.2.53\nnameserver 192.0.2.54 # x\nsearch a.example\n"
    )
    read = policy.read_resolv_conf(path)
    assert read.readable and read.servers == ("192.0.2.53", "192.0.2.54")
    assert read.search == ("a.example",)
    assert read.servers_for("files.a.example") == ("192.0.2.53", "192.0.2.54")


def test_systemd_stub_and_missing_file_say_the_policy_cannot_be_read(tmp_path: Path) -> None:
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\n")
    assert not policy.read_resolv_conf(stub).readable
    assert "resolvectl" in policy.read_resolv_conf(stub).note
    assert not policy.read_resolv_conf(tmp_path / "none").readable


def test_macos_resolver_files_route_a_domain(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 192.168.1.1\n")
    (tmp_path / "resolver").mkdir()
    (tmp_path / "resolver" / "acme-dental.example").write_text("nameserver 192.0.2.53\n")
    read = policy._macos(tmp_path / "resolv.conf", tmp_path / "resolver")
    assert read.servers_for("files.acme-dental.example") == ("192.0.2.53",)
    assert read.servers_for("example.org") == ("192.168.1.1",)


def test_windows_nrpt_is_read_and_its_absence_is_said() -> None:
    outputs = {"Get-DnsClientNrptPolicy": ".acme-dental.example=192.0.2.53\n"}

    def runner(argv: list[str], timeout: float) -> str | None:
        script = argv[-1]
        if "Nrpt" in script:
            return outputs.get("Get-DnsClientNrptPolicy")
        return "192.168.1.1\n192.0.2.53\n"

    read = policy.read_policy("win32", runner)
    assert read.readable and read.source == "NRPT"
    assert read.servers_for("files.acme-dental.example") == ("192.0.2.53",)
    assert read.servers_for("example.org") == ("192.168.1.1", "192.0.2.53")
    outputs.clear()
    assert not policy.read_policy("win32", lambda argv, t: None).readable


def test_missing_rule_names_the_platforms_setting() -> None:
    assert "NRPT" in policy.missing_rule("acme.example", ["192.0.2.53"], "win32")
    assert "/etc/resolver/acme.example" in policy.missing_rule(
        "acme.example", ["192.0.2.53"], "darwin"
    )
    assert "~acme.example" in policy.missing_rule("acme.example", ["192.0.2.53"], "linux")
    assert not policy.read_policy("plan9").readable
