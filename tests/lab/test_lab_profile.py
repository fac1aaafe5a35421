"""The lab's profile data is changed structurally, never by editing text: the profile copy (parsed
TOML written back), a peer's expiry (through the peer model, by the lab's clock), a client's
AllowedIPs (per [Peer] section). No root needed."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import InputError
from netsetup.lab import Lab, tomlwrite
from netsetup.lab.labprofile import EXPIRED_SINCE, expire_peer, write_lab_profile
from netsetup.lab.wireguard import set_allowed_ips, with_allowed_ips
from netsetup.profile.store import load_peer, load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir

from .conftest import REPO

SHIPPED = (
    '[gateway]\nendpoint = "vpn.acme-dental.example:51820"\n'
    'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="\ninterface = "wg0"\n'
    "listen_port = 51820\n"
)
LAB_KEY = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
MOMENT = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize("profile", ["acme-dental", "brightdesk-agency"])
def test_toml_writer_round_trips_the_shipped_profiles(profile: str) -> None:
    data = tomllib.loads((REPO / "profiles" / profile / "profile.toml").read_text())
    assert tomllib.loads(tomlwrite.dumps(data)) == data


def test_toml_writer_round_trips_every_type() -> None:
    data = {
        "title": 'quote " backslash \\ tab \t newline \n bell \x07 é',
        "count": -3,
        "ratio": 0.25,
        "big": float("inf"),
        "on": True,
        "off": False,
        "when": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "empty": [],
        "mixed": [1, "two", [3.5]],
        "inline": [{"a": 1}, 2],
        "a.dotted key": "needs quotes",
        "table": {"inner": {"deep": "x"}, "after": 1, "list": [{"n": 1}, {"n": 2}]},
        "empty_table": {},
    }
    assert tomllib.loads(tomlwrite.dumps(data)) == data
    with pytest.raises(TypeError, match="set"):
        tomlwrite.dumps({"x": {1, 2}})


def _profile_with(tmp_path: Path, gateway_text: str) -> Path:
    """acme-dental with its [gateway] table written as `gateway_text` (at the top of the file
    when it is a top-level key, not a table header)."""
    directory = tmp_path / "src" / "acme-dental"
    shutil.copytree(
        REPO / "profiles" / "acme-dental", directory, ignore=shutil.ignore_patterns("peers")
    )
    text = (directory / "profile.toml").read_text()
    start = text.index("[gateway]")
    end = text.index("[network]")
    rest = text[:start] + text[end:]
    if gateway_text.startswith("["):
        rest = text[:start] + gateway_text + "\n" + text[end:]
    else:
        rest = gateway_text + rest
    (directory / "profile.toml").write_text(rest)
    return directory


@pytest.mark.parametrize(
    "gateway_text",
    [
        SHIPPED,
        # spaces in the header and around the key, a comment after the value
        '[ gateway ]\nendpoint = "vpn.acme-dental.example:51820"\n'
        '  public_key="MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=" # the office\n'
        "listen_port = 51820\n",
        # an inline table: no [gateway] header at all
        'gateway = { endpoint = "vpn.acme-dental.example:51820", '
        'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=", listen_port = 51820 }\n',
    ],
    ids=["shipped", "spaced", "inline"],
)
def test_lab_profile_copy_takes_the_labs_gateway_key(tmp_path: Path, gateway_text: str) -> None:
    source = load_profile(_profile_with(tmp_path, gateway_text))
    copy_dir = write_lab_profile(source, tmp_path / "lab", LAB_KEY, "nl123456gw")
    copy = load_profile(copy_dir)
    assert copy.gateway.public_key == LAB_KEY
    assert copy.gateway.interface == "nl123456gw"
    before = tomllib.loads(source.profile_file.read_text())
    after = tomllib.loads((copy_dir / "profile.toml").read_text())
    before["gateway"].update(public_key=LAB_KEY, interface="nl123456gw")
    assert after == before  # nothing else changed
    assert not (copy_dir / "peers").exists()


def test_lab_profile_copy_needs_a_gateway_table(tmp_path: Path) -> None:
    directory = _profile_with(tmp_path, SHIPPED)
    source = load_profile(directory)
    # the file changes after it was loaded: the copy is made from what is on disk now
    (directory / "profile.toml").write_text('gateway = "not a table"\n')
    with pytest.raises(InputError, match=r"needs a \[gateway\] table"):
        write_lab_profile(source, tmp_path / "lab", LAB_KEY, "nl123456gw")
    assert not (tmp_path / "lab").exists()


@pytest.fixture
def provisioned(acme: Path, state_dir: Path) -> Path:
    """acme-dental (a copy) with one peer, maria, expiring in 30 days."""
    service.provision(load_profile(acme), PeerName("maria"), "agency", state=StateDir())
    return acme


def test_expire_peer_writes_the_expiry_through_the_peer_model(provisioned: Path) -> None:
    profile = load_profile(provisioned)
    before = load_peer(profile, "maria")
    expires = expire_peer(profile, PeerName("maria"), MOMENT)
    after = load_peer(profile, "maria")
    assert expires == after.expires == MOMENT - EXPIRED_SINCE
    assert after.is_expired(MOMENT) and not after.is_expired(MOMENT - timedelta(hours=1))
    assert (after.public_key, after.address_v4, after.created) == (
        before.public_key,
        before.address_v4,
        before.created,
    )


def test_the_lab_takes_its_time_from_its_clock(provisioned: Path, tmp_path: Path) -> None:
    """A planned (not built) lab whose profile copy has a peer: `expire` uses the lab's clock."""
    clock = FixedClock(MOMENT)
    lab = Lab.create(provisioned, base=tmp_path / "run", clock=clock)
    assert lab.record.created == "2031-05-06T07:08:09+00:00"
    shutil.copytree(provisioned, lab.profile_dir)
    clock.advance(timedelta(days=400))
    lab.expire("maria", sync=False)
    expires = load_peer(lab.profile(), "maria").expires
    assert expires == MOMENT + timedelta(days=400) - EXPIRED_SINCE
    with pytest.raises(InputError, match="must be 1-32 characters"):
        lab.expire("../maria", sync=False)


def test_sip_certificate_is_valid_from_the_given_time(tmp_path: Path) -> None:
    from cryptography import x509

    from netsetup.lab.services import make_certificate

    key, cert = make_certificate(tmp_path, "acme-dental.example", ["192.0.2.40"], MOMENT)
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert loaded.not_valid_before_utc == MOMENT - timedelta(minutes=5)
    assert loaded.not_valid_after_utc == MOMENT + timedelta(days=1)
    assert key.stat().st_mode & 0o777 == 0o600


CLIENT_CONFIG = """\
# netsetup: profile acme-dental
[Interface]
PrivateKey = (a key)
Address = 198.18.10.2/32
AllowedIPs = 10.0.0.0/8

[Peer]
PublicKey = (the gateway)
allowedips = 192.0.2.0/24
  AllowedIPs=198.18.10.1/32
Endpoint = vpn.acme-dental.example:51820

[Peer]
PublicKey = (another)
Endpoint = 203.0.113.9:51820
"""


def test_allowed_ips_are_replaced_per_peer_section(tmp_path: Path) -> None:
    """Every spelling of AllowedIPs (wg reads keys case-insensitively, with any spaces) goes;
    each [Peer] gets exactly the new value; [Interface] and comments stay."""
    text = with_allowed_ips(CLIENT_CONFIG, "0.0.0.0/0")
    assert text.count("AllowedIPs = 0.0.0.0/0") == 2
    assert "192.0.2.0/24" not in text and "198.18.10.1/32" not in text
    assert "# netsetup: profile acme-dental" in text
    interface = text.split("[Peer]")[0]
    assert "AllowedIPs = 10.0.0.0/8" in interface  # not a peer's: left alone
    peers = text.split("[Peer]")[1:]
    assert all(p.lower().count("allowedips") == 1 for p in peers)
    config = tmp_path / "c.conf"
    config.write_text(CLIENT_CONFIG)
    config.chmod(0o600)
    set_allowed_ips(config, "192.0.2.0/24")
    assert config.read_text() == with_allowed_ips(CLIENT_CONFIG, "192.0.2.0/24")
    assert config.stat().st_mode & 0o777 == 0o600
