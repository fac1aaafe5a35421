"""The provisioning core: configs parse back to the intended fields, addresses, keys, lifecycle."""

from __future__ import annotations

import io
import ipaddress
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wireguard_tools import WireguardConfig

from netsetup.clock import FixedClock
from netsetup.errors import ConflictError, InputError
from netsetup.gateway.render import render_gateway_config
from netsetup.keys import generate_keypair, is_valid_key, public_from_private
from netsetup.profile.store import load_peer, load_peers, load_profile
from netsetup.provision import service
from netsetup.provision.addresses import allocate_address
from netsetup.state import StateDir

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = FixedClock(NOW)  # never advanced: tests that move time make their own clock


def parse(path: Path) -> WireguardConfig:
    return WireguardConfig.from_wgconfig(io.StringIO(path.read_text()))


def test_client_config_parses_back_to_the_intended_fields(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    result = service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    config = parse(result.config)
    assert config.private_key is not None
    assert (
        public_from_private_key_text(str(config.private_key))
        == load_peer(profile, "maria").public_key
    )
    assert [str(a) for a in config.addresses] == ["198.18.10.2/32", "2001:db8:10::2/128"]
    assert [str(s) for s in config.dns_servers] == ["192.0.2.53"]
    assert config.search_domains == ["acme-dental.example"]
    assert config.mtu == 1380
    (peer,) = config.peers.values()
    assert str(peer.public_key) == profile.gateway.public_key
    psk = StateDir().load_psk("acme-dental", "maria", load_peer(profile, "maria").public_key)
    assert psk is not None and str(peer.preshared_key) == psk.reveal()
    assert (peer.endpoint_host, peer.endpoint_port) == ("vpn.acme-dental.example", 51820)
    assert peer.persistent_keepalive == 25
    assert sorted(str(a) for a in peer.allowed_ips) == sorted(
        ["192.0.2.0/24", "198.18.10.1/32", "2001:db8:10::1/128", "2001:db8:20::/64"]
    )


def public_from_private_key_text(text: str) -> str:
    from netsetup.keys import SecretKey

    return public_from_private(SecretKey(text))


def test_agency_mode_routes_only_portal_dns_voip_responder_and_gateway(
    acme: Path, state_dir: Path
) -> None:
    profile = load_profile(acme)
    result = service.provision(profile, "temp", "agency", state=StateDir(), clock=AT)
    (peer,) = parse(result.config).peers.values()
    assert sorted(str(a) for a in peer.allowed_ips) == sorted(
        [
            "192.0.2.20/32",
            "192.0.2.40/32",
            "192.0.2.50/32",  # the office responder: diagnose measures calls against it
            "192.0.2.53/32",
            "198.18.10.1/32",
            "2001:db8:10::1/128",
        ]
    )
    # agency access expires by default, after the profile's agency_expires (30d)
    assert result.peer.expires == "2026-12-26T12:00:00Z"


def test_files_are_private(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "handoff"
    result = service.provision(
        load_profile(acme),
        "maria",
        "dedicated",
        state=StateDir(),
        out_dir=out,
        qr=True,
        clock=AT,
    )
    for path in [
        result.config,
        *result.qr_files,
        StateDir().psk_path("acme-dental", "maria", result_key(acme)),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    assert {p.suffix for p in result.qr_files} == {".png", ".svg"}
    assert result.qr_files[0].read_bytes()[:4] == b"\x89PNG"
    audit = StateDir().audit_path
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600


def result_key(acme: Path) -> str:
    return load_peer(load_profile(acme), "maria").public_key


def test_client_pubkey_means_no_private_key_anywhere(acme: Path, state_dir: Path) -> None:
    own = generate_keypair()
    result = service.provision(
        load_profile(acme),
        "ines",
        "dedicated",
        state=StateDir(),
        client_pubkey=own.public,
        clock=AT,
    )
    text = result.config.read_text()
    assert "PrivateKey" not in text.split("[Peer]")[0].replace("# Add your own PrivateKey", "")
    assert not result.private_key_written
    assert load_peer(load_profile(acme), "ines").public_key == own.public
    assert load_peer(load_profile(acme), "ines").key_origin == "client"


def test_bad_client_pubkey_is_rejected(acme: Path, state_dir: Path) -> None:
    with pytest.raises(InputError, match="not a WireGuard public key"):
        service.provision(
            load_profile(acme),
            "x",
            "dedicated",
            state=StateDir(),
            client_pubkey="abc",
            clock=AT,
        )
    assert not (acme / "peers" / "x.toml").exists()


def test_addresses_are_lowest_free_and_skip_gateway(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    got = [
        service.provision(profile, f"p{i}", "dedicated", state=StateDir(), clock=AT).peer.address_v4
        for i in range(3)
    ]
    assert got == ["198.18.10.2", "198.18.10.3", "198.18.10.4"]


@pytest.mark.parametrize(
    ("cidr", "gateway", "taken", "expected"),
    [
        ("198.18.0.0/24", "198.18.0.1", set(), "198.18.0.2"),
        ("198.18.0.0/30", "198.18.0.1", set(), "198.18.0.2"),
        ("198.18.0.0/29", "198.18.0.6", {1, 2}, "198.18.0.3"),
        ("198.18.0.0/31", "198.18.0.0", set(), "198.18.0.1"),
        ("198.18.0.0/16", "198.18.0.1", {2, 3, 5}, "198.18.0.4"),
        ("2001:db8::/64", "2001:db8::1", set(), "2001:db8::2"),
        ("2001:db8::/127", "2001:db8::", set(), "2001:db8::1"),
    ],
)
def test_allocate_address(cidr: str, gateway: str, taken: set[int], expected: str) -> None:
    network = ipaddress.ip_network(cidr)
    base = int(network.network_address)
    address = allocate_address(network, ipaddress.ip_address(gateway), {base + t for t in taken})
    assert str(address) == expected


def test_full_subnet_is_a_clear_error() -> None:
    network = ipaddress.ip_network("198.18.0.0/30")
    with pytest.raises(ConflictError, match="no free address"):
        allocate_address(network, ipaddress.ip_address("198.18.0.1"), {int(network[2])})


def test_never_network_or_broadcast() -> None:
    network = ipaddress.ip_network("198.18.0.0/29")
    seen = set()
    taken: set[int] = set()
    while True:
        try:
            address = allocate_address(network, network[1], taken)
        except ConflictError:
            break
        seen.add(str(address))
        taken.add(int(address))
    assert seen == {str(network[i]) for i in range(2, 7)}


def test_revoked_address_stays_in_quarantine(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, "a", "dedicated", state=state, clock=AT)
    service.provision(profile, "b", "dedicated", state=state, clock=AT)
    service.revoke(profile, "a", state=state, clock=AT)
    soon = service.provision(
        profile, "c", "dedicated", state=state, clock=FixedClock(NOW + timedelta(days=1))
    )
    assert soon.peer.address_v4 == "198.18.10.4"  # .2 is still in quarantine
    later = service.provision(
        profile, "d", "dedicated", state=state, clock=FixedClock(NOW + timedelta(days=31))
    )
    assert later.peer.address_v4 == "198.18.10.2"


def test_index_heals_when_peer_files_arrive_by_merge(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, "a", "dedicated", state=state, clock=AT)
    # another admin's branch brings a peer file that this index never saw
    text = (acme / "peers" / "a.toml").read_text()
    (acme / "peers" / "zed.toml").write_text(
        text.replace('"a"', '"zed"').replace("198.18.10.2", "198.18.10.3")
    )
    result = service.provision(profile, "b", "dedicated", state=state, clock=AT)
    assert result.peer.address_v4 == "198.18.10.4"
    index = acme / ".peers-index.json"
    assert index.is_file() and not (acme / "peers" / ".peers-index.json").exists()
    index.write_text("{not json")
    result = service.provision(profile, "c", "dedicated", state=state, clock=AT)
    assert result.peer.address_v4 == "198.18.10.5"
    damaged = (
        '{"version": 5, "folder_mtime": 0, "names": ["a"], "v4": ["x"], "v6": [null],'
        ' "released": [null], "stamps": ["0:0:0"]}'
    )
    index.write_text(damaged)
    result = service.provision(profile, "d", "dedicated", state=state, clock=AT)
    assert result.peer.address_v4 == "198.18.10.6"
    # a temp file a killed writer left behind is swept by the next change
    (acme / "peers" / ".zed.toml.abc.tmp").write_text("half")
    service.provision(profile, "e", "dedicated", state=state, clock=AT)
    assert not list((acme / "peers").glob("*.tmp"))


def test_duplicate_name_is_refused(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    service.provision(profile, "a", "dedicated", state=StateDir(), clock=AT)
    before = (acme / "peers" / "a.toml").read_text()
    with pytest.raises(ConflictError, match="already exists"):
        service.provision(profile, "a", "agency", state=StateDir(), clock=AT)
    assert (acme / "peers" / "a.toml").read_text() == before


def test_rotate_keeps_address_and_changes_keys(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    first = service.provision(profile, "a", "agency", state=state, clock=AT)
    old_key = load_peer(profile, "a").public_key
    old_psk = state.load_psk(profile.id, "a", old_key)
    second = service.rotate(profile, "a", state=state, clock=AT)
    new_key = load_peer(profile, "a").public_key
    assert state.load_psk(profile.id, "a", old_key) is None  # the old one is gone
    assert second.peer.address_v4 == first.peer.address_v4
    assert second.peer.expires == first.peer.expires
    assert second.peer.fingerprint != first.peer.fingerprint
    assert state.load_psk(profile.id, "a", new_key) not in (None, old_psk)
    assert load_peer(profile, "a").rotated == NOW


def test_renew_and_expiry(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, "a", "dedicated", state=state, expires="2d", clock=AT)
    views = service.list_peers(profile, now=NOW + timedelta(days=3))
    assert views[0].state == "expired"
    service.renew(
        profile, "a", "2027-01-31", state=state, clock=FixedClock(NOW + timedelta(days=3))
    )
    views = service.list_peers(profile, now=NOW + timedelta(days=3))
    assert (views[0].state, views[0].expires) == ("active", "2027-01-31T23:59:59Z")
    with pytest.raises(InputError, match="in the past"):
        service.renew(profile, "a", "2020-01-01", state=state, clock=AT)


def test_render_leaves_out_revoked_and_expired(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    for name, expires in (("keep", None), ("gone", None), ("old", "1d")):
        service.provision(profile, name, "dedicated", state=state, expires=expires, clock=AT)
    service.revoke(profile, "gone", state=state, clock=AT)
    later = NOW + timedelta(days=2)
    text = render_gateway_config(profile, load_peers(profile), state, later)
    config = WireguardConfig.from_wgconfig(io.StringIO(text))
    keep = load_peer(profile, "keep")
    assert [str(k) for k in config.peers] == [keep.public_key]
    (peer,) = config.peers.values()
    assert sorted(str(a) for a in peer.allowed_ips) == ["198.18.10.2/32", "2001:db8:10::2/128"]
    assert config.listen_port == 51820
    assert [str(a) for a in config.addresses] == ["198.18.10.1/24", "2001:db8:10::1/64"]


def test_revoke_destroys_psk_and_client_config(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    result = service.provision(profile, "a", "dedicated", state=state, clock=AT)
    key = load_peer(profile, "a").public_key
    service.revoke(profile, "a", state=state, clock=AT)
    assert not result.config.exists()
    assert state.load_psk(profile.id, "a", key) is None
    assert load_peer(profile, "a").status == "revoked"
    with pytest.raises(ConflictError, match="already revoked"):
        service.revoke(profile, "a", state=state, clock=AT)
    with pytest.raises(ConflictError, match="revoked"):
        service.rotate(profile, "a", state=state, clock=AT)


def test_audit_log_has_one_line_per_change(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, "a", "agency", state=state, clock=AT)
    service.rotate(profile, "a", state=state, clock=AT)
    service.renew(profile, "a", "10d", state=state, clock=AT)
    service.revoke(profile, "a", state=state, clock=AT)
    lines = [json.loads(line) for line in state.audit_path.read_text().splitlines()]
    assert [line["action"] for line in lines] == ["provision", "rotate", "renew", "revoke"]
    for line in lines:
        assert line["actor"] == "tester@example"
        assert line["peer"] == "a" and line["fingerprint"].startswith("SHA256:")
    assert lines[0]["expires"] == "2026-12-26T12:00:00Z"


def test_generated_keys_are_valid() -> None:
    pair = generate_keypair()
    assert is_valid_key(pair.public) and is_valid_key(pair.private.reveal())
    assert "redacted" in repr(pair) and pair.private.reveal() not in repr(pair)
    assert public_from_private(pair.private) == pair.public


def test_client_config_carries_what_diagnose_needs_and_the_qr_code_does_not(
    acme: Path, state_dir: Path
) -> None:
    from netsetup.diagnose.clientconfig import MARK, ClientConfig, DiagnoseInfo
    from netsetup.provision.client_config import qr_payload

    profile = load_profile(acme)
    result = service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    text = result.config.read_text()
    info = ClientConfig.parse(text).info
    assert info.responder_key is not None  # per peer: what the profile alone cannot give
    assert replace(info, responder_key=None) == DiagnoseInfo.from_profile(profile)
    assert MARK not in qr_payload(text)
    # wg-quick's own parser (the wireguard-tools package) still reads the file
    assert parse(result.config).mtu == 1380
