"""Reading WireGuard's state: found by the config's public key, "not readable" as a normal answer,
private keys never kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from netsetup.diagnose import wgstate
from netsetup.diagnose.wgstate import InterfaceState, Unreadable, find_in_dump, read_state
from netsetup.keys import generate_keypair, generate_preshared_key

OURS = generate_keypair()
OTHER = generate_keypair()
GATEWAY = generate_keypair()
PSK = generate_preshared_key()


def dump() -> str:
    """`wg show all dump` with two interfaces (the other one first), tab-separated as wg prints."""
    rows = [
        ["wg-other", OTHER.private.reveal(), OTHER.public, "51820", "off"],
        ["wg-other", GATEWAY.public, "(none)", "(none)", "10.0.0.2/32", "0", "0", "0", "off"],
        ["wg-acme", OURS.private.reveal(), OURS.public, "56330", "off"],
        [
            "wg-acme",
            GATEWAY.public,
            PSK.reveal(),
            "203.0.113.10:51820",
            "192.0.2.0/24,198.18.10.1/32",
            "1795778338",
            "220",
            "404",
            "25",
        ],
    ]
    return "\n".join("\t".join(r) for r in rows) + "\n"


def test_the_interface_is_found_by_the_public_key_not_the_name() -> None:
    found = find_in_dump(dump(), OURS.public)
    assert found is not None
    assert found.name == "wg-acme" and found.listen_port == 56330
    (peer,) = found.peers
    assert peer.public_key == GATEWAY.public
    assert peer.endpoint == "203.0.113.10:51820"
    assert (peer.latest_handshake, peer.rx_bytes, peer.tx_bytes, peer.keepalive) == (
        1795778338,
        220,
        404,
        25,
    )
    assert found.peer(GATEWAY.public) is peer


def test_no_private_or_preshared_key_is_kept() -> None:
    found = find_in_dump(dump(), OURS.public)
    text = repr(found) + str(vars(found))
    for secret in (OURS.private.reveal(), OTHER.private.reveal(), PSK.reveal()):
        assert secret not in text


def test_an_unknown_key_finds_nothing() -> None:
    assert find_in_dump(dump(), generate_keypair().public) is None
    assert find_in_dump("", OURS.public) is None


def test_a_peer_that_never_shook_hands() -> None:
    found = find_in_dump(dump(), OTHER.public)
    assert found is not None
    assert found.peers[0].endpoint is None and found.peers[0].latest_handshake == 0


def test_without_wg_and_without_the_package_it_is_unreadable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `wg` here
    found = read_state(OURS.public)
    assert isinstance(found, Unreadable)
    assert "`wg` tool is not installed" in found.reason


def test_a_key_on_no_interface_is_unreadable_not_an_error() -> None:
    # the real `wg` and the real package on this machine: our fresh key is on no interface
    found = read_state(generate_keypair().public, timeout=5)
    assert isinstance(found, Unreadable)
    assert found.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_as_an_unprivileged_user_the_state_is_not_readable() -> None:
    """The reader run as `nobody` (through Debian's python3 with only this module): a normal
    "needs administrator rights" or "not found" answer, no exception."""
    source = Path(wgstate.__file__).read_text()
    folder = Path(tempfile.mkdtemp(prefix="netsetup-wgstate-"))  # pytest's tmp is root-only
    script = folder / "reader.py"
    script.write_text(source + f"\nprint(repr(read_state({OURS.public!r})))\n", encoding="utf-8")
    os.chmod(folder, 0o755)
    os.chmod(script, 0o644)
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-I",
                str(script),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd="/",
        )
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Unreadable("), done.stdout


def test_interface_state_peer_lookup() -> None:
    state = InterfaceState("x", OURS.public, None, (), "wg")
    assert state.peer(GATEWAY.public) is None
