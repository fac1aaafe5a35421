"""`netsetup gateway trust` against a real sshd on 127.0.0.1: the fingerprint it offers is
pinned only once confirmed (or with --yes and a matching --expect), every other line of
profile.toml kept; a different pinned key is shown beside the offered one and kept."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from netsetup.profile.edit import set_gateway_key
from netsetup.profile.store import load_profile

from ..cli.support import run_main

# the real sshd on 127.0.0.1 of test_remote, as a fixture of this module too
from .test_remote import Server
from .test_remote import server as sshd  # noqa: F401

OTHER = "SHA256:" + "B" * 43


@pytest.fixture
def profile(
    acme: Path,
    state_dir: Path,
    sshd: Server,  # noqa: F811  (the fixture imported above)
) -> Path:
    """acme-dental reached at the test's sshd, with no host key pinned yet."""
    path = acme / "profile.toml"
    path.write_text(re.sub(r"(?m)^host_key\s*=.*\n", "", path.read_text()))
    set_gateway_key(path, 0, "ssh", f"root@127.0.0.1:{sshd.port}")
    return acme


def pinned(profile: Path) -> str | None:
    return load_profile(profile).gateway.host_key


def test_yes_with_the_expected_key_pins_it_keeping_every_other_line(
    profile: Path,
    sshd: Server,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (profile / "profile.toml").read_text()
    code, out, err = run_main(
        ["gateway", "trust", str(profile), "--yes", "--expect", sshd.fingerprint], capsys
    )
    assert code == 0, err
    assert f"offers the host key {sshd.fingerprint}" in out
    assert f"pinned {sshd.fingerprint} for gateway gateway" in out
    assert pinned(profile) == sshd.fingerprint
    after = (profile / "profile.toml").read_text().splitlines()
    assert [line for line in after if line not in before.splitlines()] == [
        f'host_key = "{sshd.fingerprint}"'
    ]
    code, out, _ = run_main(["gateway", "trust", str(profile), "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["schema"] == "netsetup.gateway-trust/1"
    assert document["status"] == "same" and document["written"] is False


def test_an_unexpected_key_is_refused_and_nothing_written(
    profile: Path,
    sshd: Server,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (profile / "profile.toml").read_bytes()
    code, _, err = run_main(["gateway", "trust", str(profile), "--yes", "--expect", OTHER], capsys)
    assert code == 3
    assert OTHER in err and sshd.fingerprint in err and "nothing was written" in err
    assert (profile / "profile.toml").read_bytes() == before
    code, _, err = run_main(["gateway", "trust", str(profile), "--yes"], capsys)
    assert code == 2 and "--expect" in err
    code, _, err = run_main(["gateway", "trust", str(profile)], capsys)  # no terminal to ask
    assert code == 2 and "no terminal to confirm on" in err
    assert (profile / "profile.toml").read_bytes() == before


def test_a_changed_key_is_shown_side_by_side_and_kept_without_replace(
    profile: Path,
    sshd: Server,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_gateway_key(profile / "profile.toml", 0, "host_key", OTHER)
    code, out, err = run_main(
        ["gateway", "trust", str(profile), "--yes", "--expect", sshd.fingerprint], capsys
    )
    assert code == 3
    assert "it differs from the key pinned in the profile:" in out
    assert f"  pinned in the profile:  {OTHER}" in err
    assert f"  offered by the gateway: {sshd.fingerprint}" in err
    assert pinned(profile) == OTHER
    code, _, err = run_main(
        ["gateway", "trust", str(profile), "--yes", "--expect", sshd.fingerprint, "--replace"],
        capsys,
    )
    assert code == 0, err
    assert pinned(profile) == sshd.fingerprint


@pytest.mark.parametrize(("answer", "written"), [("y\n", True), ("n\n", False)])
def test_on_a_terminal_the_admin_is_asked(
    profile: Path,
    sshd: Server,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    written: bool,
) -> None:
    terminal = io.StringIO(answer)
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", terminal)
    code, out, err = run_main(["gateway", "trust", str(profile)], capsys)
    assert "Is this the fingerprint the gateway's console shows?" in out
    assert (code, pinned(profile)) == ((0, sshd.fingerprint) if written else (2, None))
    if not written:
        assert "not confirmed: nothing was written" in err
