"""Profile defaults and access modes are written once; the parser, the model and the README read
them from there."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.profile.model import DEFAULTS, MODES, AccessMode, Profile, describe_defaults
from netsetup.profile.schema import parse_profile_data, parse_toml

REPO = Path(__file__).resolve().parents[2]
KEY = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
BASE = f"""
[company]
name = "A"
[gateway]
endpoint = "vpn.a.example:51821"
public_key = "{KEY}"
[network]
tunnel_v4 = "198.18.10.0/24"
[access]
[[portal]]
name = "docs"
host = "192.0.2.20"
port = 443
[voip]
sip_server = "192.0.2.40"
[diagnose]
[[diagnose.targets]]
name = "files"
host = "192.0.2.30"
port = 445
"""


def load(text: str, tmp_path: Path) -> Profile:
    data, syntax = parse_toml(text)
    assert syntax is None and data is not None
    profile, issues = parse_profile_data(data, tmp_path / "acme")
    assert issues == [] and profile is not None
    return profile


def constant_defaults() -> list[tuple[str, str]]:
    """(table key path, `key = value` line) of each default that is a constant."""
    out = []
    for line in describe_defaults():
        key, sep, value = line.partition(" = ")
        if sep and "(" not in value:  # "(kind ssh)" applies only to some targets
            out.append((key, f"{key.rsplit('.', 1)[1]} = {value}"))
    return out


@pytest.mark.parametrize(("key", "line"), constant_defaults())
def test_writing_a_default_out_changes_nothing(key: str, line: str, tmp_path: Path) -> None:
    # The documented value is valid TOML for its key and is exactly what the parser assumes.
    table = "[" + key.rsplit(".", 1)[0] + "]"
    header = "[[portal]]" if table == "[portal]" else table
    header = "[[diagnose.targets]]" if table == "[diagnose.targets]" else header
    assert header in BASE, header
    written = BASE.replace(header + "\n", f"{header}\n{line}\n", 1)
    assert load(written, tmp_path) == load(BASE, tmp_path)


def test_every_constant_default_is_documented() -> None:
    # a key may have one default per condition (the target port per kind), never two for one
    keys = {(f.metadata["key"], f.metadata.get("when")) for f in dataclasses.fields(DEFAULTS)}
    assert len(keys) == len(dataclasses.fields(DEFAULTS))
    assert {line.split(" ")[0] for line in describe_defaults()} >= {key for key, _ in keys}


def test_readme_lists_the_defaults_as_the_model_defines_them() -> None:
    readme = (REPO / "README.md").read_text()
    for line in describe_defaults():
        assert f"- `{line}`" in readme, f"README.md does not list the default `{line}`"


def test_access_modes_are_one_enum() -> None:
    assert MODES == ("dedicated", "agency")
    assert tuple(AccessMode) == MODES
    assert [m.name for m in AccessMode] == list(MODES)  # Typer lists the names as choices
    assert AccessMode("agency") is AccessMode.agency


def test_access_for_takes_the_enum_or_its_text(tmp_path: Path) -> None:
    text = BASE.replace("[access]\n", '[access]\ndedicated = ["192.0.2.0/24"]\n')
    profile = load(text, tmp_path)
    assert [str(r) for r in profile.access_for(AccessMode.dedicated)] == ["192.0.2.0/24"]
    # no access.agency: an agency assistant reaches the portals
    assert [str(r) for r in profile.access_for("agency")] == ["192.0.2.20/32 tcp/443"]


def test_the_model_imports_without_the_parser_and_the_store() -> None:
    # The CLI needs AccessMode for --mode before it knows whether a profile will be read at all.
    code = "import sys, netsetup.profile.model; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "'netsetup.profile.model'" in loaded
    assert "netsetup.profile.schema" not in loaded and "netsetup.profile.store" not in loaded
    assert "'tomllib'" not in loaded


def test_the_package_still_offers_its_names() -> None:
    import netsetup.profile as package
    from netsetup.profile.store import load_profile

    assert package.load_profile is load_profile
    assert package.Profile is Profile
    with pytest.raises(AttributeError):
        package.nothing_here  # noqa: B018
