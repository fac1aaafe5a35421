"""`gateway.admin_from`: the rendered ruleset lets only those sources reach the gateway's SSH,
per family, first in the input chain; without it SSH is left alone. Checked as text, by `nft -c`,
and with packets between two network namespaces this test makes."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.gateway.firewall import admin_rules, render_firewall
from netsetup.profile.model import Profile, SshTarget
from netsetup.profile.store import load_profile
from netsetup.profile.values import parse_network
from tests.lab.prereq import require_lab

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
REPO_PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def acme(admin_from: tuple[str, ...] = (), ssh: SshTarget | None = None) -> Profile:
    profile = load_profile(REPO_PROFILES / "acme-dental")
    gateway = replace(
        profile.gateway, admin_from=tuple(parse_network(n) for n in admin_from), ssh=ssh
    )
    return replace(profile, gateway=gateway)


def input_chain(ruleset: str) -> list[str]:
    lines = ruleset.split("\tchain input {\n", 1)[1].split("\n\t}\n", 1)[0].splitlines()
    return [line.strip() for line in lines]


def test_without_admin_from_ssh_is_left_alone() -> None:
    ruleset = render_firewall(acme(), [], NOW)
    assert admin_rules(acme()) == []
    assert "admin_from" not in ruleset and "dport 22 " not in ruleset


def test_admin_from_comes_first_in_input_per_family() -> None:
    profile = acme(("203.0.113.0/24", "203.0.113.7/32", "198.51.100.0/25"))
    chain = input_chain(render_firewall(profile, [], NOW))
    assert chain[0].startswith("type filter hook input")
    assert chain[1].startswith("# SSH (tcp 22) to the gateway only from gateway.admin_from")
    assert chain[2:4] == [
        # overlapping sources merged (nft refuses overlapping intervals in one set), sorted
        'iifname != "lo" tcp dport 22 ip saddr != { 198.51.100.0/25, 203.0.113.0/24 } drop '
        'comment "SSH only from admin_from"',
        # no IPv6 source: no IPv6 SSH at all
        'iifname != "lo" tcp dport 22 meta nfproto ipv6 drop '
        'comment "SSH only from admin_from, which has no IPv6 source"',
    ]
    # everything that was there before follows unchanged
    assert chain[4:] == input_chain(render_firewall(acme(), [], NOW))[1:]


def test_the_port_is_the_ssh_targets_and_both_families_can_be_listed() -> None:
    ssh = SshTarget("admin", "gw.acme-dental.example", 2222)
    rules = admin_rules(acme(("2001:db8:20::/64", "192.0.2.0/24"), ssh))
    assert rules[1:] == [
        'iifname != "lo" tcp dport 2222 ip saddr != { 192.0.2.0/24 } drop '
        'comment "SSH only from admin_from"',
        'iifname != "lo" tcp dport 2222 ip6 saddr != { 2001:db8:20::/64 } drop '
        'comment "SSH only from admin_from"',
    ]


def _nft_check(text: str) -> None:
    require_lab(["nft", "unshare"])
    done = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.lab
@pytest.mark.parametrize(
    "admin_from",
    [("203.0.113.0/24",), ("2001:db8:20::/64",), ("192.0.2.0/24", "192.0.2.8/29", "2001:db8::/32")],
    ids=["v4", "v6", "both"],
)
def test_nft_accepts_the_admin_rules(admin_from: tuple[str, ...]) -> None:
    _nft_check(render_firewall(acme(admin_from, SshTarget("admin", "gw.example", 2200)), [], NOW))


# -- with packets ------------------------------------------------------------------------------
SERVER = """
import socket, sys
s4 = socket.create_server(("0.0.0.0", int(sys.argv[1])))
s6 = socket.socket(socket.AF_INET6); s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s6.bind(("::", int(sys.argv[1]))); s6.listen()
print("ready", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
except OSError:
    sys.exit(1)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    """A gateway and a client namespace joined by a veth pair: 192.0.2.1 / 2001:db8:20::1 on
    the gateway side, .2 / ::2 on the client's (documentation addresses, in our namespaces)."""
    require_lab(["ip", "nft"])
    tag = uuid.uuid4().hex[:6]
    gateway, client = f"nsadm-{tag}-gw", f"nsadm-{tag}-cl"
    _ip("netns", "add", gateway)
    try:
        _ip("netns", "add", client)
        try:
            _ip("-n", gateway, "link", "add", "v0", "type", "veth", "peer", "v1", "netns", client)
            for ns, dev, last in ((gateway, "v0", 1), (client, "v1", 2)):
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"192.0.2.{last}/24", "dev", dev)
                _ip("-n", ns, "addr", "add", f"2001:db8:20::{last}/64", "dev", dev, "nodad")
                _ip("-n", ns, "link", "set", dev, "up")
            yield gateway, client
        finally:
            _ip("netns", "del", client)
    finally:
        _ip("netns", "del", gateway)


def _in(ns: str, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False, **kw
    )


def _reaches(client: str, host: str, port: int) -> bool:
    return _in(client, sys.executable, "-c", CLIENT, host, str(port)).returncode == 0


@pytest.mark.lab
def test_only_admin_from_reaches_ssh(two_namespaces: tuple[str, str]) -> None:
    gateway, client = two_namespaces
    port, other = 2222, 2223
    servers = [
        subprocess.Popen(
            ["ip", "netns", "exec", gateway, sys.executable, "-c", SERVER, str(p)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in (port, other)
    ]
    try:
        for server in servers:
            assert server.stdout is not None and server.stdout.readline() == "ready\n"
        ssh = SshTarget("admin", "192.0.2.1", port)

        def load(*admin_from: str) -> None:
            text = render_firewall(acme(admin_from, ssh), [], NOW)
            done = _in(gateway, "nft", "-f", "-", input=text)
            assert done.returncode == 0, done.stderr

        assert _reaches(client, "192.0.2.1", port)  # no ruleset yet: the test itself works
        load("192.0.2.2/32")
        assert _reaches(client, "192.0.2.1", port)
        assert not _reaches(client, "2001:db8:20::1", port)  # no IPv6 source listed
        assert _reaches(client, "2001:db8:20::1", other)  # only the SSH port is concerned
        load("198.51.100.0/24", "2001:db8:20::2/128")
        assert not _reaches(client, "192.0.2.1", port)
        assert _reaches(client, "192.0.2.1", other)
        assert _reaches(client, "2001:db8:20::1", port)
        load()  # admin_from removed: SSH is open again
        assert _reaches(client, "192.0.2.1", port)
    finally:
        for server in servers:
            server.kill()
            server.wait()
