"""Two admins at once and a SIGKILL mid-write: nothing lost, nothing half-made."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from netsetup.profile.store import load_peers, load_profile, parse_peer_file
from netsetup.state import StateDir

WORKER = """
import sys
from netsetup.profile.store import load_profile
from netsetup.provision.service import provision
from netsetup.state import StateDir
profile = load_profile(sys.argv[1])
for i in range(int(sys.argv[3])):
    provision(profile, f"{sys.argv[2]}-{i}", "dedicated", state=StateDir())
"""


def test_eight_admins_at_once_lose_nothing(acme: Path, state_dir: Path) -> None:
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(acme), f"admin{n}", "25"], env=env)
        for n in range(8)
    ]
    assert [w.wait(timeout=300) for w in workers] == [0] * 8
    peers = load_peers(load_profile(acme))
    assert len(peers) == 200
    assert len({p.address_v4 for p in peers}) == 200
    assert len({p.address_v6 for p in peers}) == 200
    assert len({p.public_key for p in peers}) == 200
    # every address is the lowest possible: .2 to .201, nothing skipped or doubled
    assert sorted(int(str(p.address_v4).rsplit(".", 1)[1]) for p in peers) == list(range(2, 202))
    audit = (state_dir / "audit.jsonl").read_text().splitlines()
    assert len(audit) == 200
    assert len(list((state_dir / "acme-dental" / "psk").glob("*.psk"))) == 200


KILLED_WORKER = """
import sys
from netsetup.profile.store import load_profile
from netsetup.provision.service import provision, revoke, rotate
from netsetup.state import StateDir
profile = load_profile(sys.argv[1])
state = StateDir()
for i in range(1000):
    name = f"{sys.argv[2]}-{i}"
    provision(profile, name, "dedicated", state=state)
    if i % 3 == 0:
        rotate(profile, name, state=state)
    if i % 5 == 0:
        revoke(profile, name, state=state)
"""


def test_sigkill_at_random_moments_leaves_everything_whole(acme: Path, state_dir: Path) -> None:
    text = (acme / "profile.toml").read_text()
    (acme / "profile.toml").write_text(text.replace("198.18.10.0/24", "198.18.128.0/17"))
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}
    rng = random.Random(20261126)
    for round_ in range(12):
        worker = subprocess.Popen(
            [sys.executable, "-c", KILLED_WORKER, str(acme), f"r{round_}"], env=env
        )
        time.sleep(rng.uniform(0.3, 1.2))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    peers_dir = acme / "peers"
    files = sorted(p for p in peers_dir.glob("*.toml") if not p.name.startswith("."))
    assert len(files) > 12, "the worker never got going"
    addresses: set[str] = set()
    for path in files:
        tomllib.loads(path.read_text())  # every file parses
        peer, parsed = parse_peer_file(path)
        assert peer is not None and not parsed.issues, (path, parsed.issues)
        assert str(peer.address_v4) not in addresses
        addresses.add(str(peer.address_v4))
        if peer.status == "active":
            # a whole peer: its preshared key is where the gateway render will look
            psk = StateDir(state_dir).load_psk("acme-dental", peer.name, peer.public_key)
            assert psk is not None, peer.name
    # a provision after the crashes cleans up temp files and still works
    done = subprocess.run(
        [sys.executable, "-m", "netsetup", "provision", str(acme), "after-crash"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert not [p for p in peers_dir.iterdir() if p.name.endswith(".tmp")]
    render = subprocess.run(
        [
            sys.executable,
            "-m",
            "netsetup",
            "render",
            str(acme),
            "--out",
            str(state_dir.parent / "wg0.conf"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert render.returncode == 0, render.stderr
