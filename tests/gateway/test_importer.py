"""`netsetup import`: wg-quick server configs as PiVPN, wg-easy and hand-kept setups write them,
adopted into a profile without re-keying; hostile names, bad AllowedIPs, duplicates and the
gateway key rules; nothing half-imported."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.errors import ConflictError, InputError
from netsetup.fsutil import CRASH_ENV, CRASH_EXIT_CODE
from netsetup.gateway import importer
from netsetup.gateway.importer import (
    ImportRefused,
    import_config,
    merge_live,
    name_from_comments,
    parse_dump,
    parse_wg_conf,
    sanitise_name,
)
from netsetup.keys import KeyPair, SecretKey, generate_keypair, generate_preshared_key
from netsetup.profile.store import load_peer, load_peers, load_profile
from netsetup.profile.values import NAME_RE, PeerName
from netsetup.provision import service
from netsetup.state import StateDir
from netsetup.validate import Severity
from netsetup.validate import validate as run_validate
from tests.provision.support import changed, snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT = FixedClock(NOW)
REPO = Path(__file__).resolve().parents[2]


def keys(n: int) -> list[tuple[KeyPair, str]]:
    return [(generate_keypair(), generate_preshared_key().reveal()) for _ in range(n)]


def interface(private: str | None = None, port: int = 51820) -> list[str]:
    lines = ["[Interface]", "Address = 198.18.10.1/24, 2001:db8:10::1/64", f"ListenPort = {port}"]
    if private:
        lines.append(f"PrivateKey = {private}")
    return [*lines, ""]


def peer_lines(pair: KeyPair, psk: str | None, host: int, above: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    lines = [*above, "[Peer]", f"PublicKey = {pair.public}"]
    if psk:
        lines.append(f"PresharedKey = {psk}")
    lines.append(f"AllowedIPs = 198.18.10.{host}/32, 2001:db8:10::{host:x}/128")
    return [*lines, ""]


def write_conf(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def secrets_in(*texts: str) -> list[str]:
    return [t for t in texts if t]


@pytest.fixture
def state(state_dir: Path) -> StateDir:
    return StateDir(state_dir)


def _validate_clean(profile_dir: Path) -> None:
    report = run_validate([profile_dir], now=NOW + timedelta(hours=1), fail_on=Severity.WARNING)
    assert report.findings == [], [str(f) for f in report.findings]


# -- names ---------------------------------------------------------------------------------------


def test_names_from_the_comments_each_manager_writes(acme: Path, state: StateDir) -> None:
    pairs = keys(7)
    lines = interface()
    lines += ["### begin Maria ###", *peer_lines(*pairs[0], 2)[:-1], "### end Maria ###", ""]
    lines += peer_lines(*pairs[1], 3, ["# Client: Jürgen Müller (6f1e2c1a-3b7d)"])
    lines += ["[Peer]", "# Name = Anna Lee", f"PublicKey = {pairs[2][0].public}"]
    lines += [
        f"PresharedKey = {pairs[2][1]}",
        "AllowedIPs = 198.18.10.4/32, 2001:db8:10::4/128",
        "",
    ]
    lines += ["[Peer]", "# friendly_name = bob_phone", f"PublicKey = {pairs[3][0].public}"]
    lines += [
        f"PresharedKey = {pairs[3][1]}",
        "AllowedIPs = 198.18.10.5/32, 2001:db8:10::5/128",
        "",
    ]
    lines += peer_lines(*pairs[4], 6, ["# an old note, not a name", "", "# Carla"])
    lines += peer_lines(*pairs[5], 7, ["# ines (agency, expires 2026-12-01T00:00:00Z)"])
    lines += peer_lines(*pairs[6], 8)
    config = parse_wg_conf("\n".join(lines), "wg0.conf")
    modes: list[str] = []

    def ask(name: str, peer: importer.ImportedPeer) -> str:
        modes.append(name)
        return "dedicated"

    result = import_config(load_profile(acme), config, state=state, mode=ask, clock=AT)
    names = [p.peer.name for p in result.imported]
    assert names == ["maria", "jurgen-muller", "anna-lee", "bob-phone", "carla", "ines", "peer-1"]
    assert [p.name_source for p in result.imported][-1] == "generated"
    # netsetup's own rendered comment carries the mode: only the others were asked
    assert "ines" not in modes and len(modes) == 6
    ines = load_peer(load_profile(acme), PeerName("ines"))
    assert ines.mode == "agency" and ines.expires == NOW + timedelta(days=30)
    assert load_peer(load_profile(acme), PeerName("maria")).public_key == pairs[0][0].public
    _validate_clean(acme)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../x", "x"),
        ('"; rm -rf /', "rm-rf"),
        ("x" * 200, "x" * 32),
        ("Ærøskøbing Büro 😀", "r-sk-bing-buro"),
        ("日本語", None),
        ("---", None),
        ("a" * 31 + "-b", "a" * 31),
        ("$(reboot)\nPostUp = evil", "reboot-postup-evil"),
    ],
)
def test_sanitise_name(raw: str, expected: str | None) -> None:
    name = sanitise_name(raw)
    assert name == expected
    if name is not None:
        assert NAME_RE.fullmatch(name)


def test_hostile_and_duplicate_names_stay_inside_peers(acme: Path, state: StateDir) -> None:
    profile = load_profile(acme)
    service.provision(profile, PeerName("maria"), "dedicated", state=state, clock=AT)
    hostile = [
        "../x",
        '"; rm -rf /',
        "é" * 3 + "z" * 200,
        "Maria",
        "maria",
        "../../etc/passwd",
        "🙂",
    ]
    pairs = keys(len(hostile))
    lines = interface()
    for index, (name, (pair, psk)) in enumerate(zip(hostile, pairs, strict=True)):
        lines += peer_lines(pair, psk, 10 + index, [f"# {name}"])
    result = import_config(
        load_profile(acme),
        parse_wg_conf("\n".join(lines), "c"),
        state=state,
        mode="agency",
        clock=AT,
    )
    names = [p.peer.name for p in result.imported]
    assert names == ["x", "rm-rf", "eee" + "z" * 29, "maria-2", "maria-3", "etc-passwd", "peer-1"]
    assert all(NAME_RE.fullmatch(n) for n in names)
    files = sorted(p.name for p in (acme / "peers").iterdir() if not p.name.startswith("."))
    assert files == sorted(f"{n}.toml" for n in [*names, "maria"])
    assert not (acme.parent / "x.toml").exists() and not (acme / "x.toml").exists()
    _validate_clean(acme)


def test_a_comment_block_above_a_peer_is_not_its_name() -> None:
    """Only a lone comment line names a peer: a block (a file's header) does not."""
    pair = generate_keypair()
    text = "\n".join(
        [
            "# managed by some tool",
            "# do not edit",
            "[Peer]",
            f"PublicKey = {pair.public}",
            "AllowedIPs = 198.18.10.2/32",
            "### end someone ###",
            "# Rita",
            "[Peer]",
            f"PublicKey = {generate_keypair().public}",
            "AllowedIPs = 198.18.10.3/32",
        ]
    )
    first, second = parse_wg_conf(text, "c").peers
    assert name_from_comments(first) == (None, None)
    assert name_from_comments(second) == ("Rita", None)  # a PiVPN end marker does not count


def test_name_key_comment_inside_the_section_wins_over_a_stray_one_above() -> None:
    text = "\n".join(
        [
            "[Interface]",
            "ListenPort = 51820",
            "# not-me",
            "",
            "[Peer]",
            "# Name = right-one",
            f"PublicKey = {generate_keypair().public}",
            "AllowedIPs = 198.18.10.2/32",
        ]
    )
    (peer,) = parse_wg_conf(text, "c").peers
    assert name_from_comments(peer) == ("right-one", None)


# -- the 50-peer server ---------------------------------------------------------------------------


def test_fifty_peers_imported_without_rekeying(acme: Path, state: StateDir, tmp_path: Path) -> None:
    gateway = generate_keypair()
    pairs = keys(50)
    lines = [*interface(gateway.private.reveal()), "# PostUp = iptables ... (a comment only)"]
    for index, (pair, psk) in enumerate(pairs):
        lines += peer_lines(pair, psk, 2 + index, [f"# Client: Assistant {index} ({index:08x})"])
    conf = write_conf(tmp_path / "wg0.conf", lines)
    result = import_config(
        load_profile(acme),
        importer.read_wg_conf(conf),
        state=state,
        mode="dedicated",
        take_gateway_key=True,
        clock=AT,
    )
    assert len(result.imported) == 50 and result.skipped == ()
    profile = load_profile(acme)
    assert profile.gateway.public_key == gateway.public
    peers = {p.public_key: p for p in load_peers(profile)}
    assert set(peers) == {pair.public for pair, _ in pairs}
    for index, (pair, psk) in enumerate(pairs):
        peer = peers[pair.public]
        assert peer.name == f"assistant-{index}"
        assert str(peer.address_v4) == f"198.18.10.{2 + index}"
        assert str(peer.address_v6) == f"2001:db8:10::{2 + index:x}"
        assert peer.key_origin == "client"
        psk_file = state.psk_path(profile.id, PeerName(peer.name), peer.public_key)
        assert psk_file.read_text().strip() == psk
        assert stat.S_IMODE(psk_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(psk_file.parent.stat().st_mode) == 0o700
    stored = state.load_gateway_key(profile.id)
    assert stored is not None and stored.reveal() == gateway.private.reveal()
    # no secret anywhere under the profile
    everything = "".join(p.read_text() for p in acme.rglob("*.toml"))
    for _, psk in pairs:
        assert psk not in everything
    assert gateway.private.reveal() not in everything
    _validate_clean(acme)
    # a second import skips them all and writes nothing
    before = snapshot(acme / "peers")
    again = import_config(
        profile, importer.read_wg_conf(conf), state=state, mode="dedicated", clock=AT
    )
    assert again.imported == () and len(again.skipped) == 50
    assert again.gateway_key.action == "kept"
    assert changed(before, snapshot(acme / "peers")) == []


# -- refusals: nothing written ------------------------------------------------------------------


def _refused(acme: Path, state: StateDir, lines: list[str]) -> ImportRefused:
    before = snapshot(acme, state.root)
    with pytest.raises(ImportRefused) as caught:
        import_config(
            load_profile(acme),
            parse_wg_conf("\n".join(lines), "wg0.conf"),
            state=state,
            mode="dedicated",
            clock=AT,
        )
    after = snapshot(acme, state.root)
    # the lock file is the only thing an import may leave when it refuses
    assert [p for p in changed(before, after) if not p.endswith(("/.lock", "/peers"))] == []
    return caught.value


@pytest.mark.parametrize(
    ("allowed", "words"),
    [
        ("198.18.10.0/24", "is a network, not one address"),
        ("0.0.0.0/0, ::/0", "is a network"),
        ("198.18.10.7/32, 198.18.10.8/32", "one /32 and at most one /128"),
        ("2001:db8:10::7/128", "one /32"),
        ("192.0.2.9/32", "outside the tunnel subnet"),
        ("198.18.10.1/32", "gateway's own tunnel address"),
        ("198.18.10.300/32", "is not a network"),
        ("198.18.10.7/32, 2001:db8:99::7/128", "outside the tunnel subnet 2001:db8:10::/64"),
    ],
)
def test_bad_allowed_ips_refused_per_peer_with_line(
    acme: Path, state: StateDir, allowed: str, words: str
) -> None:
    good, bad = keys(2)
    lines = [*interface(), *peer_lines(*good, 2, ["# fine"])]
    lines += ["# Broken Peer", "[Peer]", f"PublicKey = {bad[0].public}", f"AllowedIPs = {allowed}"]
    refused = _refused(acme, state, lines)
    (problem,) = refused.problems
    assert problem.peer == "broken-peer" and problem.where == "wg0.conf:12"
    assert words in problem.what
    assert "nothing was imported" in str(refused) and "wg0.conf:12" in str(refused)


def test_every_problem_is_listed(acme: Path, state: StateDir) -> None:
    pairs = keys(3)
    lines = interface()
    for index, (pair, _psk) in enumerate(pairs):
        lines += ["[Peer]", f"PublicKey = {pair.public}", f"AllowedIPs = 10.0.{index}.0/24", ""]
    refused = _refused(acme, state, lines)
    assert [p.where for p in refused.problems] == ["wg0.conf:5", "wg0.conf:9", "wg0.conf:13"]
    assert "and 2 more problem(s)" in str(refused)


def test_duplicate_keys_and_addresses_refused(acme: Path, state: StateDir) -> None:
    (a, psk), (b, _) = keys(2)
    refused = _refused(acme, state, [*interface(), *peer_lines(a, psk, 2), *peer_lines(a, psk, 3)])
    assert "the same PublicKey as the peer at wg0.conf:5" in refused.problems[0].what
    refused = _refused(acme, state, [*interface(), *peer_lines(a, psk, 2), *peer_lines(b, psk, 2)])
    assert "198.18.10.2 is already held by peer 'peer-1'" in refused.problems[0].what


def test_address_of_a_profile_peer_refused(acme: Path, state: StateDir) -> None:
    done = service.provision(
        load_profile(acme), PeerName("maria"), "dedicated", state=state, clock=AT
    )
    host = int(done.peer.address_v4.rsplit(".", 1)[1])
    ((pair, psk),) = keys(1)
    refused = _refused(acme, state, [*interface(), *peer_lines(pair, psk, host, ["# newcomer"])])
    assert "already held by peer 'maria'" in refused.problems[0].what


def test_a_revoked_peers_address_stays_in_quarantine(acme: Path, state: StateDir) -> None:
    profile = load_profile(acme)
    done = service.provision(profile, PeerName("maria"), "dedicated", state=state, clock=AT)
    service.revoke(profile, PeerName("maria"), state=state, clock=AT)
    host = int(done.peer.address_v4.rsplit(".", 1)[1])
    ((pair, psk),) = keys(1)
    refused = _refused(acme, state, [*interface(), *peer_lines(pair, psk, host, ["# newcomer"])])
    assert "already held by peer 'maria'" in refused.problems[0].what


def test_peer_already_in_profile_is_skipped(acme: Path, state: StateDir) -> None:
    profile = load_profile(acme)
    maria = generate_keypair()
    service.provision(
        profile, PeerName("maria"), "dedicated", state=state, clock=AT, client_pubkey=maria.public
    )
    ((other, psk),) = keys(1)
    lines = [*interface(), *peer_lines(maria, generate_preshared_key().reveal(), 50, ["# M"])]
    lines += peer_lines(other, psk, 51, ["# Other"])
    result = import_config(
        profile, parse_wg_conf("\n".join(lines), "c"), state=state, mode="dedicated", clock=AT
    )
    assert [s.name for s in result.skipped] == ["maria"]
    assert [p.peer.name for p in result.imported] == ["other"]
    # maria's file is untouched (its address is not the config's)
    assert str(load_peer(load_profile(acme), PeerName("maria")).address_v4) != "198.18.10.50"


# -- the gateway key --------------------------------------------------------------------------


def test_gateway_key_of_the_profile_is_stored(acme: Path, state: StateDir) -> None:
    gateway = generate_keypair()
    text = (
        (acme / "profile.toml")
        .read_text()
        .replace("MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=", gateway.public)
    )
    (acme / "profile.toml").write_text(text)
    config = parse_wg_conf("\n".join(interface(gateway.private.reveal())), "c")
    result = import_config(load_profile(acme), config, state=state, mode="dedicated", clock=AT)
    assert result.gateway_key.action == "stored"
    key_file = state.gateway_key_path(load_profile(acme).id)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == gateway.private.reveal()
    assert (acme / "profile.toml").read_text() == text


def test_another_gateway_key_refused_without_take(acme: Path, state: StateDir) -> None:
    gateway = generate_keypair()
    ((pair, psk),) = keys(1)
    before = snapshot(acme, state.root)
    config = parse_wg_conf(
        "\n".join([*interface(gateway.private.reveal()), *peer_lines(pair, psk, 2)]), "wg0.conf"
    )
    with pytest.raises(ConflictError, match="--take-gateway-key") as caught:
        import_config(load_profile(acme), config, state=state, mode="dedicated", clock=AT)
    assert gateway.private.reveal() not in str(caught.value)
    assert caught.value.where == "wg0.conf:1"
    assert changed(before, snapshot(acme, state.root)) == []


def test_take_gateway_key_rewrites_only_that_line(acme: Path, state: StateDir) -> None:
    gateway = generate_keypair()
    original = (acme / "profile.toml").read_text()
    (acme / "profile.toml").write_text(
        original.replace(
            'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="',
            'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="  # the old box',
        )
    )
    config = parse_wg_conf("\n".join(interface(gateway.private.reveal())), "c")
    result = import_config(
        load_profile(acme), config, state=state, mode="dedicated", take_gateway_key=True, clock=AT
    )
    assert result.gateway_key.action == "taken"
    new = (acme / "profile.toml").read_text().splitlines()
    old = original.splitlines()
    differing = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert differing == [
        (
            'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="',
            f'public_key = "{gateway.public}"  # the old box',
        )
    ]
    assert load_profile(acme).gateway.public_key == gateway.public
    _validate_clean(acme)


def test_take_gateway_key_in_the_second_site() -> None:
    text = (
        '[[gateway]]\nname = "a"\npublic_key = "AAA"\n\n'
        '[[gateway]]\n# the branch\nname = "b"\npublic_key = "BBB" # keep\n[network]\n'
    )
    out = importer.set_gateway_public_key(text, 1, "NEW")
    assert out == text.replace('"BBB"', '"NEW"')
    assert importer.set_gateway_public_key(text, 0, "NEW") == text.replace('"AAA"', '"NEW"')


# -- failures and crashes: whole peers only ---------------------------------------------------


def test_failure_in_the_middle_takes_back_this_runs_peers(
    acme: Path, state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_key = generate_keypair()
    pairs = keys(5)
    lines = interface(gateway_key.private.reveal())
    for index, (pair, psk) in enumerate(pairs):
        lines += peer_lines(pair, psk, 2 + index, [f"# p{index}"])
    before_profile = snapshot(acme)
    written: list[str] = []
    real = importer.write_peer_text

    def failing(profile, name, text):  # type: ignore[no-untyped-def]
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        written.append(name)
        return real(profile, name, text)

    monkeypatch.setattr(importer, "write_peer_text", failing)
    with pytest.raises(OSError):
        import_config(
            load_profile(acme),
            parse_wg_conf("\n".join(lines), "c"),
            state=state,
            mode="dedicated",
            take_gateway_key=True,
            clock=AT,
        )
    assert written == ["p0", "p1", "p2"]
    assert [
        p for p in changed(before_profile, snapshot(acme)) if not p.endswith((".lock", "peers"))
    ] == []
    assert not list((state.root / "acme-dental" / "psk").glob("*.psk"))
    assert not state.gateway_key_path(load_profile(acme).id).exists()
    undone = [json.loads(line) for line in state.audit_path.read_text().splitlines()]
    assert [r["action"] for r in undone].count("import-undone") == 3


@pytest.mark.parametrize("crash_at", [3, 9, 20, 41])
def test_a_crash_leaves_whole_peers_and_a_rerun_finishes(
    acme: Path, state_dir: Path, tmp_path: Path, crash_at: int
) -> None:
    pairs = keys(6)
    lines = interface()
    for index, (pair, psk) in enumerate(pairs):
        lines += peer_lines(pair, psk, 2 + index, [f"# p{index}"])
    conf = write_conf(tmp_path / "wg0.conf", lines)
    args = [
        sys.executable,
        "-m",
        "netsetup",
        "import",
        str(acme),
        "--wg-conf",
        str(conf),
        "--mode",
        "dedicated",
    ]
    env = {**os.environ, CRASH_ENV: str(crash_at), "PYTHONPATH": str(REPO)}
    crashed = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    state = StateDir(state_dir)
    for peer in load_peers(load_profile(acme)):  # every peer file there is a whole peer
        assert state.load_psk(load_profile(acme).id, PeerName(peer.name), peer.public_key)
    env.pop(CRASH_ENV)
    again = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0, again.stderr
    profile = load_profile(acme)
    assert {p.public_key for p in load_peers(profile)} == {pair.public for pair, _ in pairs}
    for peer in load_peers(profile):
        assert state.load_psk(profile.id, PeerName(peer.name), peer.public_key)
    leftovers = [
        p
        for p in [*acme.rglob("*"), *state_dir.rglob("*")]
        if p.name.endswith((".tmp", ".pending"))
    ]
    assert leftovers == [] and not (state_dir / "acme-dental" / "pending").exists()
    _validate_clean(acme)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "words", "line"),
    [
        (["[Interface]", "ListenPort = 1", "[Server]"], "unknown section [Server]", 3),
        (["PublicKey = x", "[Peer]"], "a setting before any", 1),
        (["[Peer]", "AllowedIPs = 198.18.10.2/32"], "a [Peer] without PublicKey", 1),
        (["[Peer]", "PublicKey = abc", "AllowedIPs = 198.18.10.2/32"], "not a WireGuard key", 2),
        (["[Peer]", "PublicKey = {pub}", "Bogus = 1"], "unknown setting 'bogus'", 3),
        (["[Peer]", "PublicKey = {pub}", "PresharedKey = s3cr3t-value"], "PresharedKey is not", 3),
        (["[Interface]", "PrivateKey = s3cr3t-value"], "PrivateKey is not a WireGuard key", 2),
        (["[Interface]", "ListenPort = 99999"], "is not a port", 2),
        (["[Interface]", "[Interface]"], "a second [Interface]", 2),
        (["[Peer]", "just words"], "neither `Key = value`", 2),
    ],
)
def test_malformed_configs(lines: list[str], words: str, line: int) -> None:
    text = "\n".join(lines).replace("{pub}", generate_keypair().public)
    with pytest.raises(InputError) as caught:
        parse_wg_conf(text, "wg0.conf")
    assert words in caught.value.message and caught.value.where == f"wg0.conf:{line}"
    assert "s3cr3t" not in str(caught.value)


def test_wg_syntax_keys_in_any_case_comments_after_values_repeated_allowed_ips() -> None:
    pair = generate_keypair()
    text = (
        "[interface]\nlistenport=51820\n\n[PEER]\n  publickey\t=  "
        f"{pair.public}  # hers\nallowedips = 198.18.10.9/32\nAllowedIPs = 2001:db8:10::9/128\n"
    )
    config = parse_wg_conf(text, "c")
    assert config.interface is not None and config.interface.listen_port == 51820
    (peer,) = config.peers
    assert peer.public_key == pair.public
    assert peer.allowed_ips == ("198.18.10.9/32", "2001:db8:10::9/128")


def test_live_dump_merged_with_the_conf_file() -> None:
    (a, psk_a), (b, psk_b) = keys(2)
    live_psk = generate_preshared_key().reveal()
    gateway = generate_keypair()
    dump = (
        f"{gateway.private.reveal()}\t{gateway.public}\t51820\toff\n"
        f"{a.public}\t{live_psk}\t(none)\t198.18.10.2/32\t0\t0\t0\toff\n"
        f"{b.public}\t(none)\t203.0.113.9:4000\t198.18.10.3/32,2001:db8:10::3/128\t1700000000\t5\t6\t25\n"
    )
    private, live = parse_dump(dump)
    assert private is not None and private.reveal() == gateway.private.reveal()
    conf = parse_wg_conf("\n".join([*interface(), *peer_lines(a, psk_a, 2, ["# Anna"])]), "c")
    merged = merge_live(conf, live)
    assert [p.public_key for p in merged.peers] == [a.public, b.public]
    first, second = merged.peers
    assert first.preshared_key is not None and first.preshared_key.reveal() == live_psk
    assert name_from_comments(first) == ("Anna", None)
    assert second.preshared_key is None and second.line == 0 and second.keepalive == 25
    assert second.allowed_ips == ("198.18.10.3/32", "2001:db8:10::3/128")
    assert live_psk not in repr(merged) and psk_b not in repr(merged)


# -- the command -------------------------------------------------------------------------------


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "netsetup", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        check=False,
    )


def test_cli_json_and_no_secret_in_any_output(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    gateway = generate_keypair()
    pairs = keys(3)
    lines = interface(gateway.private.reveal())
    for index, (pair, psk) in enumerate(pairs):
        lines += peer_lines(pair, psk, 2 + index, [f"### begin user{index} ###"])
    conf = write_conf(tmp_path / "wg0.conf", lines)
    done = _run(
        "import",
        str(acme),
        "--wg-conf",
        str(conf),
        "--mode",
        "agency",
        "--take-gateway-key",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == "netsetup.import/1"
    assert [p["name"] for p in document["imported"]] == ["user0", "user1", "user2"]
    assert all(p["mode"] == "agency" and p["preshared_key"] for p in document["imported"])
    assert document["gateway_key"]["action"] == "taken"
    output = done.stdout + done.stderr + (state_dir / "audit.jsonl").read_text()
    for secret in [gateway.private.reveal(), *(psk for _, psk in pairs)]:
        assert secret not in output


def test_cli_without_mode_and_without_a_terminal(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    pairs = keys(2)
    lines = interface()
    for index, (pair, psk) in enumerate(pairs):
        lines += peer_lines(pair, psk, 2 + index)
    conf = write_conf(tmp_path / "wg0.conf", lines)
    before = snapshot(acme)
    done = _run("import", str(acme), "--wg-conf", str(conf))
    assert done.returncode == 2
    assert "no --mode given and no terminal to ask on" in done.stderr
    assert [p for p in changed(before, snapshot(acme)) if not p.endswith((".lock", "peers"))] == []


def test_cli_lists_every_refused_peer(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    pairs = keys(2)
    lines = interface()
    for index, (pair, _psk) in enumerate(pairs):
        lines += ["[Peer]", f"PublicKey = {pair.public}", f"AllowedIPs = 10.9.{index}.0/24", ""]
    conf = write_conf(tmp_path / "wg0.conf", lines)
    done = _run("import", str(acme), "--wg-conf", str(conf), "--mode", "dedicated")
    assert done.returncode == 2
    assert f"{conf}:5: peer 'peer-1'" in done.stderr and f"{conf}:9: peer 'peer-2'" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: peer 'peer-1'")


def test_cli_needs_exactly_one_source(acme: Path, state_dir: Path) -> None:
    done = _run("import", str(acme))
    assert (
        done.returncode == 2 and "exactly one of --wg-conf FILE and --from-gateway" in done.stderr
    )


def test_from_gateway_needs_ssh_in_the_profile(acme: Path, state_dir: Path) -> None:
    # no `ssh` (the example profile may carry one; nothing here may leave this machine)
    text = (acme / "profile.toml").read_text()
    kept = [line for line in text.splitlines() if not line.startswith(("ssh =", "host_key ="))]
    (acme / "profile.toml").write_text("\n".join(kept) + "\n")
    assert load_profile(acme).gateway.ssh is None
    done = _run("import", str(acme), "--from-gateway", "--mode", "dedicated")
    assert done.returncode == 2 and "has no `ssh" in done.stderr


def test_adopt_peers_for_apply_adopt(acme: Path, state: StateDir) -> None:
    """What `apply --adopt` calls with the drift peers it found on the gateway."""
    (a, psk_a), (b, _) = keys(2)
    drift = [
        importer.imported_peer(
            a.public, SecretKey(psk_a), ["198.18.10.40/32"], ["# Client: Rosa (1)"], source="gw"
        ),
        importer.imported_peer(b.public, None, ["198.18.10.41/32", "2001:db8:10::41/128"]),
    ]
    profile = load_profile(acme)
    written = importer.adopt_peers(
        profile, drift, mode="dedicated", now=NOW, state=state, action="adopt"
    )
    assert [p.name for p in written] == ["rosa.toml", "peer-1.toml"]
    assert state.load_psk(profile.id, PeerName("rosa"), a.public) == SecretKey(psk_a)
    actions = [json.loads(line)["action"] for line in state.audit_path.read_text().splitlines()]
    assert actions == ["adopt", "adopt"]
    # again: both already in the profile, nothing written
    assert importer.adopt_peers(profile, drift, mode="dedicated", now=NOW, state=state) == []


def _two_sites(acme: Path) -> None:
    """acme-dental as two sites: `main` ([network]'s subnets) and `branch` (198.18.11.0/24)."""
    text = (acme / "profile.toml").read_text()
    branch = generate_keypair()
    text = text.replace("[gateway]\n", '[[gateway]]\nname = "main"\n', 1)
    text = text.replace(
        "[network]\n",
        '[[gateway]]\nname = "branch"\nendpoint = "branch.acme-dental.example:51821"\n'
        f'public_key = "{branch.public}"\ntunnel_v4 = "198.18.11.0/24"\n\n[network]\n',
        1,
    )
    (acme / "profile.toml").write_text(text)


def test_import_into_the_second_site(acme: Path, state: StateDir) -> None:
    _two_sites(acme)
    profile = load_profile(acme)
    (a, psk_a), (b, _) = keys(2)
    lines = ["[Interface]", "ListenPort = 51821", ""]
    lines += ["# Branch One", "[Peer]", f"PublicKey = {a.public}", f"PresharedKey = {psk_a}"]
    lines += ["AllowedIPs = 198.18.11.5/32", ""]
    config = parse_wg_conf("\n".join(lines), "branch.conf")
    result = import_config(
        profile, config, state=state, mode="dedicated", gateway="branch", clock=AT
    )
    assert result.gateway == "branch"
    peer = load_peer(load_profile(acme), PeerName("branch-one"))
    assert peer.gateway == "branch" and str(peer.address_v4) == "198.18.11.5"
    assert 'gateway = "branch"' in (acme / "peers" / "branch-one.toml").read_text()
    _validate_clean(acme)
    # the first site's subnet is not the branch's
    wrong = parse_wg_conf(
        "\n".join(["[Peer]", f"PublicKey = {b.public}", "AllowedIPs = 198.18.10.5/32"]), "b.conf"
    )
    with pytest.raises(ImportRefused, match=re.escape("outside the tunnel subnet 198.18.11.0/24")):
        import_config(profile, wrong, state=state, mode="dedicated", gateway="branch", clock=AT)
    with pytest.raises(InputError, match="no gateway named 'nowhere'"):
        import_config(profile, wrong, state=state, mode="dedicated", gateway="nowhere", clock=AT)


def test_take_gateway_key_refused_when_the_line_cannot_be_rewritten(
    acme: Path, state: StateDir
) -> None:
    original = (acme / "profile.toml").read_text()
    literal = original.replace(
        'public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="',
        "public_key = 'MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI='",  # a TOML literal string
    )
    (acme / "profile.toml").write_text(literal)
    gateway = generate_keypair()
    ((pair, psk),) = keys(1)
    lines = [*interface(gateway.private.reveal()), *peer_lines(pair, psk, 2)]
    before = snapshot(acme, state.root)
    with pytest.raises(InputError, match="public_key"):
        import_config(
            load_profile(acme),
            parse_wg_conf("\n".join(lines), "c"),
            state=state,
            mode="dedicated",
            take_gateway_key=True,
            clock=AT,
        )
    after = snapshot(acme, state.root)
    assert [p for p in changed(before, after) if not p.endswith(("/.lock", "/peers"))] == []
    assert not state.gateway_key_path(load_profile(acme).id).exists()
