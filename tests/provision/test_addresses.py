"""Address allocation never hands out an address that any peer file holds.

The address index is a cache: these tests change peer files behind its back in the ways real
trees change (a merge conflict, `cp -a`/`tar` restoring times, a file replaced in place) and check
that no two peer files ever end up with the same address, or that provision stops and names the
file it cannot read, writing nothing.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tomllib
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import ProfileError
from netsetup.profile.model import Profile
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.provision.addresses import INDEX_FILE, AddressIndex, _read_index
from netsetup.state import StateDir

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def held_addresses(profile_dir: Path) -> list[str]:
    """Every IPv4 and IPv6 address written in the profile's peer files, parsed by tomllib."""
    out: list[str] = []
    for path in sorted((profile_dir / "peers").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        out.extend(data[key] for key in ("address_v4", "address_v6") if key in data)
    return out


def assert_unique(profile_dir: Path) -> None:
    addresses = held_addresses(profile_dir)
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    assert not duplicates, f"addresses held twice: {duplicates}"


def provision(profile: Profile, name: str, now: datetime = NOW) -> service.ProvisionResult:
    result = service.provision(
        profile, PeerName(name), "dedicated", state=StateDir(), clock=FixedClock(now)
    )
    settle(result.peer_file)
    return result


def settle(path: Path) -> None:
    """Wait until the file system clock has moved past `path`'s ctime, so that the next scan
    may index it (files changed in the scan's own clock tick are read again instead)."""
    probe = path.parent / ".settle-probe"
    while True:
        probe.touch()
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            probe.unlink()
            return


def restore_times(path: Path, before: os.stat_result) -> None:
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def moved_to(text: str, old: str, new: str) -> str:
    assert len(old) == len(new) and old in text
    return text.replace(old, new)


CONFLICTED = """\
# Written by netsetup. No secrets here: the keys that must stay private live with the
# assistant, on the gateway and in the admin's state directory.
name = "bob"
mode = "dedicated"
status = "active"
public_key = "{key}"
key_origin = "generated"
<<<<<<< HEAD
address_v4 = "198.18.10.3"
=======
address_v4 = "198.18.10.4"
>>>>>>> other-admin
created = 2026-11-26T12:00:00Z
"""


def test_a_merge_conflict_in_a_peer_file_stops_provision_and_names_it(
    acme: Path, state_dir: Path
) -> None:
    profile = load_profile(acme)
    provision(profile, "seed")  # .2, and an index
    public = tomllib.loads((acme / "profile.toml").read_text())["gateway"]["public_key"]
    (acme / "peers" / "bob.toml").write_text(CONFLICTED.format(key=public))
    peers_before = sorted(p.name for p in (acme / "peers").iterdir())
    state_before = sorted(str(p) for p in state_dir.rglob("*"))
    with pytest.raises(ProfileError) as caught:
        provision(profile, "maria")
    assert "unresolved git merge conflict" in str(caught.value)
    assert caught.value.where is not None
    assert caught.value.where.endswith("peers/bob.toml:8")
    assert sorted(p.name for p in (acme / "peers").iterdir()) == peers_before
    assert sorted(str(p) for p in state_dir.rglob("*")) == state_before  # no secret written


def test_the_command_exits_2_with_the_file_and_line(acme: Path, state_dir: Path) -> None:
    (acme / "peers").mkdir()
    public = tomllib.loads((acme / "profile.toml").read_text())["gateway"]["public_key"]
    (acme / "peers" / "bob.toml").write_text(CONFLICTED.format(key=public))
    result = subprocess.run(
        [sys.executable, "-m", "netsetup", "provision", str(acme), "maria", "--mode", "dedicated"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: cannot tell which addresses")
    assert "peers/bob.toml:8)" in result.stderr
    assert not (acme / "peers" / "maria.toml").exists()
    assert not (state_dir / "acme-dental").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'name = "bob"\naddress_v4 = \n', "TOML syntax error"),
        (b'\xff\xfe name = "bob"\n', "not UTF-8"),
        (b'name = "bob"\nmode = "dedicated"\n', "missing required key"),
    ],
    ids=["syntax", "not-utf8", "no-address"],
)
def test_any_unparsable_peer_file_stops_provision(
    acme: Path, state_dir: Path, content: bytes, problem: str
) -> None:
    (acme / "peers").mkdir()
    (acme / "peers" / "bob.toml").write_bytes(content)
    with pytest.raises(ProfileError, match=problem) as caught:
        provision(load_profile(acme), "maria")
    assert "bob.toml" in str(caught.value.where)
    assert not (acme / "peers" / "maria.toml").exists()


def test_a_peer_file_that_cannot_be_opened_stops_provision(acme: Path, state_dir: Path) -> None:
    (acme / "peers").mkdir()
    (acme / "peers" / "dir.toml").mkdir()  # cannot be read as a file, by root either
    (acme / "peers" / "gone.toml").symlink_to(acme / "nowhere.toml")
    with pytest.raises(ProfileError, match="1 more peer file") as caught:
        provision(load_profile(acme), "maria")
    assert "dir.toml" in str(caught.value.where) or "gone.toml" in str(caught.value.where)
    assert not (acme / "peers" / "maria.toml").exists()


def test_revoke_is_not_blocked_by_another_broken_file(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    provision(profile, "maria")
    (acme / "peers" / "bob.toml").write_text("<<<<<<< HEAD\n")
    view = service.revoke(profile, PeerName("maria"), state=StateDir(), clock=FixedClock(NOW))
    assert view.state == "revoked"


def test_a_file_copied_in_with_the_folder_mtime_restored_is_seen(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    profile = load_profile(acme)
    provision(profile, "a")  # .2, and an index
    provision(profile, "b")  # .3
    peers = acme / "peers"
    # another admin's peer `zed` at .4, arriving as `cp -a` or `tar x` brings it: the folder's
    # mtime is put back as it was
    elsewhere = tmp_path / "zed.toml"
    text = moved_to((peers / "b.toml").read_text(), "198.18.10.3", "198.18.10.4")
    elsewhere.write_text(text.replace("2001:db8:10::3", "2001:db8:10::9").replace('"b"', '"zed"'))
    folder_before = peers.stat()
    shutil.copy2(elsewhere, peers / "zed.toml")
    restore_times(peers, folder_before)
    assert peers.stat().st_mtime_ns == folder_before.st_mtime_ns
    result = provision(profile, "c")
    assert result.peer.address_v4 == "198.18.10.5"
    assert_unique(acme)


@pytest.mark.parametrize("how", ["in-place", "renamed-over"])
def test_a_file_replaced_with_same_size_and_restored_mtime_is_read_again(
    acme: Path, state_dir: Path, how: str
) -> None:
    profile = load_profile(acme)
    for name in ("a", "b", "c"):
        provision(profile, name)  # .2, .3, .4
    provision(profile, "d")  # the index now holds a, b and c with their stamps
    peers = acme / "peers"
    target = peers / "b.toml"
    file_before, folder_before = target.stat(), peers.stat()
    # a checkout moves b from .3 to .6: same size, and its mtime and the folder's put back
    text = moved_to(target.read_text(), "198.18.10.3", "198.18.10.6")
    if how == "in-place":
        with target.open("r+") as handle:
            handle.write(text)
    else:
        (peers / "incoming").write_text(text)
        os.replace(peers / "incoming", target)
    restore_times(target, file_before)
    restore_times(peers, folder_before)
    assert target.stat().st_size == file_before.st_size
    assert target.stat().st_mtime_ns == file_before.st_mtime_ns
    result = provision(profile, "e")
    assert result.peer.address_v4 == "198.18.10.3"  # freed by b, and .6 is b's now
    provision(profile, "f")
    assert_unique(acme)


def test_a_file_written_after_the_scan_began_is_read_again_next_time(
    acme: Path, state_dir: Path
) -> None:
    """Two writes in one tick of the file system clock leave the same stamp; the index stores
    only files that had settled before the scan began."""
    profile = load_profile(acme)
    provision(profile, "a")
    provision(profile, "b")
    index = json.loads((acme / INDEX_FILE).read_text())
    assert index["names"].split("/") == ["a"]  # b was written by this very provision
    assert AddressIndex.load(profile).entries.keys() == {"b"}  # only b is read again


def test_a_warm_index_reads_no_peer_file(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    for name in ("a", "b", "c"):
        provision(profile, name)
    AddressIndex.load(profile).save()  # c has settled since its provision: indexed now
    index = AddressIndex.load(profile)
    assert index.entries == {}
    taken_v4, taken_v6 = index.taken(NOW)
    assert sorted(taken_v4) == [int(ipaddress.IPv4Address(f"198.18.10.{i}")) for i in (2, 3, 4)]
    assert len(taken_v6) == 3


def test_a_copied_index_matches_nothing(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    """An index copied with its profile (or committed by mistake) names another tree's inodes and
    ctimes: every file is read again."""
    profile = load_profile(acme)
    provision(profile, "a")
    provision(profile, "b")
    provision(profile, "c")
    copy = tmp_path / "copy" / "acme-dental"
    shutil.copytree(acme, copy, copy_function=shutil.copy2)
    wrong = json.loads((copy / INDEX_FILE).read_text())
    assert len(wrong["names"].split("/")) == 2  # a and b, with c read again next time
    zeros = array("Q", [0, 0]).tobytes()
    wrong["v4"] = base64.b64encode(zeros).decode()  # would free .2 and .3 if believed
    (copy / INDEX_FILE).write_text(json.dumps(wrong))
    assert len(_read_index(copy / INDEX_FILE, 30).names) == 2  # a readable index, yet unused
    index = AddressIndex.load(load_profile(copy))
    taken_v4, _ = index.taken(NOW)
    assert {str(ipaddress.IPv4Address(a)) for a in taken_v4} == {
        "198.18.10.2",
        "198.18.10.3",
        "198.18.10.4",
    }


def test_a_changed_quarantine_is_applied_to_indexed_peers(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    provision(profile, "a")
    service.revoke(profile, PeerName("a"), state=StateDir(), clock=FixedClock(NOW))
    provision(profile, "b")
    provision(profile, "c")  # the index now knows a's release time under a 30-day quarantine
    text = (acme / "profile.toml").read_text()
    (acme / "profile.toml").write_text(
        moved_to(text, "quarantine_days = 30", "quarantine_days = 0 ")
    )
    result = provision(load_profile(acme), "d", now=NOW + timedelta(hours=1))
    assert result.peer.address_v4 == "198.18.10.2"


def test_files_of_another_shape_hold_their_addresses(acme: Path, state_dir: Path) -> None:
    """A hand-written or reformatted peer file goes through the TOML parser, on a cold index."""
    (acme / "peers").mkdir()
    public = tomllib.loads((acme / "profile.toml").read_text())["gateway"]["public_key"]
    (acme / "peers" / "hand.toml").write_text(
        f'# by hand\n\nname = "hand"\naddress_v4 = "198.18.10.2"\nmode = "dedicated"\n'
        f'public_key = "{public}"\ncreated = 2026-11-01T00:00:00Z\n'
        'address_v6 = "2001:db8:10::2"\n'
    )
    result = provision(load_profile(acme), "maria")
    assert (result.peer.address_v4, result.peer.address_v6) == ("198.18.10.3", "2001:db8:10::3")
    assert_unique(acme)


KEY = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
CANONICAL = (
    "# Written by netsetup.\n"
    'name = "{name}"\nmode = "{mode}"\nstatus = "{status}"\npublic_key = "{key}"\n'
    'key_origin = "generated"\naddress_v4 = "{v4}"\naddress_v6 = "2001:db8:10::{n}"\n'
    "created = 2026-11-01T00:00:00Z\n{extra}"
)
VARIANTS = {
    "active": {},
    "revoked-in-quarantine": {"status": "revoked", "extra": "revoked = 2026-11-20T00:00:00Z\n"},
    "revoked-long-ago": {"status": "revoked", "extra": "revoked = 2026-01-01T00:00:00Z\n"},
    "name-not-file-name": {"name": "other"},
    "bad-mode": {"mode": "nosuch"},
    "bad-key": {"key": "AAAA"},
    "key-not-canonical": {"key": KEY[:42] + "J="},
    "key-with-padding-inside": {"key": KEY[:20] + "=" + KEY[21:]},
    "leading-zero-address": {"v4": "198.18.10.02"},
    "bad-octet": {"v4": "198.18.10.256"},
    "bad-name": {"name": "-p3"},
    "month-13": {"extra": "expires = 2026-13-01T00:00:00Z\n"},
    "unknown-status": {"status": "paused"},
}


def scan_outcome(profile_dir: Path, lean: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    from netsetup.provision import addresses

    monkeypatch.setattr(addresses, "LEAN_SCAN_FROM", 0 if lean else 10**9)
    (profile_dir / INDEX_FILE).unlink(missing_ok=True)
    try:
        taken = AddressIndex.load(load_profile(profile_dir)).taken(NOW)
    except ProfileError as exc:
        return str(exc)
    return taken


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_lean_scan_and_the_full_parser_agree(
    acme: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """A cold index reads canonical files without the TOML parser; whatever a file holds, or
    whatever is wrong with it, the answer must be the one the full parser gives."""
    (acme / "peers").mkdir()
    for n in range(2, 5):
        fields = {"name": f"p{n}", "mode": "dedicated", "status": "active", "key": KEY}
        fields |= {"v4": f"198.18.10.{n}", "n": str(n), "extra": ""}
        if n == 3:
            fields |= VARIANTS[variant]
        (acme / "peers" / f"p{n}.toml").write_text(CANONICAL.format(**fields))
    lean = scan_outcome(acme, True, monkeypatch)
    full = scan_outcome(acme, False, monkeypatch)
    assert lean == full
    if variant.startswith(("bad-", "key-", "leading-", "month-")):
        assert isinstance(full, str) and "peers/p3.toml:" in full  # no Peer: provision stops
    else:
        held = {int(ipaddress.IPv4Address(f"198.18.10.{n}")) for n in (2, 3, 4)}
        if variant == "revoked-long-ago":  # out of its 30-day quarantine by NOW
            held.remove(int(ipaddress.IPv4Address("198.18.10.3")))
        assert isinstance(full, tuple) and full[0] == held
