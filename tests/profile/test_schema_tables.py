"""Each table reader of `profile.toml` on its own: what a good table gives, and for a bad one the
message, code and line the schema reports (the line found the way `validate` finds it)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from netsetup.profile import schema as s
from netsetup.profile.model import DEFAULTS, Diagnose, Portal, Target
from netsetup.profile.schema import _Reader, parse_toml
from netsetup.profile.tomlpos import KeyLocator

KEY = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
Issue = tuple[int, str, str]  # line, code, message


def read(reader: Callable[[_Reader, Any], Any], text: str, table: str) -> tuple[Any, list[Issue]]:
    """Parse `text`, hand table `table` to `reader`, return its value and the issues by line."""
    data, syntax = parse_toml(text)
    assert syntax is None and data is not None
    r = _Reader()
    value = reader(r, data.get(table, {}))
    locator = KeyLocator(text)
    return value, [(locator.line(i.path) or 1, i.code, i.message) for i in r.issues]


def one(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, issues
    return issues[0]


# -- [company] -------------------------------------------------------------------------------------
def test_company_good() -> None:
    company, issues = read(
        s.read_company, '[company]\nname = "Acme"\ncontact = "it@a.example"', "company"
    )
    assert issues == []
    assert company == s.CompanyTable("Acme", "it@a.example")


@pytest.mark.parametrize(
    ("text", "line", "code", "message"),
    [
        ('[company]\ncontact = "x"', 1, s.MISSING_KEY, "missing required key 'name' in [company]"),
        ('[company]\nname = "A"\nnaem = "B"', 3, s.UNKNOWN_KEY, "unknown key 'naem' in [company]"),
        ("[company]\nname = 5", 2, s.WRONG_TYPE, "company.name must be a string"),
        ('[company]\nname = "A\\u2028B"', 2, s.BAD_VALUE, "invisible character"),
    ],
)
def test_company_bad(text: str, line: int, code: str, message: str) -> None:
    company, issues = read(s.read_company, text, "company")
    got_line, got_code, got_message = issues[-1]
    assert (got_line, got_code) == (line, code)
    assert message in got_message
    if code != s.UNKNOWN_KEY:
        assert company is None


# -- [gateway] -------------------------------------------------------------------------------------
def test_gateway_good_and_defaults() -> None:
    text = f'[gateway]\nendpoint = "vpn.a.example:51821"\npublic_key = "{KEY}"'
    gateway, issues = read(s.read_gateway, text, "gateway")
    assert issues == []
    assert (gateway.endpoint_host, gateway.endpoint_port) == ("vpn.a.example", 51821)
    assert gateway.listen_port == 51821  # the endpoint's port
    assert gateway.interface == DEFAULTS.interface


def test_gateway_listen_port_and_interface() -> None:
    text = (
        f'[gateway]\nendpoint = "[2001:db8::1]:443"\npublic_key = "{KEY}"\n'
        'interface = "wg7"\nlisten_port = 51820'
    )
    gateway, issues = read(s.read_gateway, text, "gateway")
    assert issues == []
    assert gateway.endpoint == "[2001:db8::1]:443"
    assert (gateway.interface, gateway.listen_port) == ("wg7", 51820)


@pytest.mark.parametrize(
    ("line2", "line", "code", "message"),
    [
        ('endpoint = "vpn.a.example:0"', 2, s.BAD_ENDPOINT, "port 0 is outside 1-65535"),
        ('endpoint = "2001:db8::1:51820"', 2, s.BAD_ENDPOINT, "brackets"),
        ('endpoint = "vpn.a.example:1"\nlisten_port = 70000', 3, s.BAD_VALUE, "port 70000"),
        (
            'endpoint = "vpn.a.example:1"\nlisten_port = ' + "9" * 40,
            3,
            s.BAD_VALUE,
            "port (a number far too large) is outside 1-65535",
        ),
        ('endpoint = "vpn.a.example:1"\ninterface = "a b"', 3, s.BAD_VALUE, "interface name"),
    ],
)
def test_gateway_bad(line2: str, line: int, code: str, message: str) -> None:
    text = f'[gateway]\n{line2}\npublic_key = "{KEY}"'
    _, issues = read(s.read_gateway, text, "gateway")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message


def test_gateway_bad_key() -> None:
    text = '[gateway]\nendpoint = "vpn.a.example:1"\npublic_key = "AAAA"'
    gateway, issues = read(s.read_gateway, text, "gateway")
    assert gateway is None
    assert one(issues)[:2] == (3, s.BAD_KEY)


# -- [network] -------------------------------------------------------------------------------------
def read_network(text: str) -> tuple[Any, list[Issue]]:
    return read(lambda r, raw: s.read_network(r, raw, "acme-dental"), text, "network")


def test_network_good_and_defaults() -> None:
    network, issues = read_network('[network]\ntunnel_v4 = "198.18.10.0/24"')
    assert issues == []
    assert network.tunnel_v4 == ipaddress.ip_network("198.18.10.0/24")
    assert network.tunnel_v6 is None
    assert (network.mtu, network.keepalive, network.quarantine_days) == (
        DEFAULTS.mtu,
        DEFAULTS.keepalive,
        DEFAULTS.quarantine_days,
    )
    assert network.client_interface == "wg-acme-dental"
    assert str(network.gateway_address_v4) == "198.18.10.1"


def test_network_zero_keepalive_and_quarantine_are_kept() -> None:
    network, issues = read_network(
        '[network]\ntunnel_v4 = "198.18.10.0/24"\nkeepalive = 0\nquarantine_days = 0'
    )
    assert issues == []
    assert (network.keepalive, network.quarantine_days) == (0, 0)


@pytest.mark.parametrize(
    ("key_value", "code", "message"),
    [
        ('tunnel_v4 = "255.255.255.255/32"', s.BAD_CIDR, "reserved or broadcast"),
        ('tunnel_v4 = "0.0.0.0/0"', s.BAD_CIDR, "'0.0.0.0/0' is every address"),
        ('tunnel_v4 = "127.0.0.0/16"', s.BAD_CIDR, "loopback"),
        ('tunnel_v4 = "224.1.0.0/24"', s.BAD_CIDR, "multicast"),
        ('tunnel_v4 = "198.18.10.1/24"', s.HOST_BITS, "did you mean 198.18.10.0/24?"),
        ('tunnel_v4 = "2001:db8::/64"', s.BAD_CIDR, "must be IPv4"),
        ('tunnel_v4 = "198.18.10.0/31"', s.BAD_VALUE, "leaves no address for peers"),
        ('tunnel_v6 = "::/0"', s.BAD_CIDR, "'::/0' is every address"),
        ('tunnel_v6 = "::/64"', s.BAD_CIDR, "IPv4-mapped"),
        ('tunnel_v6 = "198.18.0.0/24"', s.BAD_CIDR, "must be IPv6"),
        ('tunnel_v6 = "2001:db8::/127"', s.BAD_VALUE, "use /126 or shorter"),
        ('gateway_v4 = "198.18.11.1"', s.BAD_VALUE, "198.18.11.1 is not in 198.18.10.0/24"),
        ("mtu = 100", s.BAD_VALUE, "MTU 100 is outside 576-9000"),
        ("mtu = " + "1" * 30, s.BAD_VALUE, "MTU (a number far too large) is outside 576-9000"),
        ('mtu = "1380"', s.WRONG_TYPE, "network.mtu must be an integer"),
        ("keepalive = true", s.WRONG_TYPE, "must be an integer"),
        ("quarantine_days = 4000", s.BAD_VALUE, "outside 0-3650"),
        ('client_interface = "wg-acme-dental-office"', s.BAD_VALUE, "1-15 characters"),
        ("keep_alive = 25", s.UNKNOWN_KEY, "did you mean 'keepalive'?"),
    ],
)
def test_network_bad(key_value: str, code: str, message: str) -> None:
    tunnel = "" if key_value.startswith("tunnel_v4") else 'tunnel_v4 = "198.18.10.0/24"\n'
    _, issues = read_network(f"[network]\n{tunnel}{key_value}")
    got_line, got_code, got_message = one(issues)
    assert got_line == (2 if not tunnel else 3)
    assert got_code == code
    assert message in got_message


def test_network_without_tunnel_is_missing() -> None:
    network, issues = read_network("[network]\nmtu = 1380")
    assert network is None
    assert one(issues) == (1, s.MISSING_KEY, "missing required key 'tunnel_v4' in [network]")


# -- [dns] -----------------------------------------------------------------------------------------
def test_dns_good() -> None:
    text = (
        '[dns]\nservers = ["192.0.2.53", "2001:db8::53"]\nsearch = ["A.example."]\n'
        '[dns.records]\n"files.a.example" = "192.0.2.30"'
    )
    dns, issues = read(s.read_dns, text, "dns")
    assert issues == []
    assert [str(a) for a in dns.servers] == ["192.0.2.53", "2001:db8::53"]
    assert dns.search == ("a.example",)
    assert [(n, str(a)) for n, a in dns.records] == [("files.a.example", "192.0.2.30")]


@pytest.mark.parametrize(
    ("text", "line", "code", "message"),
    [
        ('[dns]\nservers = ["255.255.255.255"]', 2, s.BAD_CIDR, "not the address of a server"),
        ('[dns]\nservers = ["0.0.0.0"]', 2, s.BAD_CIDR, "0.0.0.0/8"),
        ('[dns]\nservers = ["::"]', 2, s.BAD_CIDR, "unspecified"),
        ('[dns]\nservers = ["ff02::1"]', 2, s.BAD_CIDR, "multicast"),
        ('[dns]\nservers = ["192.0.2.0/24"]', 2, s.BAD_CIDR, "is not an IP address"),
        ('[dns]\nservers = "192.0.2.53"', 2, s.WRONG_TYPE, "dns.servers must be a list"),
        ("[dns]\nservers = [53]", 2, s.WRONG_TYPE, "dns.servers[0] must be a string"),
        ('[dns]\nsearch = ["-a.example"]', 2, s.BAD_VALUE, "not a valid host name"),
        ('[dns]\n[dns.records]\n"x.example" = "nope"', 3, s.BAD_VALUE, "'nope' is not an IP"),
        ('[dns]\n[dns.records]\n"x.example" = 5', 3, s.BAD_VALUE, "must be an address string"),
        ("[dns]\nrecords = 5", 2, s.WRONG_TYPE, "[dns.records] must be a table"),
        ('[dns]\nrecords = ["a"]', 2, s.WRONG_TYPE, "[dns.records] must be a table"),
    ],
)
def test_dns_bad(text: str, line: int, code: str, message: str) -> None:
    _, issues = read(s.read_dns, text, "dns")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message


# -- [access] --------------------------------------------------------------------------------------
def test_access_good_and_default_expiry() -> None:
    text = (
        '[access]\ndedicated = ["0.0.0.0/0", "::/0"]\n'
        'agency = ["192.0.2.20 tcp/443,8443", "198.51.100.0/24 udp"]'
    )
    access, issues = read(s.read_access, text, "access")
    assert issues == []  # a full tunnel is a legitimate access list
    assert [str(r) for r in access.dedicated] == ["0.0.0.0/0", "::/0"]
    assert [str(r) for r in access.agency] == ["192.0.2.20/32 tcp/443,8443", "198.51.100.0/24 udp"]
    assert access.agency_expires == DEFAULTS.agency_expires


def test_access_expiry_up_to_a_year() -> None:
    access, issues = read(s.read_access, '[access]\nagency_expires = "52w"', "access")
    assert issues == []
    assert access.agency_expires == timedelta(weeks=52)


@pytest.mark.parametrize(
    ("text", "line", "code", "message"),
    [
        ('[access]\ndedicated = ["255.255.255.255/32"]', 2, s.BAD_CIDR, "nothing there is"),
        ('[access]\nagency = ["127.0.0.1 tcp/22"]', 2, s.BAD_CIDR, "loopback"),
        ('[access]\ndedicated = ["ff00::/8"]', 2, s.BAD_CIDR, "multicast"),
        ('[access]\ndedicated = ["192.0.2.10/24"]', 2, s.HOST_BITS, "did you mean 192.0.2.0/24?"),
        ('[access]\ndedicated = ["192.0.2.0/24 icmp"]', 2, s.BAD_CIDR, "protocol must be tcp"),
        ('[access]\ndedicated = ["192.0.2.0/24 tcp/70000"]', 2, s.BAD_CIDR, "within 1-65535"),
        ('[access]\nagency_expires = "99999d"', 2, s.BAD_VALUE, "longer than 365d"),
        ('[access]\nagency_expires = "99999w"', 2, s.BAD_VALUE, "meant to expire"),
        ('[access]\nagency_expires = "2999-01-01"', 2, s.BAD_VALUE, "must look like 12h"),
        ("[access]\nagency_expires = 2999-01-01", 2, s.WRONG_TYPE, "must be a string"),
        ('[access]\nagency_expires = "0d"', 2, s.BAD_VALUE, "longer than zero"),
        ("[access]\ntemporary = []", 2, s.UNKNOWN_KEY, "unknown key 'temporary'"),
    ],
)
def test_access_bad(text: str, line: int, code: str, message: str) -> None:
    access, issues = read(s.read_access, text, "access")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message
    assert access.agency_expires == DEFAULTS.agency_expires  # a bad value never takes effect


def test_access_rule_line_is_the_element_not_the_key() -> None:
    text = '[access]\ndedicated = [\n  "192.0.2.0/24",\n  "255.255.255.255/32",\n]'
    access, issues = read(s.read_access, text, "access")
    assert one(issues)[:2] == (4, s.BAD_CIDR)
    assert [str(r) for r in access.dedicated] == ["192.0.2.0/24"]  # the bad element is dropped


# -- [[portal]] ------------------------------------------------------------------------------------
def test_portals_good() -> None:
    text = (
        '[[portal]]\nname = "docs"\nhost = "192.0.2.20"\nport = 443\n'
        '[[portal]]\nname = "sip"\nhost = "2001:db8::40"\nproto = "udp"\nport = 5060'
    )
    portals, issues = read(s.read_portals, text, "portal")
    assert issues == []
    assert portals == (
        Portal("docs", ipaddress.ip_address("192.0.2.20"), DEFAULTS.portal_proto, 443),
        Portal("sip", ipaddress.ip_address("2001:db8::40"), "udp", 5060),
    )


@pytest.mark.parametrize(
    ("text", "line", "code", "message"),
    [
        ('[[portal]]\nname = "d"\nhost = "255.255.255.255"\nport = 1', 3, s.BAD_CIDR, "server"),
        ('[[portal]]\nname = "d"\nhost = "192.0.2.1"\nport = 0', 4, s.BAD_VALUE, "port 0"),
        ('[[portal]]\nname = "d"\nhost = "192.0.2.1"', 1, s.MISSING_KEY, "'port' in [portal.0]"),
        ('[[portal]]\nname = "D"\nhost = "192.0.2.1"\nport = 1', 2, s.BAD_VALUE, "name 'D'"),
        (
            '[[portal]]\nname = "d"\nhost = "192.0.2.1"\nport = 1\nproto = "sctp"',
            5,
            s.BAD_VALUE,
            "proto 'sctp' must be one of tcp, udp",
        ),
        ('[portal]\nname = "d"', 1, s.WRONG_TYPE, "array of tables: [[portal]]"),
    ],
)
def test_portals_bad(text: str, line: int, code: str, message: str) -> None:
    _, issues = read(s.read_portals, text, "portal")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message


def test_second_portal_reports_its_own_line() -> None:
    text = (
        '[[portal]]\nname = "a"\nhost = "192.0.2.1"\nport = 1\n'
        '[[portal]]\nname = "b"\nhost = "192.0.2.2"\nport = 99999'
    )
    portals, issues = read(s.read_portals, text, "portal")
    assert one(issues)[:2] == (8, s.BAD_VALUE)
    assert [p.name for p in portals] == ["a"]


# -- [voip] ----------------------------------------------------------------------------------------
def test_voip_good_and_defaults() -> None:
    voip, issues = read(s.read_voip, '[voip]\nsip_server = "192.0.2.40"', "voip")
    assert issues == []
    assert (voip.transports, voip.sip_port, voip.tls_port, voip.rtp_ports) == (
        DEFAULTS.transports,
        DEFAULTS.sip_port,
        DEFAULTS.tls_port,
        DEFAULTS.rtp_ports,
    )
    assert [str(n) for n in voip.media_networks] == ["192.0.2.40/32"]


def test_voip_everything_set() -> None:
    text = (
        '[voip]\nsip_server = "2001:db8::40"\nsip_domain = "A.example"\ntransports = ["tls"]\n'
        'sip_port = 5070\ntls_port = 5071\nrtp_ports = "16384-32767"\nmedia = ["198.51.100.0/24"]'
    )
    voip, issues = read(s.read_voip, text, "voip")
    assert issues == []
    assert (voip.sip_domain, voip.transports, voip.sip_port, voip.tls_port) == (
        "a.example",
        ("tls",),
        5070,
        5071,
    )
    assert voip.rtp_ports == (16384, 32767)
    assert [str(n) for n in voip.media] == ["198.51.100.0/24"]


@pytest.mark.parametrize(
    ("line2", "line", "code", "message"),
    [
        ('media = ["255.255.255.255/32"]', 3, s.BAD_CIDR, "nothing there is reachable"),
        ('media = ["224.0.0.0/24"]', 3, s.BAD_CIDR, "multicast"),
        ('media = ["198.51.100.1/24"]', 3, s.HOST_BITS, "host bits"),
        ('transports = ["udp", "sctp"]', 3, s.BAD_VALUE, "transport 'sctp'"),
        ('rtp_ports = "10000-20000,30000"', 3, s.BAD_VALUE, "must be one range"),
        ('rtp_ports = "20000-10000"', 3, s.BAD_VALUE, "low to high"),
        ("sip_port = 65536", 3, s.BAD_VALUE, "port 65536"),
        ("tls_port = " + "7" * 50, 3, s.BAD_VALUE, "(a number far too large)"),
        ('sip_domain = "a..b"', 3, s.BAD_VALUE, "not a valid host name"),
        ('codec = "opus"', 3, s.BAD_VALUE, "'opus' is not supported: use 'g711' or 'g729'"),
        ('codec = "G.722"', 3, s.BAD_VALUE, "published ITU-T G.113 values"),
        ('plc = "yes"', 3, s.WRONG_TYPE, "voip.plc must be"),
    ],
)
def test_voip_bad(line2: str, line: int, code: str, message: str) -> None:
    voip, issues = read(s.read_voip, f'[voip]\nsip_server = "192.0.2.40"\n{line2}', "voip")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message
    assert voip is not None  # the rest of [voip] still counts


@pytest.mark.parametrize(
    ("value", "message"),
    [("255.255.255.255", "not the address of a server"), ("192.0.2.0/24", "not an IP address")],
)
def test_voip_bad_server_drops_the_table(value: str, message: str) -> None:
    voip, issues = read(s.read_voip, f'[voip]\nsip_server = "{value}"', "voip")
    assert voip is None
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (2, s.BAD_CIDR)
    assert message in got_message


def test_voip_codec_and_plc() -> None:
    voip, issues = read(s.read_voip, '[voip]\nsip_server = "192.0.2.40"', "voip")
    assert issues == [] and (voip.codec, voip.plc) == ("g711", True)
    text = '[voip]\nsip_server = "192.0.2.40"\ncodec = "g729"\nplc = false'
    voip, issues = read(s.read_voip, text, "voip")
    assert issues == [] and (voip.codec, voip.plc) == ("g729", False)


@pytest.mark.parametrize("given", ["G711", "g711"])
def test_voip_codec_in_any_case_is_stored_lower_case(given: str) -> None:
    text = f'[voip]\nsip_server = "192.0.2.40"\ncodec = "{given}"'
    voip, issues = read(s.read_voip, text, "voip")
    assert issues == [] and voip.codec == "g711"
    voip, issues = read(s.read_voip, text.replace(given, "G729"), "voip")
    assert issues == [] and voip.codec == "g729"


def test_diagnose_responder_must_be_an_address_not_a_name() -> None:
    """A name gets no firewall rule and no AllowedIPs route: refused on its line."""
    text = '[diagnose]\nresponder = "office.acme-dental.example:4789"'
    diagnose, issues = read(s.read_diagnose, text, "diagnose")
    got_line, got_code, message = one(issues)
    assert (got_line, got_code) == (2, s.BAD_ENDPOINT)
    assert "an IP address" in message and "AllowedIPs need the address" in message
    assert diagnose.responder is None


def test_diagnose_sip_mirror() -> None:
    diagnose, issues = read(s.read_diagnose, "[diagnose]\n", "diagnose")
    assert issues == [] and diagnose.sip_mirror is False
    diagnose, issues = read(s.read_diagnose, "[diagnose]\nsip_mirror = true", "diagnose")
    assert issues == [] and diagnose.sip_mirror is True
    _, issues = read(s.read_diagnose, '[diagnose]\nsip_mirror = "on"', "diagnose")
    assert one(issues)[:2] == (2, s.WRONG_TYPE)


# -- [diagnose] ------------------------------------------------------------------------------------
def test_diagnose_good_and_defaults() -> None:
    text = (
        '[diagnose]\nresponder = "192.0.2.50:4789"\n'
        '[[diagnose.targets]]\nname = "files"\nhost = "files.a.example"\nport = 445\n'
        '[[diagnose.targets]]\nname = "ssh"\nhost = "192.0.2.31"\nkind = "ssh"\n'
        '[[diagnose.targets]]\nname = "portal"\nhost = "192.0.2.20"\nkind = "https"\n'
        '[[diagnose.targets]]\nname = "desk"\nhost = "192.0.2.32"\nkind = "rdp"\n'
        '[[diagnose.targets]]\nname = "pinned"\nhost = "192.0.2.31"\nkind = "ssh"\n'
        f'host_key = "SHA256:{"A" * 43}"'
    )
    diagnose, issues = read(s.read_diagnose, text, "diagnose")
    assert issues == []
    assert diagnose == Diagnose(
        (ipaddress.ip_address("192.0.2.50"), 4789),
        (
            Target("files", "files.a.example", 445, DEFAULTS.target_kind),
            Target("ssh", ipaddress.ip_address("192.0.2.31"), DEFAULTS.ssh_port, "ssh"),
            Target("portal", ipaddress.ip_address("192.0.2.20"), DEFAULTS.https_port, "https"),
            Target("desk", ipaddress.ip_address("192.0.2.32"), DEFAULTS.rdp_port, "rdp"),
            Target("pinned", ipaddress.ip_address("192.0.2.31"), 22, "ssh", f"SHA256:{'A' * 43}"),
        ),
    )


def test_diagnose_target_kind_and_host_key_are_checked() -> None:
    text = (
        '[diagnose]\n[[diagnose.targets]]\nname = "gw"\nhost = "192.0.2.1"\nkind = "ping"\n'
        '[[diagnose.targets]]\nname = "k"\nhost = "192.0.2.2"\nkind = "ssh"\nhost_key = "md5:aa"\n'
        '[[diagnose.targets]]\nname = "t"\nhost = "192.0.2.3"\nport = 1\n'
        f'host_key = "SHA256:{"A" * 43}"'
    )
    _, issues = read(s.read_diagnose, text, "diagnose")
    messages = " | ".join(message for _, _, message in issues)
    assert "kind 'ping' must be one of tcp, https, rdp, ssh" in messages
    assert "must be an SSH fingerprint" in messages
    assert "host_key belongs on a target of kind ssh" in messages


@pytest.mark.parametrize(
    ("text", "line", "code", "message"),
    [
        ('[diagnose]\nresponder = "192.0.2.50"', 2, s.BAD_ENDPOINT, "must be host:port"),
        (
            '[[diagnose.targets]]\nname = "files"\nhost = "192.0.2.30"',
            1,
            s.MISSING_KEY,
            "diagnose.targets[0] of kind tcp needs a port",
        ),
        (
            '[[diagnose.targets]]\nname = "x"\nhost = "192.0.2.30"\nport = 1\nkind = "udp"',
            5,
            s.BAD_VALUE,
            "kind 'udp' must be one of tcp, https, rdp, ssh",
        ),
        (
            '[[diagnose.targets]]\nname = "x"\nhost = "999.0.2.30"\nport = 1',
            3,
            s.BAD_VALUE,
            "not a valid IPv4 address",
        ),
        ('[diagnose]\ntargets = "files"', 2, s.WRONG_TYPE, "[[diagnose.targets]]"),
    ],
)
def test_diagnose_bad(text: str, line: int, code: str, message: str) -> None:
    _, issues = read(s.read_diagnose, text, "diagnose")
    got_line, got_code, got_message = one(issues)
    assert (got_line, got_code) == (line, code)
    assert message in got_message


# -- the whole file --------------------------------------------------------------------------------
def test_whole_profile_collects_issues_of_every_table(tmp_path: Path) -> None:
    text = (
        '[company]\nname = "A"\n'
        f'[gateway]\nendpoint = "vpn.a.example:51820"\npublic_key = "{KEY}"\n'
        '[network]\ntunnel_v4 = "0.0.0.0/0"\n'
        '[access]\nagency_expires = "400d"\n'
        '[voip]\nsip_server = "192.0.2.40"\nmedia = ["255.255.255.255/32"]\n'
    )
    data, _ = parse_toml(text)
    assert data is not None
    profile, issues = s.parse_profile_data(data, tmp_path / "acme")
    assert profile is None  # no usable tunnel
    assert [i.path for i in issues] == [
        ("network", "tunnel_v4"),
        ("access", "agency_expires"),
        ("voip", "media", 0),
    ]
