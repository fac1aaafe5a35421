"""Bad values in profile.toml: `provision` stops with `error: <what> (<file>:<line>)`, exit 2 and
nothing written; `validate` reports the same value as a finding on the same file and line. Never a
traceback, never a config built from a tunnel of 0.0.0.0/0 or a limited-broadcast route."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.validate import validate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_TABLE = "{a = " * 5000 + "1" + "}" * 5000
NESTED = "nested too deeply to read"
LONG = "a number with too many digits"

# (replace this, with this, line of the finding, part of the message, code)
CASES = [
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "255.255.255.255/32"', 16, "broadcast", "NS007"),
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "0.0.0.0/0"', 16, "every address", "NS007"),
    ('tunnel_v6 = "2001:db8:10::/64"', 'tunnel_v6 = "::/0"', 17, "every address", "NS007"),
    ('tunnel_v6 = "2001:db8:10::/64"', 'tunnel_v6 = "::/96"', 17, "IPv4-mapped", "NS007"),
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "198.18.10.7/24"', 16, "host bits", "NS008"),
    ('tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "2001:db8::/64"', 16, "must be IPv4", "NS007"),
    (
        'dedicated = ["192.0.2.0/24", "2001:db8:20::/64"]',
        'dedicated = ["192.0.2.0/24", "255.255.255.255/32"]',
        35,
        "nothing there is reachable",
        "NS007",
    ),
    (
        'dedicated = ["192.0.2.0/24", "2001:db8:20::/64"]',
        'dedicated = ["192.0.2.0/24", "::1/128"]',
        35,
        "loopback",
        "NS007",
    ),
    (
        'agency = ["192.0.2.20/32 tcp/443"]',
        'agency = ["0.0.0.0/8 tcp/443"]',
        37,
        "0.0.0.0/8",
        "NS007",
    ),
    ('servers = ["192.0.2.53"]', 'servers = ["255.255.255.255"]', 24, "not the address", "NS007"),
    (
        'rtp_ports = "10000-20000"',
        'rtp_ports = "10000-20000"\nmedia = ["255.255.255.255/32"]',
        51,
        "nothing there is reachable",
        "NS007",
    ),
    ('sip_server = "192.0.2.40"', 'sip_server = "224.0.0.1"', 47, "multicast", "NS007"),
    ('agency_expires = "30d"', 'agency_expires = "99999d"', 38, "longer than 365d", "NS009"),
    ('agency_expires = "30d"', 'agency_expires = "9999-12-31"', 38, "must look like", "NS009"),
    ("keepalive = 25", f"keepalive = {DEEP_ARRAY}", 19, NESTED, "NS001"),
    ("keepalive = 25", f"keepalive = {DEEP_TABLE}", 19, NESTED, "NS001"),
    ('kind = "ssh"', f'kind = "ssh"\nextra = {DEEP_ARRAY}', 70, NESTED, "NS001"),
    ("mtu = 1380", "mtu = " + "9" * 5000, 18, LONG, "NS001"),
    ("mtu = 1380", "mtu = 0x" + "f" * 5000, 18, "(a number far too large)", "NS009"),
    ("listen_port = 51820", "listen_port = " + "9" * 30, 13, "far too large", "NS009"),
    ("mtu = 1380", "mtu = 99999", 18, "MTU 99999 is outside 576-9000", "NS009"),
    (
        'responder = "192.0.2.50:4789"',
        'responder = "office.acme-dental.example:4789"',
        53,
        "the gateway firewall and the client's AllowedIPs need the address",
        "NS006",
    ),
]
IDS = [new[:40] for _, new, *_ in CASES]


def break_profile(profile: Path, old: str, new: str) -> None:
    text = (profile / "profile.toml").read_text()
    assert old in text
    (profile / "profile.toml").write_text(text.replace(old, new, 1))


def provision(profile: Path, mode: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "netsetup", "provision", str(profile), "x", "--mode", mode]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.parametrize(("old", "new", "line", "message", "code"), CASES, ids=IDS)
def test_provision_refuses_with_file_and_line(
    acme: Path, state_dir: Path, old: str, new: str, line: int, message: str, code: str
) -> None:
    break_profile(acme, old, new)
    # agency is the mode that would use agency_expires (and was the one that accepted 99999d)
    result = provision(acme, "agency" if "agency_expires" in old else "dedicated")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert message in result.stderr
    assert result.stderr.rstrip().endswith(f"profile.toml:{line})"), result.stderr
    assert not (acme / "peers").exists()
    assert not state_dir.exists()
    assert result.stdout == ""


@pytest.mark.parametrize(("old", "new", "line", "message", "code"), CASES, ids=IDS)
def test_validate_reports_the_same_value_on_its_line(
    acme: Path, old: str, new: str, line: int, message: str, code: str
) -> None:
    break_profile(acme, old, new)
    report = validate([acme], now=NOW)
    mine = [f for f in report.findings if f.code == code]
    assert [(Path(f.path).name, f.line) for f in mine] == [("profile.toml", line)], report.findings
    assert message in mine[0].message


def test_validate_command_survives_deep_nesting(acme: Path) -> None:
    break_profile(acme, "keepalive = 25", f"keepalive = {DEEP_ARRAY}")
    command = [sys.executable, "-m", "netsetup", "validate", str(acme), "--format", "json"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [(f["code"], f["line"]) for f in findings] == [("NS001", 19)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"created = 2026-01-01T00:00:00Z\nname = {DEEP_ARRAY}\n", NESTED),
        ("created = 2026-01-01T00:00:00Z\nname = " + "7" * 5000 + "\n", LONG),
    ],
    ids=["deep-nesting", "long-number"],
)
def test_a_peer_file_that_breaks_tomllib_is_a_finding_and_an_error(
    acme: Path, state_dir: Path, body: str, message: str
) -> None:
    (acme / "peers").mkdir()
    (acme / "peers" / "x.toml").write_text(body)
    report = validate([acme], now=NOW)
    assert [(Path(f.path).name, f.line, f.code) for f in report.findings] == [
        ("x.toml", 2, "NS001")
    ]
    assert message in report.findings[0].message
    listed = subprocess.run(
        [sys.executable, "-m", "netsetup", "list", str(acme)], capture_output=True, text=True
    )
    assert listed.returncode == 2, listed.stderr
    assert listed.stderr.startswith("error: TOML syntax error: ")
    assert listed.stderr.rstrip().endswith("x.toml:2)"), listed.stderr
