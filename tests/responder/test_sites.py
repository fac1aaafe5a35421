"""`netsetup responder --gateway NAME`: the witness of one site of a profile with several
gateways; a site that does not exist, or --gateway for the office, is refused before it listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import run_main


@pytest.fixture
def sites(acme: Path) -> Path:
    toml = acme / "profile.toml"
    text = toml.read_text().replace("[gateway]\n", '[[gateway]]\nname = "main"\n', 1)
    branch = (
        '\n[[gateway]]\nname = "branch"\nendpoint = "branch.acme-dental.example:51830"\n'
        'public_key = "ZGREHISx0CqdnsdUdoql8zMPhnqou6pXvj9onSA3xso="\n'
        'tunnel_v4 = "198.18.11.0/24"\n'
    )
    toml.write_text(text.replace("listen_port = 51820\n", "listen_port = 51820\n" + branch, 1))
    return acme


def test_an_unknown_site_is_refused(sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["responder", "--profile", str(sites), "--role", "gateway", "--gateway", "nowhere"]
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert "has no gateway 'nowhere' (its gateways: 'main', 'branch') (--gateway)" in err


def test_the_office_serves_every_site(sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["responder", "--profile", str(sites), "--role", "office", "--gateway", "branch"]
    code, _, err = run_main(argv, capsys)
    assert code == 2 and "--gateway is for --role gateway" in err
