"""A second profile: an IP endpoint on port 51821 (IPv4 only), an
agency-only firm, UDP and TLS for SIP."""

from __future__ import annotations

import pytest

from netsetup.lab import Lab, probe, services

from .conftest import gateway_firewall_removed

pytestmark = pytest.mark.lab


def test_agency_assistant_of_a_service_firm(brightdesk_lab: Lab) -> None:
    lab = brightdesk_lab
    assert str(lab.plan.endpoint_address) == "203.0.113.10"
    assert lab.plan.endpoint_port == 51821
    config = lab.provision("week-temp", "agency")
    assert "Endpoint = 203.0.113.10:51821" in config.read_text()
    lab.tunnel_up(config)
    assert lab.wait_handshake(timeout=15) is not None
    home = lab.ns("home")
    assert probe.tcp_banner(home, "198.51.100.20", 443).ok
    assert probe.sip_options(home, "198.51.100.40", "udp").detail.get("status") == 200
    assert probe.sip_options(home, "198.51.100.40", "tls", 5061).detail.get("status") == 200
    answer = probe.dns_lookup(home, "198.51.100.53", "docs.brightdesk.example")
    assert answer.detail.get("answers") == ["198.51.100.20"]
    assert not probe.tcp_banner(home, "198.51.100.53", 22, timeout=1).ok
    # the profile offers no SIP over TCP. Kamailio doesn't listen there, so to show that the
    # gateway's firewall shuts it, something must: a TCP listener on the SIP server's 5060
    stand_in = services.tcp_service(
        lab.ns("office"), [("198.51.100.40", 5060)], lab.run_dir / "services" / "sip-tcp"
    )
    services.start(stand_in)
    try:
        assert not probe.tcp_banner(home, "198.51.100.40", 5060, timeout=1).ok
        with gateway_firewall_removed(lab):  # control: it is the firewall that stops it
            assert probe.tcp_banner(home, "198.51.100.40", 5060).ok
        assert not probe.tcp_banner(home, "198.51.100.40", 5060, timeout=1).ok
    finally:
        services.stop(stand_in)
    lab.tunnel_down()


def test_public_port_forwarded_to_another_listen_port(
    tmp_path: object, host_resolv_conf: bytes
) -> None:
    """The gateway listens on 51820 behind a port forward from the public 51821."""
    from pathlib import Path

    from .conftest import BRIGHTDESK, require_lab

    require_lab()
    profile = Path(str(tmp_path)) / "brightdesk-agency"
    profile.mkdir()
    text = (BRIGHTDESK / "profile.toml").read_text()
    text = text.replace("[gateway]\n", "[gateway]\nlisten_port = 51820\n", 1)
    (profile / "profile.toml").write_text(text)
    lab = Lab.create(profile)
    assert (lab.plan.endpoint_port, lab.plan.listen_port) == (51821, 51820)
    with lab:
        lab.tunnel_up(lab.provision("fwd", "agency"))
        assert lab.wait_handshake(timeout=15) is not None
        assert probe.tcp_banner(lab.ns("home"), "198.51.100.20", 443).ok
