"""Two admins at once: nothing lost, nothing doubled. (A crash at every single change of every
command: test_crash_at_every_change.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from netsetup.profile.store import load_peers, load_profile

WORKER = """
import sys
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision.service import provision
from netsetup.state import StateDir
profile = load_profile(sys.argv[1])
for i in range(int(sys.argv[3])):
    provision(profile, PeerName(f"{sys.argv[2]}-{i}"), "dedicated", state=StateDir())
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
