"""The witness's "seen lately" record under attack: packets with spoofed sources (or one IPv6
/64's addresses) to WireGuard's port fill the rendered nftables set (nft gives a dynamic set 65535
elements) within a second; from then on a new source is not recorded. The witness must then say it
cannot tell, never "your packets did not arrive" (which puts the blame on the assistant or their
provider). Real nftables in a network namespace of its own, and the set as `render` writes it."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from netsetup.gateway.firewall import render_firewall
from netsetup.profile.store import load_profile
from netsetup.responder.witness import SystemGateway, run_tool, seen_set_full
from tests.lab.prereq import require_lab

from .support import NOW

REAL = "198.51.100.7"  # the assistant's public address, not in the set


def _nft_set(size: int, count: int) -> str:
    elem = [{"elem": {"val": f"10.0.{i >> 8}.{i & 255}", "expires": 590}} for i in range(count)]
    document = {"nftables": [{"set": {"name": "wg_seen_v4", "size": size, "timeout": 600}}]}
    document["nftables"][0]["set"]["elem"] = elem
    return json.dumps(document)


def test_a_full_set_is_told_apart_from_an_absent_address(acme: Path) -> None:
    assert not seen_set_full(_nft_set(65535, 3))
    assert seen_set_full(_nft_set(4, 4))
    full = _nft_set(4, 4)

    def runner(argv: Sequence[str]) -> str | None:
        return full if argv[0] == "nft" else None

    source = SystemGateway(load_profile(acme), runner=runner)
    assert source.seen_age("10.0.0.1") == (True, 10.0)  # recorded: still told
    assert source.seen_age(REAL) == (False, None)  # not recorded, maybe never could be


@pytest.fixture
def namespace() -> Iterator[str]:
    require_lab(["nft", "ip"])
    name = f"ns-test-seen-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.lab
def test_the_rendered_set_filled_by_strangers_makes_the_witness_say_it_cannot_tell(
    acme: Path, namespace: str, tmp_path: Path
) -> None:
    profile = load_profile(acme)
    ruleset = tmp_path / "firewall.nft"
    ruleset.write_text(render_firewall(profile, [], NOW))  # what `render --firewall` writes
    netns = ["ip", "netns", "exec", namespace]
    subprocess.run([*netns, "nft", "-f", str(ruleset)], check=True)
    source = SystemGateway(profile, runner=lambda argv: run_tool([*netns, *argv]))
    read = ["nft", "-j", "list", "set", "inet", source.table, "wg_seen_v4"]
    listed = run_tool([*netns, *read])
    assert listed is not None
    (size,) = [i["set"]["size"] for i in json.loads(listed)["nftables"] if "set" in i]
    # what a second of packets with spoofed sources to WireGuard's port leaves behind: the set at
    # its size (added here directly; the packet path's `update` stops at the same size)
    strangers = ", ".join(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(size))
    fill = tmp_path / "fill.nft"
    fill.write_text(f"add element inet {source.table} wg_seen_v4 {{ {strangers} }}\n")
    subprocess.run([*netns, "nft", "-f", str(fill)], check=True)
    one_more = [*netns, "nft", "add", "element", "inet", source.table, "wg_seen_v4"]
    assert subprocess.run([*one_more, f"{{ {REAL} }}"], capture_output=True).returncode != 0

    assert source.seen_age("10.0.0.1")[0] is True  # those in the set are still told
    assert source.seen_age(REAL) == (False, None)  # "cannot tell", not "never arrived"
