"""A crash at every single change of every command leaves nothing half-made.

Each command runs in its own process with NETSETUP_TEST_CRASH_AT_CHANGE=N, which ends the
process (os._exit, like SIGKILL: no cleanup) at its Nth change to the file system, for every N
from 1 until the command completes. After each crash: no half-written file, no temp file taken for
a peer, the profile validates and the peer is whole-old or whole-new. Then the next command (a
provision of another peer) finishes or undoes the interrupted change: no staged or temp file, no
preshared key or private key of a key that is no longer current, one audit line per change made,
and a distinct address for the new peer.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from netsetup.fsutil import CRASH_ENV, CRASH_EXIT_CODE
from netsetup.keys import SecretKey, fingerprint, public_from_private
from netsetup.profile.model import Peer
from netsetup.profile.store import load_peers, load_profile, parse_peer_file
from netsetup.profile.values import PeerName, ProfileId
from netsetup.provision import service
from netsetup.state import StateDir
from netsetup.validate import Severity
from netsetup.validate import validate as run_validate


@dataclass(frozen=True)
class Tree:
    """One copy of the profiles, the state folder and a hand-off folder."""

    root: Path

    @property
    def profile(self) -> Path:
        return self.root / "profiles" / "acme-dental"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def out(self) -> Path:
        return self.root / "handoff"

    def env(self, crash_at: int) -> dict[str, str]:
        return {
            **os.environ,
            "NETSETUP_STATE_DIR": str(self.state),
            "NETSETUP_ACTOR": "tester@example",
            CRASH_ENV: str(crash_at),
        }

    def peer_text(self, name: str) -> str | None:
        path = self.profile / "peers" / f"{name}.toml"
        return path.read_text() if path.exists() else None


@pytest.fixture
def base(acme: Path, state_dir: Path, tmp_path: Path) -> Tree:
    """maria (active, QR codes in the default folder), temp (agency), gone (revoked)."""
    tree = Tree(tmp_path)
    assert acme == tree.profile and state_dir == tree.state
    profile = load_profile(acme)
    state = StateDir()
    service.provision(profile, PeerName("maria"), "dedicated", state=state, qr=True)
    service.provision(profile, PeerName("temp"), "agency", state=state)
    service.provision(profile, PeerName("gone"), "dedicated", state=state)
    service.revoke(profile, PeerName("gone"), state=state)
    return tree


def _copy(base: Tree, target: Path) -> Tree:
    for part in ("profiles", "state"):
        shutil.copytree(base.root / part, target / part, symlinks=True)
    return Tree(target)


# (command line, the peer it changes, what the whole-new peer looks like next to the old one)
Check = Callable[[Peer, Peer], bool]
SCENARIOS: dict[str, tuple[list[str], str, Check]] = {
    "provision": (
        ["provision", "{profile}", "nina", "--mode", "dedicated", "--qr", "--out", "{out}"],
        "nina",
        lambda old, new: old is None and new.status == "active",  # type: ignore[redundant-expr]
    ),
    "provision-reused-name": (
        ["provision", "{profile}", "gone", "--mode", "agency", "--reuse-name"],
        "gone",
        lambda old, new: old.status == "revoked" and new.status == "active",
    ),
    "rotate-into-out": (
        ["rotate", "{profile}", "maria", "--qr", "--out", "{out}"],
        "maria",
        lambda old, new: new.public_key != old.public_key and new.address_v4 == old.address_v4,
    ),
    "rotate-in-place": (
        ["rotate", "{profile}", "maria"],
        "maria",
        lambda old, new: new.public_key != old.public_key and new.address_v4 == old.address_v4,
    ),
    "revoke": (
        ["revoke", "{profile}", "maria"],
        "maria",
        lambda old, new: old.status == "active" and new.status == "revoked",
    ),
    "renew": (
        ["renew", "{profile}", "temp", "--expires", "90d"],
        "temp",
        lambda old, new: new.expires != old.expires and new.public_key == old.public_key,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_crash_at_every_change_is_finished_or_undone(
    base: Tree, tmp_path: Path, scenario: str
) -> None:
    template, name, is_new = SCENARIOS[scenario]
    base_text = base.peer_text(name)
    base_audit = (base.state / "audit.jsonl").read_text().splitlines()
    n = 0
    while True:
        n += 1
        assert n < 60, "the command never completed"
        tree = _copy(base, tmp_path / f"run-{n}")
        args = [a.format(profile=tree.profile, out=tree.out) for a in template]
        done = subprocess.run(
            [sys.executable, "-m", "netsetup", *args],
            env=tree.env(n),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            break
        changes = n
        assert done.returncode == CRASH_EXIT_CODE, (n, done.stderr)
        _check_right_after_the_crash(tree, name, base_text, is_new)
        _check_after_the_next_command(tree, name, base_text, base_audit)
    assert n > 6, f"only {n - 1} changes: the crash hook is not where the writes are"
    print(f"{scenario}: {changes} crash points")
    _check_after_the_next_command(tree, name, base_text, base_audit)


def _old_peer(text: str | None, name: str, tree: Tree) -> Peer | None:
    if text is None:
        return None
    path = tree.root / f"{name}.old.toml"
    path.write_text(text)
    peer, _ = parse_peer_file(path)
    path.unlink()
    assert peer is not None
    return peer


def _check_right_after_the_crash(
    tree: Tree, name: str, base_text: str | None, is_new: Check
) -> None:
    profile = load_profile(tree.profile)
    for path in (tree.profile / "peers").glob("*.toml"):  # no half-written peer file
        peer, parsed = parse_peer_file(path)
        assert peer is not None and not parsed.issues, (path, parsed.issues)
    peers = {p.name: p for p in load_peers(profile)}  # no temp file taken for a peer
    text = tree.peer_text(name)
    if text != base_text:  # whole-new, or (a reused name, moved aside) not there for a moment
        if text is None:
            assert list((tree.profile / "peers").glob(f"{name}.revoked-*.toml"))
        else:
            assert is_new(_old_peer(base_text, name, tree), peers[name])  # type: ignore[arg-type]
    report = run_validate([tree.profile.parent], fail_on=Severity.ERROR)
    assert not report.failed, [str(f) for f in report.findings]


def _check_after_the_next_command(
    tree: Tree, name: str, base_text: str | None, base_audit: list[str]
) -> None:
    profile = load_profile(tree.profile)
    state = StateDir(tree.state)
    after = service.provision(profile, PeerName("after"), "dedicated", state=state)
    peers = load_peers(profile)
    held = [p for p in peers if p.name != "after"]
    retired = [parse_peer_file(p)[0] for p in (tree.profile / "peers").glob("*.revoked-*.toml")]
    taken = {str(p.address_v4) for p in [*held, *retired] if p is not None}
    assert after.peer.address_v4 not in taken
    assert len({str(p.address_v4) for p in peers}) == len(peers)
    everything = [p for p in tree.root.rglob("*") if p.is_file()]
    leftovers = [p for p in everything if p.name.endswith((".tmp", ".pending"))]
    assert leftovers == [] and not (tree.state / "acme-dental" / "pending").exists()
    # preshared keys: exactly one per peer that is not revoked, for its current key
    expected = {
        f"{p.name}.{fingerprint(p.public_key).removeprefix('SHA256:')}.psk"
        for p in peers
        if p.status != "revoked"
    }
    assert {p.name for p in (tree.state / "acme-dental" / "psk").iterdir()} == expected
    # client configs: every private key in one is a peer's current key, its psk the current one
    current = {p.name: p for p in peers}
    for config in [p for p in everything if p.suffix == ".conf"]:
        _check_config(config, current, state)
    for revoked in [p for p in peers if p.status == "revoked"]:
        assert not (tree.state / "acme-dental" / "clients" / revoked.name).exists()
    # one audit line per change made: the interrupted one (if it happened) and `after`
    made = tree.peer_text(name) != base_text
    audit = (tree.state / "audit.jsonl").read_text().splitlines()
    assert audit[: len(base_audit)] == base_audit
    actions = [json.loads(line)["peer"] for line in audit[len(base_audit) :]]
    assert actions == ([name] if made else []) + ["after"], actions
    report = run_validate([tree.profile.parent], fail_on=Severity.ERROR)
    assert not report.failed, [str(f) for f in report.findings]


def _check_config(config: Path, current: dict[str, Peer], state: StateDir) -> None:
    first, *lines = config.read_text().splitlines()
    name = first.split()[2]  # "# netsetup: <name> on <profile> (<mode>)"
    peer = current[name]
    values = dict(line.split(" = ", 1) for line in lines if " = " in line)
    if "PrivateKey" in values:
        assert public_from_private(SecretKey(values["PrivateKey"])) == peer.public_key, config
    psk = state.load_psk(ProfileId("acme-dental"), PeerName(name), peer.public_key)
    assert psk is not None and values["PresharedKey"] == psk.reveal(), config
    assert len(base64.b64decode(values["PresharedKey"])) == 32
