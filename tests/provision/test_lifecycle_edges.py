"""Edges of the peer lifecycle: foreign keys, failed and successful rotations, reused names, the
required mode, the terminal QR code, the state folder's place and profiles behind symlinks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import ConflictError, InputError
from netsetup.gateway.render import render_gateway_config
from netsetup.keys import generate_keypair
from netsetup.profile import store
from netsetup.profile.store import load_peer, load_peers, load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.provision.client_config import qr_payload, terminal_qr
from netsetup.state import StateDir
from netsetup.validate import Severity
from netsetup.validate import validate as run_validate
from tests.provision.support import audit_lines, changed, netsetup, snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = FixedClock(NOW)
MARIA = PeerName("maria")
GATEWAY_KEY = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="


def later(days: int) -> FixedClock:
    return FixedClock(NOW + timedelta(days=days))


def secret_lines(folder: Path) -> set[str]:
    """Every private or preshared key written as text under `folder`."""
    found: set[str] = set()
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".conf", ".psk"):
            for line in path.read_text().splitlines():
                value = line.split(" = ", 1)[1] if " = " in line else line
                if line.startswith(("PrivateKey", "PresharedKey")) or path.suffix == ".psk":
                    found.add(value.strip())
    return found


# -- 5: --client-pubkey never takes a key the profile already knows ------------------------------


def test_client_pubkey_refuses_the_gateways_own_key(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    assert profile.gateway.public_key == GATEWAY_KEY
    with pytest.raises(InputError, match="gateway's own public key"):
        service.provision(
            profile,
            PeerName("x"),
            "dedicated",
            state=StateDir(),
            client_pubkey=GATEWAY_KEY,
            clock=AT,
        )
    assert not state_dir.exists() and not (acme / "peers").exists()
    result = netsetup(
        "provision", str(acme), "x", "--mode", "agency", "--client-pubkey", GATEWAY_KEY
    )
    assert result.returncode == 2 and "gateway's own public key" in result.stderr


@pytest.mark.parametrize("holder_state", ["active", "expired", "revoked"])
def test_client_pubkey_refuses_another_peers_key(
    acme: Path, state_dir: Path, tmp_path: Path, holder_state: str
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    own = generate_keypair().public
    expires = "1d" if holder_state == "expired" else None
    service.provision(
        profile,
        PeerName("ann"),
        "dedicated",
        state=state,
        client_pubkey=own,
        expires=expires,
        clock=AT,
    )
    service.provision(profile, PeerName("bob"), "dedicated", state=state, clock=AT)
    if holder_state == "revoked":
        service.revoke(profile, PeerName("ann"), state=state, clock=AT)
    clock = later(2) if holder_state == "expired" else AT
    before = snapshot(tmp_path)
    with pytest.raises(ConflictError, match="already the public key of a peer") as caught:
        service.provision(
            profile, PeerName("cat"), "agency", state=state, client_pubkey=own, clock=clock
        )
    assert str(caught.value.where).endswith("ann.toml")
    with pytest.raises(ConflictError, match="already the public key of a peer"):
        service.rotate(profile, PeerName("bob"), state=state, client_pubkey=own, clock=AT)
    with pytest.raises(InputError, match="gateway's own public key"):
        service.rotate(profile, PeerName("bob"), state=state, client_pubkey=GATEWAY_KEY, clock=AT)
    bob_key = load_peer(profile, PeerName("bob")).public_key
    with pytest.raises(ConflictError, match="already the public key"):  # its own current key
        service.rotate(profile, PeerName("bob"), state=state, client_pubkey=bob_key, clock=AT)
    assert changed(before, snapshot(tmp_path)) == []


# -- 6: a failing command changes nothing; a rotation leaves no old secret behind ---------------


def _disk_full(*_: object) -> Path:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["default", "out"])
def test_a_failed_rotate_leaves_every_file_as_it_was(
    acme: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    out = tmp_path / "handoff" if where == "out" else None
    first = service.provision(
        profile, MARIA, "dedicated", state=state, qr=True, out_dir=out, clock=AT
    )
    assert first.config.exists() and len(first.qr_files) == 2
    before = snapshot(tmp_path)
    monkeypatch.setattr(service, "write_peer_text", _disk_full)
    for qr in (True, False):
        for target in (out, tmp_path / "elsewhere"):
            with pytest.raises(OSError, match="No space"):
                service.rotate(profile, MARIA, state=state, out_dir=target, qr=qr, clock=AT)
            assert changed(before, snapshot(tmp_path)) == [], (qr, target)
    monkeypatch.setattr(service, "write_peer_text", _disk_full)
    with pytest.raises(OSError, match="No space"):
        service.revoke(profile, MARIA, state=state, clock=AT)
    with pytest.raises(OSError, match="No space"):
        service.renew(profile, MARIA, "3d", state=state, clock=AT)
    with pytest.raises(OSError, match="No space"):
        service.provision(
            profile, PeerName("ines"), "agency", state=state, out_dir=tmp_path / "i", clock=AT
        )
    assert changed(before, snapshot(tmp_path)) == []


def test_a_rotation_removes_every_old_secret_where_it_wrote(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    out = tmp_path / "handoff"
    first = service.provision(profile, MARIA, "dedicated", state=state, qr=True, clock=AT)
    default_dir = first.config.parent
    old = secret_lines(state_dir)
    assert len(old) == 2  # the private key (config) and the preshared key (config and .psk)
    old_images = {p: p.read_bytes() for p in first.qr_files}

    # rotate in place without --qr: the old QR codes (they hold the old private key) go
    second = service.rotate(profile, MARIA, state=state, clock=AT)
    assert second.config == first.config and second.qr_files == []
    assert [p for p in old_images if p.exists()] == []
    assert not old & secret_lines(state_dir)

    # rotate with --qr, then into another folder: the default folder goes with its old key
    third = service.rotate(profile, MARIA, state=state, qr=True, clock=AT)
    assert all(p.read_bytes() != old_images[p] for p in third.qr_files)
    old = secret_lines(state_dir)
    fourth = service.rotate(profile, MARIA, state=state, out_dir=out, qr=True, clock=AT)
    assert not default_dir.exists()
    assert not old & (secret_lines(state_dir) | secret_lines(out))
    # and again in that folder, without --qr: its QR codes go too
    old = secret_lines(out)
    service.rotate(profile, MARIA, state=state, out_dir=out, clock=AT)
    assert [p for p in fourth.qr_files if p.exists()] == []
    assert not old & (secret_lines(state_dir) | secret_lines(out))
    assert len(list((state_dir / "acme-dental" / "psk").iterdir())) == 1
    assert [p.name for p in out.iterdir()] == ["wg-acme.conf"]
    assert not list(tmp_path.rglob("*.pending")) and not list(tmp_path.rglob("*.tmp"))


# -- 8: a revoked name can be given again --------------------------------------------------------


def test_a_revoked_name_in_quarantine_needs_reuse_name(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    old = service.provision(profile, MARIA, "dedicated", state=state, clock=AT)
    service.revoke(profile, MARIA, state=state, clock=AT)
    before = snapshot(tmp_path)
    with pytest.raises(ConflictError, match="--reuse-name") as caught:
        service.provision(profile, MARIA, "agency", state=state, clock=later(1))
    assert "`revoke`" not in caught.value.message  # the old hint pointed back and forth
    assert "2026-12-26T12:00:00Z" in str(caught.value)  # when the quarantine ends
    assert changed(before, snapshot(tmp_path)) == []
    # rotate points to provision, which (above) points to --reuse-name: no circle
    with pytest.raises(ConflictError, match="--reuse-name"):
        service.rotate(profile, MARIA, state=state, clock=later(1))

    new = service.provision(profile, MARIA, "agency", state=state, reuse_name=True, clock=later(1))
    assert new.peer.address_v4 != old.peer.address_v4
    assert new.peer.address_v6 != old.peer.address_v6
    retired = list((acme / "peers").glob("maria.revoked-*.toml"))
    assert len(retired) == 1 and '"revoked"' in retired[0].read_text()
    assert [p.name for p in load_peers(profile)] == ["maria"]  # one maria: the new one
    assert load_peer(profile, MARIA).status == "active"
    report = run_validate([acme], now=NOW + timedelta(days=1), fail_on=Severity.WARNING)
    assert report.findings == [], [str(f) for f in report.findings]
    # validate still sees the old address held: a peer file put on it by hand is refused
    hand = acme / "peers" / "hand.toml"
    hand.write_text(
        (acme / "peers" / "maria.toml")
        .read_text()
        .replace('"maria"', '"hand"')
        .replace(new.peer.address_v4, old.peer.address_v4)
        .replace(str(new.peer.address_v6), str(old.peer.address_v6))
        .replace(load_peer(profile, MARIA).public_key, generate_keypair().public)
    )
    report = run_validate([acme], now=NOW + timedelta(days=1))
    assert [f.code for f in report.findings] == ["NS103", "NS103"], [
        str(f) for f in report.findings
    ]
    assert all("quarantined" in f.message for f in report.findings)
    hand.unlink()
    # the old address stays in quarantine: the next peer does not get it
    other = service.provision(profile, PeerName("ines"), "dedicated", state=state, clock=later(2))
    assert other.peer.address_v4 not in (old.peer.address_v4, new.peer.address_v4)
    # once the quarantine is over, it is free again
    free = service.provision(profile, PeerName("joe"), "dedicated", state=state, clock=later(31))
    assert free.peer.address_v4 == old.peer.address_v4
    # the gateway gets the three active peers, never the retired record
    rendered = render_gateway_config(profile, load_peers(profile), state, later(30).now())
    assert rendered.count("[Peer]") == 3 and "maria.revoked" not in rendered


def test_a_revoked_name_is_free_after_its_quarantine(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    old = service.provision(profile, MARIA, "dedicated", state=state, clock=AT)
    service.revoke(profile, MARIA, state=state, clock=AT)
    new = service.provision(profile, MARIA, "agency", state=state, clock=later(31))
    assert load_peer(profile, MARIA).mode == "agency"
    assert new.peer.address_v4 == old.peer.address_v4  # its quarantine has ended
    assert not list((acme / "peers").glob("maria.revoked-*"))
    assert [json.loads(line)["action"] for line in audit_lines(state_dir)] == [
        "provision",
        "revoke",
        "provision",
    ]


def test_an_existing_peer_is_not_replaced(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    service.provision(profile, MARIA, "dedicated", state=StateDir(), clock=AT)
    with pytest.raises(ConflictError, match=r"already exists.*rotate"):
        service.provision(profile, MARIA, "dedicated", state=StateDir(), reuse_name=True, clock=AT)


def test_the_cli_reuses_a_name_and_validate_agrees(acme: Path, state_dir: Path) -> None:
    assert netsetup("provision", str(acme), "maria", "--mode", "dedicated").returncode == 0
    assert netsetup("revoke", str(acme), "maria").returncode == 0
    again = netsetup("provision", str(acme), "maria", "--mode", "dedicated")
    assert again.returncode == 2 and "--reuse-name" in again.stderr
    again = netsetup("provision", str(acme), "maria", "--mode", "dedicated", "--reuse-name")
    assert again.returncode == 0, again.stderr
    checked = netsetup("validate", str(acme))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- 9: --mode is required; the hints name both gateway steps ------------------------------------


def test_provision_without_mode_is_a_usage_error(acme: Path, state_dir: Path) -> None:
    result = netsetup("provision", str(acme), "maria")
    assert result.returncode == 2
    assert "Missing option '--mode'" in result.stderr
    assert "dedicated" in result.stderr and "agency" in result.stderr
    assert not state_dir.exists() and not (acme / "peers").exists()


def test_every_change_names_both_gateway_steps(acme: Path, state_dir: Path) -> None:
    ref = str(acme)
    runs = [
        ("provision", ref, "maria", "--mode", "dedicated"),
        ("rotate", ref, "maria"),
        ("renew", ref, "maria", "--expires", "10d"),
        ("revoke", ref, "maria"),
    ]
    for args in runs:
        result = netsetup(*args)
        assert result.returncode == 0, result.stderr
        assert f"netsetup render {ref} --out FILE" in result.stdout, args
        assert f"netsetup render {ref} --firewall --out FILE" in result.stdout, args


# -- 10: the terminal QR code fits 80 columns -----------------------------------------------------


def test_the_terminal_qr_code_fits_80_columns(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    assert profile.network.tunnel_v6 is not None  # a dedicated config with IPv6: the long case
    result = service.provision(profile, MARIA, "dedicated", state=StateDir(), clock=AT)
    text = result.config.read_text()
    assert any(line.startswith("#") for line in text.splitlines())
    payload = qr_payload(text)
    assert not [line for line in payload.splitlines() if line.startswith("#") or not line.strip()]
    keys = [line for line in text.splitlines() if re.match(r"^(\[\w+\]|\w+ = )", line)]
    assert payload.splitlines() == keys  # every section and key line, in order
    lines = terminal_qr(text).splitlines()
    assert len(lines) > 20
    assert max(len(line) for line in lines) <= 80, max(len(line) for line in lines)
    # drawn only on a terminal (the code is the private key): the command's stdout is a pty
    controller, terminal = os.openpty()
    with os.fdopen(controller, "rb") as screen:
        process = subprocess.Popen(
            [sys.executable, "-m", "netsetup", "rotate", str(acme), "maria", "--qr"],
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the command has closed the terminal
            while chunk := screen.read1(65536):
                shown += chunk
    assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    lines = shown.decode("utf-8").replace("\r\n", "\n").splitlines()
    blocks = [line for line in lines if set(line) & set("▀▄█")]
    assert len(blocks) > 20 and max(len(line) for line in blocks) <= 80


# -- 11: the state folder outside profiles/; a profile behind a symlink is its real self --------


@pytest.mark.parametrize("inside", ["profiles/state", "profiles/acme-dental/.state"])
def test_a_state_folder_inside_the_profiles_is_refused(
    acme: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    state_root = tmp_path / inside
    monkeypatch.setenv("NETSETUP_STATE_DIR", str(state_root))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="state folder"):
        service.provision(load_profile(acme), MARIA, "dedicated", state=StateDir(), clock=AT)
    result = netsetup("provision", str(acme), "maria", "--mode", "dedicated")
    assert result.returncode == 2 and "state folder" in result.stderr
    assert changed(before, snapshot(tmp_path)) == []
    # a symlink from outside into profiles/ is inside too
    link = tmp_path / "link-state"
    link.symlink_to(tmp_path / "profiles", target_is_directory=True)
    monkeypatch.setenv("NETSETUP_STATE_DIR", str(link / "s"))
    with pytest.raises(InputError, match="state folder"):
        service.revoke(load_profile(acme), MARIA, state=StateDir(), clock=AT)


@pytest.mark.parametrize("how", ["alias-id", "alias-path", "elsewhere"])
def test_a_profile_behind_a_symlink_uses_its_real_id(
    acme: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    (acme.parent / "alias").symlink_to("acme-dental", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "office").symlink_to(acme, target_is_directory=True)
    monkeypatch.setenv("NETSETUP_PROFILES", str(acme.parent))
    ref = {
        "alias-id": "alias",
        "alias-path": str(acme.parent / "alias"),
        "elsewhere": str(tmp_path / "elsewhere" / "office"),
    }[how]
    result = netsetup("provision", ref, "maria", "--mode", "dedicated", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["profile"] == "acme-dental"
    assert len(list((state_dir / "acme-dental" / "psk").glob("maria.*.psk"))) == 1
    assert sorted(p.name for p in state_dir.iterdir()) == ["acme-dental", "audit.jsonl"]
    config = Path(document["config"])
    assert config.parent == state_dir / "acme-dental" / "clients" / "maria"
    assert config.read_text().startswith("# netsetup: maria on acme-dental (dedicated)")
    assert json.loads(audit_lines(state_dir)[0])["profile"] == "acme-dental"
    assert (acme / "peers" / "maria.toml").is_file()
    assert netsetup("revoke", ref, "maria").returncode == 0
    assert json.loads(audit_lines(state_dir)[1])["profile"] == "acme-dental"
    assert not list((state_dir / "acme-dental" / "psk").glob("maria.*.psk"))
    assert store.resolve_profile_dir(ref) == acme.resolve()


def test_no_secret_is_ever_written_under_profiles(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, MARIA, "dedicated", state=state, qr=True, clock=AT)
    service.rotate(profile, MARIA, state=state, qr=True, clock=AT)
    service.revoke(profile, MARIA, state=state, clock=AT)
    service.provision(profile, MARIA, "agency", state=state, reuse_name=True, clock=AT)
    names = sorted(p.name for p in (acme / "peers").iterdir())
    assert names[0] == ".lock" and names[1] == "maria.revoked-" + names[1][14:]
    assert names[2:] == ["maria.toml"]
    for path in acme.rglob("*"):
        if path.is_file():
            assert not re.search(r"(?i)(private|preshared)_?key", path.read_text()), path
    assert os.stat(acme / "peers" / "maria.toml").st_mode & 0o777 == 0o644
