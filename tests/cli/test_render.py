"""`netsetup render`: --firewall --out writes a file, a pipe gets no unusable config, a missing
gateway key is said loudly, and addresses the gateway would misroute stop the render."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.gateway.render import render_gateway
from netsetup.keys import generate_keypair
from netsetup.profile.store import load_profile
from netsetup.state import StateDir

from .support import run_main, run_process

KEY_LINE = re.compile(r"^(PrivateKey|PresharedKey) = [A-Za-z0-9+/]{43}=$", re.M)


@pytest.fixture
def two_peers(acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for name in ("maria", "ines"):
        assert run_main(["provision", str(acme), name, "--mode", "dedicated"], capsys)[0] == 0
    return acme


def _edit_peer(profile: Path, name: str, key: str, value: str) -> Path:
    path = profile / "peers" / f"{name}.toml"
    text = re.sub(rf'^{key} = ".*"$', f'{key} = "{value}"', path.read_text(), flags=re.M)
    path.write_text(text)
    return path


def _line_of(path: Path, key: str) -> int:
    return next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(key)
    )


def test_firewall_out_writes_the_ruleset_to_the_file(
    two_peers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nft" / "netsetup.nft"
    code, out, err = run_main(
        ["render", str(two_peers), "--firewall", "--out", str(target)], capsys
    )
    assert code == 0, err
    text = target.read_text()
    assert "table inet netsetup_wg0 {" in text and "198.18.10.2" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert out == (
        f"wrote {target} (0600): nftables ruleset for 2 active peer(s); "
        f"load it with `nft -f {target}`\n"
    )
    assert "table inet" not in out
    assert [p.name for p in target.parent.iterdir()] == ["netsetup.nft"]  # no temp file left


def test_firewall_to_a_pipe_is_fine(two_peers: Path, state_dir: Path) -> None:
    result = run_process("render", str(two_peers), "--firewall")
    assert result.returncode == 0, result.stderr
    assert "table inet netsetup_wg0 {" in result.stdout


def test_config_to_a_pipe_is_refused(two_peers: Path, state_dir: Path, tmp_path: Path) -> None:
    result = run_process("render", str(two_peers))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: the gateway config on stdout has its keys redacted")
    assert "--out FILE" in result.stderr and "(stdout is not a terminal)" in result.stderr


def test_config_to_a_terminal_is_a_redacted_preview(
    two_peers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["render", str(two_peers)], capsys, terminal=True)
    assert code == 0, err
    assert out.count("[Peer]") == 2
    assert out.count("PresharedKey = (redacted") == 2
    assert not KEY_LINE.search(out)
    code, out, err = run_main(["render", str(two_peers)], capsys, terminal=False)
    assert code == 2 and out == "" and "--out FILE" in err


def test_out_without_gateway_key_warns_and_shows_how_to_add_it(
    two_peers: Path, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "gw" / "wg0.conf"
    code, out, err = run_main(["render", str(two_peers), "--out", str(target)], capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {target} (0600): 2 active peer(s)")
    assert "PrivateKey" not in target.read_text().split("[Peer]")[0].replace("No PrivateKey", "")
    key_path = state_dir / "acme-dental" / "gateway" / "private.key"
    assert err.startswith(f"warning: {target} has no PrivateKey")
    assert f"save it as {key_path} (mode 0600" in err
    assert "--gateway-key FILE" in err
    assert "wg set wg0 private-key FILE" in err

    key_file = tmp_path / "gw.key"
    key_file.write_text(generate_keypair().private.reveal() + "\n")
    code, _, err = run_main(
        ["render", str(two_peers), "--out", str(target), "--gateway-key", str(key_file)], capsys
    )
    assert (code, err) == (0, "")
    assert KEY_LINE.search(target.read_text().split("[Peer]")[0])
    key_path.parent.mkdir(parents=True, mode=0o700)
    key_path.write_text(key_file.read_text())
    key_path.chmod(0o600)
    assert run_main(["render", str(two_peers), "--out", str(target)], capsys)[::2] == (0, "")


@pytest.mark.parametrize("firewall", [False, True])
def test_two_peers_with_one_address_stop_the_render(
    two_peers: Path, tmp_path: Path, firewall: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    ines = _edit_peer(two_peers, "ines", "address_v4", "198.18.10.2")  # maria's
    maria = two_peers / "peers" / "maria.toml"
    target = tmp_path / "out" / "gateway.txt"
    argv = ["render", str(two_peers), "--out", str(target), *(["--firewall"] if firewall else [])]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == ""
    assert "peers 'ines' and 'maria' both have AllowedIPs 198.18.10.2/32" in err
    assert err.endswith(
        f"({ines}:{_line_of(ines, 'address_v4')}, {maria}:{_line_of(maria, 'address_v4')})\n"
    )
    assert not target.exists()


@pytest.mark.parametrize("firewall", [False, True])
def test_a_peer_claiming_the_portal_address_stops_the_render(
    two_peers: Path, tmp_path: Path, firewall: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    ines = _edit_peer(two_peers, "ines", "address_v4", "192.0.2.20")  # the document portal
    profile_file = two_peers / "profile.toml"
    target = tmp_path / "out" / "gateway.txt"
    argv = ["render", str(two_peers), "--out", str(target), *(["--firewall"] if firewall else [])]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == ""
    assert "peer 'ines' has AllowedIPs 192.0.2.20/32, which is outside the tunnel subnet " in err
    assert err.endswith(
        f"({ines}:{_line_of(ines, 'address_v4')}, "
        f"{profile_file}:{_line_of(profile_file, 'tunnel_v4')})\n"
    )
    assert not target.exists()


def test_out_of_tunnel_v6_and_the_gateway_address_are_refused_too(
    two_peers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_peer(two_peers, "ines", "address_v6", "2001:db8:20::5")  # the office LAN
    code, _, err = run_main(["render", str(two_peers), "--firewall"], capsys)
    assert code == 2 and "is outside the tunnel subnet 2001:db8:10::/64" in err
    _edit_peer(two_peers, "ines", "address_v6", "2001:db8:10::9")
    _edit_peer(two_peers, "ines", "address_v4", "198.18.10.1")
    code, _, err = run_main(["render", str(two_peers), "--firewall"], capsys)
    assert code == 2 and "198.18.10.1/32, which is the gateway's own tunnel address" in err


def test_a_revoked_peer_does_not_count(two_peers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["revoke", str(two_peers), "ines"], capsys)[0] == 0
    _edit_peer(two_peers, "ines", "address_v4", "192.0.2.20")  # not on the gateway any more
    code, out, err = run_main(["render", str(two_peers), "--firewall"], capsys)
    assert code == 0, err
    assert "192.0.2.20" not in out.split("the active peers")[1]


def test_the_core_decides_and_returns_a_result(two_peers: Path, tmp_path: Path) -> None:
    profile = load_profile(two_peers)
    now = datetime(2026, 11, 27, tzinfo=UTC)
    with pytest.raises(InputError, match="--out FILE"):
        render_gateway(profile, StateDir(), now)
    preview = render_gateway(profile, StateDir(), now, to_terminal=True)
    assert preview.kind == "wireguard" and preview.written is None
    assert preview.text is not None and "(redacted" in preview.text
    assert (preview.active, preview.left_out) == (2, 0)
    ruleset = render_gateway(profile, StateDir(), now, firewall=True)
    assert ruleset.kind == "firewall" and ruleset.text and "table inet" in ruleset.text
    written = render_gateway(profile, StateDir(), now, out=tmp_path / "gw" / "wg0.conf")
    assert written.text is None and written.written == tmp_path / "gw" / "wg0.conf"
    assert [w.what.split(":")[0] for w in written.warnings] == [
        f"{tmp_path / 'gw' / 'wg0.conf'} has no PrivateKey"
    ]
