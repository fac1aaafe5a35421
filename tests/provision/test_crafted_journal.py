"""A record of an interrupted change (`<state>/<profile>/pending/<peer>.json`) is read back by the
next command, which then removes, renames and publishes the files it names. One crafted by hand or
by anyone who can write there must not make netsetup touch a file that a change never writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.state import StateDir


def _private(folder: Path) -> Path:
    for path in [*reversed(folder.parents), folder]:
        if not path.exists():
            path.mkdir(mode=0o700)
    return folder


def _plant(state: StateDir, peer: str, **fields: object) -> Path:
    folder = _private(state.root / "acme-dental" / "pending")
    record = {"peer": peer, "commit": "0" * 64, "audit": "", "undo": [], "undo_dirs": []}
    record |= {"restore": [], "publish": [], "remove": [], **fields}
    path = folder / f"{peer}.json"
    path.write_text(json.dumps(record))
    path.chmod(0o600)
    return path


def _victims(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "tree").mkdir(parents=True)
    for name in ("one", "two", "tree/inside"):
        (victim / name).write_text("keep me\n")
    return victim


def _provision_other(acme: Path, state: StateDir) -> None:
    profile = load_profile(acme)
    service.provision(profile, PeerName("other"), "dedicated", state=state)


@pytest.mark.parametrize(
    "fields",
    [
        {"undo": ["{v}/one"]},
        {"restore": [["{v}/one", "{v}/moved"]]},
        {"undo": ["{v}/../victim/one"]},
    ],
    ids=["undo-removes", "restore-moves", "dot-dot"],
)
def test_an_uncommitted_crafted_record_touches_nothing_outside(
    acme: Path, state_dir: Path, tmp_path: Path, fields: dict[str, list[object]]
) -> None:
    victim = _victims(tmp_path)
    state = StateDir(state_dir)
    text = json.dumps(fields).replace("{v}", str(victim))
    record = _plant(state, "ghost", **json.loads(text))
    with pytest.raises(InputError) as caught:
        _provision_other(acme, state)
    assert caught.value.where == str(record)
    assert sorted(p.name for p in victim.rglob("*")) == ["inside", "one", "tree", "two"]
    assert not (acme / "peers" / "other.toml").exists()


def test_a_committed_crafted_record_removes_no_folder_outside(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    """`remove` runs once the peer file matches: a crafted record matching a real peer file must
    not make netsetup delete a whole folder elsewhere (or rename one into place)."""
    victim = _victims(tmp_path)
    state = StateDir(state_dir)
    profile = load_profile(acme)
    service.provision(profile, PeerName("real"), "dedicated", state=state)
    import hashlib

    commit = hashlib.sha256((acme / "peers" / "real.toml").read_bytes()).hexdigest()
    _plant(
        state,
        "real",
        commit=commit,
        remove=[str(victim / "tree")],
        publish=[[str(victim / "one"), str(victim / "published")]],
    )
    with pytest.raises(InputError):
        _provision_other(acme, state)
    assert sorted(p.name for p in victim.rglob("*")) == ["inside", "one", "tree", "two"]


def test_a_record_for_a_bad_name_is_reported_not_a_crash(acme: Path, state_dir: Path) -> None:
    state = StateDir(state_dir)
    folder = _private(state.root / "acme-dental" / "pending")
    record = {"peer": "../x", "commit": "0", "audit": "", "undo": [7], "undo_dirs": []}
    record |= {"restore": [], "publish": [], "remove": []}
    (folder / "x.json").write_text(json.dumps(record))
    with pytest.raises(InputError):
        _provision_other(acme, state)


def test_the_records_netsetup_writes_still_recover(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    """The check lets through every path a real change names: a provision with --out and --qr
    whose journal is left behind is undone by the next command."""
    state = StateDir(state_dir)
    out = tmp_path / "handoff" / "maria"
    iface = load_profile(acme).network.client_interface
    staged = out / f".{iface}.conf.pending"
    psk = state.root / "acme-dental" / "psk" / "maria.0123456789abcdef.psk"
    _plant(
        state,
        "maria",
        undo=[str(psk), str(staged)],
        undo_dirs=[str(out), str(out.parent)],
        publish=[[str(staged), str(out / f"{iface}.conf")]],
        restore=[
            [
                str(acme / "peers" / "maria.revoked-0123456789abcdef.toml"),
                str(acme / "peers" / "maria.toml"),
            ]
        ],
        remove=[str(state.root / "acme-dental" / "clients" / "maria"), str(out / f"{iface}.png")],
    )
    out.mkdir(parents=True)
    staged.write_text("staged")
    _provision_other(acme, state)
    assert not out.parent.exists()
    assert (acme / "peers" / "other.toml").exists()


def test_a_record_of_a_change_that_made_the_state_folder_recovers(
    acme: Path, state_dir: Path
) -> None:
    """A renew on a new state folder names no file, only the folders its record made (the state
    folder, the profile's, pending/): they are netsetup's, and the record is undone."""
    state = StateDir(state_dir)
    home = state.root / "acme-dental"
    record = _plant(state, "maria", undo_dirs=[str(home / "pending"), str(home), str(state.root)])
    _provision_other(acme, state)
    assert not record.exists()
    assert (acme / "peers" / "other.toml").exists()
