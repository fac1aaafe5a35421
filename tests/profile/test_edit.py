"""The line editor of profile.toml: one key set or replaced, every other line and comment kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.profile.edit import set_gateway_key, set_table_key

SINGLE = """\
# the company
[company]
name = "Acme"  # trailing comment

[gateway]
# where peers connect
endpoint = "vpn.acme.example:51820"
public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="   # from init
ssh = "root@192.0.2.1:22"

# the tunnel
[network]
tunnel_v4 = "198.18.10.0/24"
"""

SITES = """\
[company]
name = "Acme"

[[gateway]]
name = "main"
endpoint = "vpn.acme.example:51820"
host_key = "SHA256:old"  # pinned 2026-01-01

[[gateway]]
name = "branch"
endpoint = "branch.acme.example:51820"
# comment at the end of the table

[network]
tunnel_v4 = "198.18.10.0/24"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_a_key_is_added_after_the_tables_last_value(tmp_path: Path) -> None:
    path = write(tmp_path, SINGLE)
    assert set_gateway_key(path, 0, "host_key", "SHA256:abc+/def")
    text = path.read_text()
    assert text == SINGLE.replace(
        'ssh = "root@192.0.2.1:22"\n', 'ssh = "root@192.0.2.1:22"\nhost_key = "SHA256:abc+/def"\n'
    )
    assert tomllib.loads(text)["gateway"]["host_key"] == "SHA256:abc+/def"
    assert path.stat().st_mode & 0o777 == 0o644
    assert not set_gateway_key(path, 0, "host_key", "SHA256:abc+/def")  # already so: no write


def test_a_key_is_replaced_in_place_keeping_its_comment(tmp_path: Path) -> None:
    path = write(tmp_path, SINGLE)
    new_key = "2jOUm3LUEyINBg/fOVA4+aJw5uIzcK/eMePfWU/5tGY="
    assert set_gateway_key(path, 0, "public_key", new_key)
    lines = path.read_text().splitlines()
    old = SINGLE.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(lines, old, strict=True)) if a != b]
    assert changed == [7]
    assert lines[7] == f'public_key = "{new_key}"  # from init'


def test_the_nth_site_of_gateway_array_tables(tmp_path: Path) -> None:
    path = write(tmp_path, SITES)
    assert set_gateway_key(path, 1, "host_key", "SHA256:branch")
    assert set_gateway_key(path, 0, "host_key", "SHA256:new")
    data = tomllib.loads(path.read_text())
    assert [g["host_key"] for g in data["gateway"]] == ["SHA256:new", "SHA256:branch"]
    text = path.read_text()
    assert 'host_key = "SHA256:new"  # pinned 2026-01-01' in text
    # added after the branch's last value, before its trailing comment
    assert (
        'endpoint = "branch.acme.example:51820"\nhost_key = "SHA256:branch"\n'
        "# comment at the end of the table\n" in text
    )


def test_hostile_values_are_quoted(tmp_path: Path) -> None:
    path = write(tmp_path, SINGLE)
    value = 'x"\nPostUp = "rm -rf /'
    assert set_gateway_key(path, 0, "host_key", value)
    data = tomllib.loads(path.read_text())
    assert data["gateway"]["host_key"] == value
    assert "PostUp" not in data["gateway"]
    assert len(path.read_text().splitlines()) == len(SINGLE.splitlines()) + 1


def test_missing_tables_and_sites_are_clear_errors(tmp_path: Path) -> None:
    path = write(tmp_path, SINGLE)
    with pytest.raises(InputError, match="not a gateway number 2"):
        set_gateway_key(path, 1, "host_key", "x")
    with pytest.raises(InputError, match=r"no \[voip\] table"):
        set_table_key(path, "voip", "sip_server", "192.0.2.40")
    sites = write(tmp_path, SITES)
    with pytest.raises(InputError, match=r"no \[\[gateway\]\] number 3"):
        set_gateway_key(sites, 2, "host_key", "x")
    assert sites.read_text() == SITES


def test_a_value_the_line_editor_cannot_place_is_refused_unwritten(tmp_path: Path) -> None:
    text = '[gateway]\nendpoint = "a:1"\nadmin_from = [\n  "192.0.2.0/24",\n]\n'
    path = write(tmp_path, text)
    with pytest.raises(InputError, match="edit it by hand"):
        set_table_key(path, "gateway", "admin_from", "x")
    assert path.read_text() == text
