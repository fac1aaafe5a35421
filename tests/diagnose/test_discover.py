"""Finding the active netsetup tunnel when the assistant gives no --config."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.diagnose.clientconfig import MARK
from netsetup.diagnose.discover import find_active_config
from netsetup.errors import InputError

BODY = """[Interface]
Address = {address}
[Peer]
PublicKey = MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=
Endpoint = 192.0.2.1:51820
AllowedIPs = 192.0.2.0/24
"""


def write(folder: Path, name: str, address: str, *, netsetup: bool = True) -> Path:
    path = folder / name
    head = f"{MARK} v=1 profile=acme-dental\n" if netsetup else ""
    path.write_text(head + BODY.format(address=address))
    return path


def test_the_config_whose_address_is_on_this_machine_is_chosen(tmp_path: Path) -> None:
    # 127.0.0.1 is on every machine's loopback: it stands for a tunnel that is up
    active = write(tmp_path, "wg-acme.conf", "127.0.0.1/32")
    write(tmp_path, "wg-other.conf", "198.18.99.2/32")
    write(tmp_path, "wg-foreign.conf", "127.0.0.1/32", netsetup=False)  # not netsetup's
    assert find_active_config([tmp_path]) == active


def test_no_active_tunnel_names_the_configs_found_and_the_option(tmp_path: Path) -> None:
    write(tmp_path, "wg-acme.conf", "198.18.99.2/32")
    with pytest.raises(InputError) as caught:
        find_active_config([tmp_path])
    message = caught.value.message
    assert "no active netsetup tunnel" in message
    assert "wg-acme.conf" in message
    assert "--config" in message


def test_several_active_tunnels_ask_for_a_choice(tmp_path: Path) -> None:
    write(tmp_path, "wg-a.conf", "127.0.0.1/32")
    write(tmp_path, "wg-b.conf", "127.0.0.1/32")
    with pytest.raises(InputError) as caught:
        find_active_config([tmp_path])
    assert "wg-a.conf" in caught.value.message and "wg-b.conf" in caught.value.message
    assert "--config" in caught.value.message
