"""tunnel.config: the client config judged without the network."""

from __future__ import annotations

from netsetup.diagnose.checks.tunnelconfig import judge_config
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.result import Owner, Status
from netsetup.keys import generate_keypair, generate_preshared_key

CLIENT = generate_keypair()
GATEWAY = generate_keypair()
PSK = generate_preshared_key()

INFO = """\
# netsetup-diagnose: v=1 profile=acme-dental company=Acme contact=it@acme-dental.example
# netsetup-diagnose: gateway=198.18.10.1 gateway6=2001:db8:10::1 witness=51821 listen-port=51820
# netsetup-diagnose: dns-name=files.acme-dental.example
# netsetup-diagnose: target=office-ssh kind=ssh host=192.0.2.31 port=22
# netsetup-diagnose: sip=192.0.2.40 transports=udp sip-port=5060 rtp=10000-20000
"""


def config_text(
    *,
    info: str = INFO,
    address: str | None = "198.18.10.2/32, 2001:db8:10::2/128",
    dns: str | None = "192.0.2.53, acme-dental.example",
    mtu: str | None = "1380",
    allowed: str = "192.0.2.0/24, 198.18.10.1/32, 2001:db8:10::1/128",
    keepalive: str | None = "25",
    endpoint: str | None = "vpn.acme-dental.example:51820",
    private: str | None = None,
) -> str:
    lines = [info.rstrip("\n"), "[Interface]", f"PrivateKey = {private or CLIENT.private.reveal()}"]
    lines += [f"Address = {address}"] if address else []
    lines += [f"DNS = {dns}"] if dns else []
    lines += [f"MTU = {mtu}"] if mtu else []
    lines += ["", "[Peer]", f"PublicKey = {GATEWAY.public}", f"PresharedKey = {PSK.reveal()}"]
    lines += [f"Endpoint = {endpoint}"] if endpoint else []
    lines += [f"AllowedIPs = {allowed}"]
    lines += [f"PersistentKeepalive = {keepalive}"] if keepalive else []
    return "\n".join(lines) + "\n"


def judge(**kwargs: str | None) -> tuple[Status, str, str | None, Owner | None, dict[str, object]]:
    outcome = judge_config(ClientConfig.parse(config_text(**kwargs)))  # type: ignore[arg-type]
    return outcome.status, outcome.summary, outcome.fix, outcome.owner, dict(outcome.metrics)


def test_a_good_config_passes() -> None:
    status, summary, fix, owner, metrics = judge()
    assert status is Status.passed, summary
    assert fix is None and owner is None
    assert metrics["mtu"] == 1380 and metrics["keepalive_s"] == 25


def test_voip_through_the_tunnel_without_keepalive_fails_with_the_line_to_add() -> None:
    status, summary, fix, owner, _ = judge(keepalive=None)
    assert status is Status.fail
    assert owner is Owner.it
    assert "incoming calls stop ringing" in summary
    assert fix is not None and "`PersistentKeepalive = 25`" in fix
    assert "[network] keepalive = 25" in fix


def test_a_keepalive_above_25_s_fails_and_25_passes() -> None:
    assert judge(keepalive="60")[0] is Status.fail
    assert judge(keepalive="25")[0] is Status.passed


def test_voip_outside_the_tunnel_needs_no_keepalive() -> None:
    status, summary, *_ = judge(
        keepalive=None, allowed="198.18.10.1/32, 2001:db8:10::1/128, 192.0.2.53/32"
    )
    assert status is not Status.fail, summary


def test_allowed_ips_must_cover_the_dns_server_and_the_gateway() -> None:
    status, summary, fix, owner, _ = judge(allowed="192.0.2.40/32")
    assert status is Status.fail and owner is Owner.it
    assert "192.0.2.53 (the DNS server)" in summary
    assert "198.18.10.1 (the gateway's tunnel address)" in summary
    assert "line " in summary  # where in the file
    assert fix is not None and "it@acme-dental.example" in fix


def test_a_target_outside_allowed_ips_is_a_warning() -> None:
    status, summary, *_ = judge(
        allowed="192.0.2.53/32, 192.0.2.40/32, 198.18.10.1/32, 2001:db8:10::1/128"
    )
    assert status is Status.warn, summary
    assert "192.0.2.31 (the office-ssh target)" in summary


def test_mtu_out_of_range_fails_and_too_big_for_a_line_warns() -> None:
    status, summary, fix, *_ = judge(mtu="9000")
    assert status is Status.fail and "outside 1280-1500" in summary
    assert fix is not None and "MTU = 1440" in fix
    status, summary, *_ = judge(mtu="1480")
    assert status is Status.warn and "1440" in summary


def test_missing_dns_warns() -> None:
    status, summary, *_ = judge(dns=None)
    assert status is Status.warn and "DNS" in summary


def test_a_damaged_private_key_fails_without_showing_it() -> None:
    broken = CLIENT.private.reveal()[:-4] + "!!!="
    status, summary, fix, owner, metrics = judge(private=broken)
    assert status is Status.fail and owner is Owner.it
    assert "PrivateKey" in summary and "(line " in summary
    assert broken not in summary + str(fix) + str(metrics)


def test_missing_address_and_endpoint_fail() -> None:
    assert "no Address" in judge(address=None)[1]
    assert "no Endpoint" in judge(endpoint=None)[1]
    assert "Endpoint is not valid" in judge(endpoint="vpn:port")[1]


def test_unreadable_netsetup_lines_are_shown_with_their_line_number() -> None:
    info = INFO + "# netsetup-diagnose: target=x kind=telnet host=192.0.2.9 port=23\n"
    status, summary, _, owner, metrics = judge(info=info)
    assert status is Status.warn and owner is Owner.it
    assert "could not be read" in summary and "(line 6)" in summary
    assert any(p["line"] == 6 for p in metrics["problems"])  # type: ignore[attr-defined]


def test_no_key_in_any_output() -> None:
    for kwargs in ({}, {"keepalive": None}, {"mtu": "9000"}, {"dns": None}):
        _status, summary, fix, _, metrics = judge(**kwargs)
        text = f"{summary} {fix} {metrics}"
        assert CLIENT.private.reveal() not in text and PSK.reveal() not in text
