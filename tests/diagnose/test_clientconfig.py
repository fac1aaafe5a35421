"""The client config diagnose reads, and the netsetup-diagnose lines provision writes into it."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.diagnose.clientconfig import (
    MARK,
    ClientConfig,
    DiagnoseInfo,
    candidate_configs,
    render_info_lines,
)
from netsetup.errors import InputError
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.store import load_profile

REPO = Path(__file__).resolve().parents[2]
ACME = REPO / "profiles" / "acme-dental"


def config_text(extra: str = "", *, private: str | None = None, psk: str | None = None) -> str:
    private = private or generate_keypair().private.reveal()
    psk = psk or generate_preshared_key().reveal()
    return (
        f"{extra}[Interface]\nPrivateKey = {private}\n"
        "Address = 198.18.10.2/32, 2001:db8:10::2/128\n"
        "DNS = 192.0.2.53, acme-dental.example\nMTU = 1380\n\n[Peer]\n"
        "PublicKey = MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=\n"
        f"PresharedKey = {psk}\nEndpoint = vpn.acme-dental.example:51820\n"
        "AllowedIPs = 192.0.2.0/24, 198.18.10.1/32\nPersistentKeepalive = 25\n"
    )


def test_the_profile_facts_survive_the_round_trip_through_comment_lines() -> None:
    profile = load_profile(ACME)
    info = DiagnoseInfo.from_profile(profile)
    lines = render_info_lines(info)
    assert all(line.startswith(MARK) for line in lines)
    parsed = ClientConfig.parse("\n".join(lines) + "\n" + config_text()).info
    assert parsed == info
    assert parsed.company == "Acme Dental Practice"  # spaces survive, encoded
    assert parsed.witness_port == profile.gateway.listen_port + 1


def test_wireguard_values_are_read_with_their_lines() -> None:
    config = ClientConfig.parse(config_text(), Path("wg-acme.conf"))
    assert [str(a) for a in config.addresses] == ["198.18.10.2/32", "2001:db8:10::2/128"]
    assert [str(n) for n in config.allowed_ips] == ["192.0.2.0/24", "198.18.10.1/32"]
    assert config.endpoint == ("vpn.acme-dental.example", 51820)
    assert (config.mtu, config.keepalive) == (1380, 25)
    assert [str(s) for s in config.dns_servers] == ["192.0.2.53"]
    assert config.search_domains == ["acme-dental.example"]
    assert config.interface["mtu"].line == 5
    assert config.name == "wg-acme.conf"


def test_keys_never_show_in_repr_or_settings() -> None:
    pair = generate_keypair()
    psk = generate_preshared_key().reveal()
    config = ClientConfig.parse(config_text(private=pair.private.reveal(), psk=psk))
    shown = repr(config) + str(config.interface) + str(config.peers)
    assert pair.private.reveal() not in shown
    assert psk not in shown
    assert config.private_key is not None and config.private_key.reveal() == pair.private.reveal()
    assert config.client_public_key() == pair.public


def test_an_unreadable_netsetup_line_is_a_problem_with_its_line_not_a_crash() -> None:
    extra = (
        f"{MARK} gateway=not-an-address\n"
        f"{MARK} target=x kind=telnet host=192.0.2.9 port=23\n"
        f"{MARK} some words without equals\n"
        f"{MARK} future-thing=1 with=more\n"  # unknown: ignored, no problem
    )
    info = ClientConfig.parse(config_text(extra)).info
    assert [line for line, _ in info.problems] == [1, 2, 3]
    assert "telnet" in info.problems[1][1]
    assert info.gateway_v4 is None and info.targets == ()


@pytest.mark.parametrize(
    "text",
    ["", "just text\n", "PrivateKey = x\n", "[Interface\nAddress = 1\n"],
)
def test_not_a_wireguard_config_is_an_input_error_with_where(text: str) -> None:
    with pytest.raises(InputError) as caught:
        ClientConfig.parse(text, Path("wg-x.conf"))
    assert "wg-x.conf" in (caught.value.where or "")


def test_a_config_without_netsetup_lines_still_reads() -> None:
    config = ClientConfig.parse(config_text())
    assert config.info == DiagnoseInfo()


def test_reading_refuses_a_folder_and_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        ClientConfig.read(tmp_path)
    assert str(tmp_path) in (caught.value.where or "")


def test_candidates_are_configs_with_netsetup_lines(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text(f"{MARK} v=1 profile=a\n" + config_text())
    (tmp_path / "b.conf").write_text(config_text())
    (tmp_path / "c.txt").write_text(f"{MARK} v=1\n")
    assert candidate_configs([tmp_path, tmp_path / "missing"]) == [tmp_path / "a.conf"]


def test_a_missing_config_is_no_such_file_and_a_dangling_link_is_named_so(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        ClientConfig.read(tmp_path / "wg-acme.conf")
    assert "no such file" in missing.value.message
    (tmp_path / "link.conf").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError) as dangling:
        ClientConfig.read(tmp_path / "link.conf")
    assert "broken symlink" in dangling.value.message
