"""The admin's inventory: `list` over a folder of profiles with filters, `show` of one peer.

The tree: two good profiles with peers in every state (active, expiring soon, expired, revoked,
one made with --client-pubkey, one whose config went to --out elsewhere), a profile whose
profile.toml is broken and a broken peer file. Time comes from a FixedClock.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest

import netsetup.cli.inventory as cli_inventory
from netsetup.clock import FixedClock
from netsetup.errors import ConflictError, ExitCode, InputError, NotFoundError, ProfileError
from netsetup.keys import generate_keypair, generate_preshared_key
from netsetup.profile.model import MODES, Peer
from netsetup.profile.store import load_profile
from netsetup.profile.values import PeerName
from netsetup.provision import service
from netsetup.provision.inventory import (
    PEER_STATES,
    Inventory,
    PeerFilter,
    peer_details,
    redact_config,
    stored_client_config,
    take_inventory,
)
from netsetup.state import StateDir

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
Run = Callable[..., tuple[int, str, str]]


@dataclass
class Tree:
    profiles: Path
    acme: Path
    bright: Path
    state: StateDir
    broken_profile: Path
    broken_peer: Path


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def tree(profiles_dir: Path, state_dir: Path, tmp_path: Path) -> Tree:
    acme_dir = profiles_dir / "acme-dental"
    bright_dir = profiles_dir / "brightdesk-agency"
    broken = profiles_dir / "broken-co"
    shutil.copytree(acme_dir, broken)
    text = (broken / "profile.toml").read_text()
    assert "[company]" in text
    (broken / "profile.toml").write_text(text.replace("[company]", "[company", 1))

    state = StateDir()
    acme = load_profile(acme_dir)
    bright = load_profile(bright_dir)
    service.provision(acme, "maria", "dedicated", state=state, qr=True, now=NOW)
    service.provision(acme, "temp", "agency", state=state, expires="3d", now=NOW)
    service.provision(acme, "gone", "dedicated", state=state, now=NOW - 2 * DAY)
    service.revoke(acme, "gone", state=state, now=NOW - DAY)
    service.provision(acme, "old", "agency", state=state, expires="2d", now=NOW - 10 * DAY)
    service.provision(bright, "ana", "agency", state=state, expires="20d", now=NOW)
    service.provision(
        bright,
        "kim",
        "agency",
        state=state,
        expires="5d",
        client_pubkey=generate_keypair().public,
        now=NOW,
    )
    service.provision(
        bright, "zoe", "agency", state=state, expires="7d", out_dir=tmp_path / "handoff", now=NOW
    )
    bad_peer = bright_dir / "peers" / "bad.toml"
    bad_peer.write_text('name = "bad"\nmode = "agency"\npublic_key = \n')
    return Tree(profiles_dir, acme_dir, bright_dir, state, broken, bad_peer)


def secrets_of(state_dir: Path, *more: Path) -> set[str]:
    """Every private and preshared key value the state folder (and `more` folders) hold."""
    found: set[str] = set()
    for folder in (state_dir, *more):
        for path in [*folder.rglob("*.psk"), *folder.rglob("*.conf")]:
            for line in path.read_text().splitlines():
                if path.suffix == ".psk":
                    found.add(line.strip())
                elif line.startswith(("PrivateKey", "PresharedKey")):
                    found.add(line.split("=", 1)[1].strip())
    return found


def names(inventory: Inventory) -> list[tuple[str, str, str]]:
    return [(p.profile, p.peer.name, p.peer.state) for p in inventory.peers]


# -- core: list ------------------------------------------------------------------------------------
def test_the_states_are_the_ones_peer_state_yields() -> None:
    base = Peer("a", "agency", "k", IPv4Address("198.18.10.2"), None, NOW - DAY)
    yielded = {
        base.state(NOW),
        replace(base, expires=NOW).state(NOW),
        replace(base, status="revoked").state(NOW),
    }
    assert yielded == set(PEER_STATES)
    # the CLI's choices are the core's facts
    assert tuple(cli_inventory.State) == PEER_STATES
    assert tuple(cli_inventory.Mode) == MODES


def test_a_folder_lists_every_profile_sorted_and_reports_broken_files(
    tree: Tree, clock: FixedClock
) -> None:
    inventory = take_inventory([tree.profiles], clock.now())
    assert names(inventory) == [
        ("acme-dental", "gone", "revoked"),
        ("acme-dental", "maria", "active"),
        ("acme-dental", "old", "expired"),
        ("acme-dental", "temp", "active"),
        ("brightdesk-agency", "ana", "active"),
        ("brightdesk-agency", "kim", "active"),
        ("brightdesk-agency", "zoe", "active"),
    ]
    assert inventory.several
    assert [p.id for p in inventory.profiles] == ["acme-dental", "brightdesk-agency"]
    assert inventory.counts() == {"active": 5, "expired": 1, "revoked": 1}
    assert [p.where for p in inventory.problems] == [
        f"{tree.bright.as_posix()}/peers/bad.toml:3",
        f"{tree.broken_profile.as_posix()}/profile.toml:5",
    ]
    assert all("TOML syntax error" in p.message for p in inventory.problems)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"mode": "dedicated"}, ["gone", "maria"]),
        ({"state": "expired"}, ["old"]),
        ({"state": "revoked"}, ["gone"]),
        ({"state": "active", "mode": "agency"}, ["temp", "ana", "kim", "zoe"]),
        # zoe expires exactly 7 days from now: within; ana in 20 days, old already expired,
        # gone revoked and maria never: not
        ({"expiring_within": "7d"}, ["temp", "kim", "zoe"]),
        ({"expiring_within": "72h"}, ["temp"]),
        ({"expiring_within": "1w", "mode": "dedicated"}, []),
    ],
)
def test_filters_combine(
    tree: Tree, clock: FixedClock, filters: dict[str, str], expected: list[str]
) -> None:
    inventory = take_inventory([tree.profiles], clock.now(), PeerFilter.parse(**filters))
    assert [p.peer.name for p in inventory.peers] == expected
    assert inventory.total == 7  # the filter narrows the list, not the count of what was read


def test_the_clock_decides_what_is_expired_and_expiring(tree: Tree, clock: FixedClock) -> None:
    soon = PeerFilter.parse(expiring_within="7d")
    clock.advance(4 * DAY)
    inventory = take_inventory([tree.profiles], clock.now(), soon)
    assert [p.peer.name for p in inventory.peers] == ["kim", "zoe"]  # temp expired yesterday
    states = {p.peer.name: p.peer.state for p in take_inventory([tree.acme], clock.now()).peers}
    assert states == {"gone": "revoked", "maria": "active", "old": "expired", "temp": "expired"}
    clock.advance(365 * DAY)
    inventory = take_inventory([tree.profiles], clock.now(), PeerFilter(state="active"))
    assert [p.peer.name for p in inventory.peers] == ["maria"]


def test_one_profile_is_not_several_and_a_broken_one_raises(tree: Tree, clock: FixedClock) -> None:
    inventory = take_inventory([tree.acme], clock.now())
    assert not inventory.several and inventory.as_dict()["profile"] == "acme-dental"
    with pytest.raises(ProfileError) as raised:
        take_inventory([tree.broken_profile], clock.now())
    assert raised.value.where is not None and raised.value.where.endswith("profile.toml:5")
    # the same profile named twice (once through its folder) is listed once
    twice = take_inventory([tree.profiles, tree.acme], clock.now())
    assert [p.id for p in twice.profiles] == ["acme-dental", "brightdesk-agency"]
    assert len(twice.peers) == 7 and twice.several


def test_bad_filters_and_empty_folders_are_input_errors(tmp_path: Path, clock: FixedClock) -> None:
    for text in ("7 days", "0d", "7", "-1d"):
        with pytest.raises(InputError) as raised:
            PeerFilter.parse(expiring_within=text)
        assert raised.value.where == "--expiring-within"
    with pytest.raises(InputError, match="mode 'boss'"):
        PeerFilter(mode="boss")
    with pytest.raises(InputError, match="state 'gone'"):
        PeerFilter(state="gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no profile\.toml"):
        take_inventory([tmp_path / "empty"], clock.now())


# -- core: show ------------------------------------------------------------------------------------
def test_details_say_where_the_config_is(tree: Tree, clock: FixedClock) -> None:
    acme = load_profile(tree.acme)
    maria = peer_details(acme, PeerName("maria"), tree.state, clock.now())
    assert maria.client_config_present and maria.preshared_key_stored
    assert maria.client_config == tree.state.client_dir("acme-dental", "maria") / "wg-acme.conf"
    assert [p.suffix for p in maria.qr_files] == [".png", ".svg"]
    assert maria.gateway_endpoint == "vpn.acme-dental.example:51820"
    assert maria.peer.key_origin == "generated" and maria.revoked is None
    gone = peer_details(acme, PeerName("gone"), tree.state, clock.now())
    assert gone.peer.state == "revoked" and gone.revoked == "2026-11-25T12:00:00Z"
    assert not gone.client_config_present and not gone.preshared_key_stored
    with pytest.raises(NotFoundError, match="no peer 'ghost'"):
        peer_details(acme, PeerName("ghost"), tree.state, clock.now())


def test_stored_config_is_redacted_and_checked(tree: Tree, clock: FixedClock) -> None:
    acme = load_profile(tree.acme)
    state = tree.state
    name = PeerName("maria")
    config = stored_client_config(acme, peer_details(acme, name, state, clock.now()), state, name)
    secrets = secrets_of(Path(state.root))
    assert len(secrets) >= 4
    assert config.has_private_key
    assert "PrivateKey = (redacted" in config.redacted
    assert "PresharedKey = (redacted" in config.redacted
    assert not any(secret in config.redacted or secret in repr(config) for secret in secrets)
    assert "Endpoint = vpn.acme-dental.example:51820" in config.redacted
    assert config.text_for_qr("acme-dental", name) == config.path.read_text()

    # a config that no longer belongs to the peer's key (an interrupted rotate) is refused
    text = config.path.read_text()
    private = next(line for line in text.splitlines() if line.startswith("PrivateKey"))
    other = generate_keypair().private.reveal()
    config.path.write_text(text.replace(private, f"PrivateKey = {other}"))
    with pytest.raises(ConflictError, match="does not belong to its current key") as raised:
        stored_client_config(acme, peer_details(acme, name, state, clock.now()), state, name)
    assert other not in str(raised.value)


def test_redaction_ignores_case_and_spacing_and_catches_pasted_keys() -> None:
    key = generate_keypair().private.reveal()
    psk = generate_preshared_key().reveal()
    public = generate_keypair().public
    text = (
        f"# old one: PrivateKey = {key}\n[Interface]\n  privatekey={key}\n"
        f"PRESHAREDKEY   =   {psk}\nPostUp = echo {psk}>/tmp/k\nPublicKey = {public}\n"
    )
    redacted = redact_config(text)
    assert key not in redacted and psk not in redacted
    assert "  privatekey=(redacted" in redacted and f"PublicKey = {public}\n" in redacted
    assert "PostUp = echo (redacted)>/tmp/k" in redacted


@pytest.mark.parametrize(
    ("profile", "peer", "error", "message"),
    [
        ("acme", "gone", ConflictError, "revoked: its client config was destroyed"),
        ("bright", "zoe", NotFoundError, "written with --out elsewhere.*rotate brightdesk-agency"),
    ],
)
def test_a_config_that_is_not_there_says_what_to_do(
    tree: Tree, clock: FixedClock, profile: str, peer: str, error: type[Exception], message: str
) -> None:
    loaded = load_profile(getattr(tree, profile))
    name = PeerName(peer)
    details = peer_details(loaded, name, tree.state, clock.now())
    with pytest.raises(error, match=message):
        stored_client_config(loaded, details, tree.state, name)


def test_a_client_pubkey_config_has_no_qr(tree: Tree, clock: FixedClock) -> None:
    bright = load_profile(tree.bright)
    name = PeerName("kim")
    config = stored_client_config(
        bright, peer_details(bright, name, tree.state, clock.now()), tree.state, name
    )
    assert not config.has_private_key
    with pytest.raises(ConflictError, match="--client-pubkey"):
        config.text_for_qr("brightdesk-agency", name)


# -- CLI -------------------------------------------------------------------------------------------
@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `netsetup` in-process at the fixed time; return (exit code, stdout, stderr)."""
    from netsetup.cli import main

    monkeypatch.setattr(cli_inventory, "clock", clock)
    monkeypatch.delenv("NETSETUP_DEBUG", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return run


def test_list_a_folder_in_text(tree: Tree, cli: Run, tmp_path: Path) -> None:
    code, out, err = cli("list", str(tree.profiles))
    assert code == ExitCode.USAGE  # listed, but two files could not be read
    lines = out.splitlines()
    assert lines[0].split() == [
        "PROFILE",
        "NAME",
        "MODE",
        "STATE",
        "ADDRESSES",
        "CREATED",
        "EXPIRES",
        "KEY",
    ]
    assert [line.split()[:2] for line in lines[1:-1]] == [
        ["acme-dental", "gone"],
        ["acme-dental", "maria"],
        ["acme-dental", "old"],
        ["acme-dental", "temp"],
        ["brightdesk-agency", "ana"],
        ["brightdesk-agency", "kim"],
        ["brightdesk-agency", "zoe"],
    ]
    assert lines[-1] == (
        "7 peers in 2 profiles: 5 active, 1 expired, 1 revoked; 2 files could not be read "
        "(on stderr), so this list is incomplete"
    )
    assert err.splitlines() == [
        f"error: TOML syntax error: Invalid value ({tree.bright.as_posix()}/peers/bad.toml:3)",
        f"error: TOML syntax error: Expected ']' at the end of a table declaration "
        f"({tree.broken_profile.as_posix()}/profile.toml:5)",
    ]
    tree.broken_peer.unlink()
    shutil.rmtree(tree.broken_profile)
    code, out, err = cli("list", str(tree.profiles))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "7 peers in 2 profiles: 5 active, 1 expired, 1 revoked"
    assert not secrets_of(Path(tree.state.root), tmp_path / "handoff") & set(out.split())


def test_list_the_monday_view(tree: Tree, cli: Run) -> None:
    code, out, _ = cli("list", str(tree.profiles), "--expiring-within", "7d", "--mode", "agency")
    assert code == ExitCode.USAGE
    assert [line.split()[1] for line in out.splitlines()[1:-1]] == ["temp", "kim", "zoe"]
    assert out.splitlines()[-1].startswith(
        "3 of 7 peers in 2 profiles match --mode agency --expiring-within 7d: 3 active, "
        "0 expired, 0 revoked"
    )
    tree.broken_peer.unlink()
    shutil.rmtree(tree.broken_profile)
    code, out, _ = cli("list", str(tree.profiles), "--state", "expired")
    assert code == 0 and [line.split()[1] for line in out.splitlines()[1:-1]] == ["old"]
    code, out, _ = cli("list", str(tree.profiles), "--state", "revoked", "--mode", "agency")
    assert code == 0
    assert out == "0 of 7 peers in 2 profiles match --mode agency --state revoked: " + (
        "0 active, 0 expired, 0 revoked\n"
    )


def test_list_one_profile_keeps_its_shape(tree: Tree, cli: Run, profiles_dir: Path) -> None:
    code, out, err = cli("list", str(tree.acme))
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split()[0] == "NAME"  # no profile column for one profile
    code, out, _ = cli("list", str(tree.acme), "--json")
    document = json.loads(out)
    assert document["schema"] == "netsetup.list/1"
    assert document["profile"] == "acme-dental"
    assert [p["name"] for p in document["peers"]] == ["gone", "maria", "old", "temp"]
    assert document["errors"] == []
    code, out, err = cli("list", str(tree.bright))  # a broken peer file hides only itself
    assert code == ExitCode.USAGE
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["ana", "kim", "zoe"]
    assert err == f"error: TOML syntax error: Invalid value ({tree.broken_peer.as_posix()}:3)\n"
    empty = profiles_dir / "empty-co"
    shutil.copytree(profiles_dir / "acme-dental", empty, ignore=shutil.ignore_patterns("peers"))
    code, out, _ = cli("list", str(empty))
    assert (code, out) == (0, "empty-co: no peers yet (netsetup provision empty-co NAME)\n")


def test_list_json_of_a_folder_carries_the_errors(tree: Tree, cli: Run) -> None:
    code, out, err = cli("list", str(tree.profiles), "--json", "--state", "active")
    assert code == ExitCode.USAGE
    document = json.loads(out)
    assert "profile" not in document
    assert document["schema"] == "netsetup.list/1"
    assert document["as_of"] == "2026-11-26T12:00:00Z"
    assert document["filters"] == {"mode": None, "state": "active", "expiring_within": None}
    assert [(p["profile"], p["name"]) for p in document["peers"]] == [
        ("acme-dental", "maria"),
        ("acme-dental", "temp"),
        ("brightdesk-agency", "ana"),
        ("brightdesk-agency", "kim"),
        ("brightdesk-agency", "zoe"),
    ]
    assert document["summary"] == {
        "listed": 5,
        "total": 7,
        "active": 5,
        "expired": 0,
        "revoked": 0,
    }
    assert [(e["path"], e["line"]) for e in document["errors"]] == [
        (f"{tree.bright.as_posix()}/peers/bad.toml", 3),
        (f"{tree.broken_profile.as_posix()}/profile.toml", 5),
    ]
    assert [line[:7] for line in err.splitlines()] == ["error: ", "error: "]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--expiring-within", "soon"], "error: duration 'soon' must look like 12h"),
        (["--state", "gone"], "'gone' is not one of 'active', 'expired', 'revoked'"),
        (["--mode", "boss"], "'boss' is not one of 'dedicated', 'agency'"),
    ],
)
def test_list_bad_options_are_usage_errors(
    tree: Tree, cli: Run, argv: list[str], message: str
) -> None:
    code, out, err = cli("list", str(tree.profiles), *argv)
    assert (code, out) == (ExitCode.USAGE, "")
    assert message in err


def test_show_a_peer(tree: Tree, cli: Run) -> None:
    code, out, err = cli("show", str(tree.acme), "maria")
    assert (code, err) == (0, "")
    config = tree.state.client_dir("acme-dental", "maria") / "wg-acme.conf"
    for expected in (
        "maria on acme-dental (Acme Dental Practice)",
        "  mode             dedicated",
        "  state            active",
        "  addresses        198.18.10.2, 2001:db8:10::2",
        "  created          2026-11-26T12:00:00Z",
        "  expires          never",
        "  gateway          vpn.acme-dental.example:51820",
        f"  client config    {config} (0600",
        f"  QR code          {config.with_suffix('.png')}",
    ):
        assert expected in out, expected
    assert "PrivateKey" not in out
    code, out, _ = cli("show", str(tree.acme), "old")
    assert code == 0 and "  state            expired (`netsetup renew acme-dental old" in out
    code, out, _ = cli("show", str(tree.acme), "gone", "--json")
    document = json.loads(out)
    assert document["schema"] == "netsetup.show/1"
    assert (document["state"], document["revoked"]) == ("revoked", "2026-11-25T12:00:00Z")
    assert document["client_config"] is None and document["preshared_key_stored"] is False


def test_show_config_redacts_and_says_how_to_send(tree: Tree, cli: Run, tmp_path: Path) -> None:
    code, out, err = cli("show", str(tree.acme), "maria", "--config")
    assert (code, err) == (0, "")
    config = tree.state.client_dir("acme-dental", "maria") / "wg-acme.conf"
    assert f"client config {config} (keys redacted):" in out
    assert "PrivateKey = (redacted" in out and "PresharedKey = (redacted" in out
    assert "AllowedIPs = " in out and "Send the file itself" in out
    code, out_json, _ = cli("show", str(tree.acme), "maria", "--config", "--json")
    assert code == 0 and "PrivateKey = (redacted" in json.loads(out_json)["config"]["text"]
    secrets = secrets_of(Path(tree.state.root), tmp_path / "handoff")
    assert len(secrets) >= 8
    assert not any(secret in out + out_json for secret in secrets)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["acme", "gone", "--config"], "revoked: its client config was destroyed"),
        (["bright", "zoe", "--config"], "written with --out elsewhere"),
        (["acme", "ghost"], "no peer 'ghost'"),
        (["acme", "../maria"], "error: peer name '../maria' must be"),
        (["acme", "Maria", "--config"], "error: peer name 'Maria' must be"),
        (["acme", "a\x1b[2Jb"], "error: peer name 'a\\x1b[2Jb' must be"),
        (["acme", "maria", "--qr", "--json"], "cannot go into JSON"),
    ],
)
def test_show_errors_are_exit_2_and_say_what_to_do(
    tree: Tree, cli: Run, argv: list[str], message: str
) -> None:
    profile = str(getattr(tree, argv[0]))
    code, out, err = cli("show", profile, *argv[1:])
    assert code == ExitCode.USAGE
    if "--json" in argv:  # with --json the error is also a JSON document on stdout
        assert json.loads(out)["schema"] == "netsetup.error/1"
        assert message in json.loads(out)["error"]["what"]
    else:
        assert out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_show_qr_only_on_a_terminal(
    tree: Tree, cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = secrets_of(Path(tree.state.root), tmp_path / "handoff")
    code, out, err = cli("show", str(tree.acme), "maria", "--qr")
    assert (code, out) == (ExitCode.USAGE, "")  # captured stdout is not a terminal
    png = tree.state.client_dir("acme-dental", "maria") / "wg-acme.png"
    assert "drawn only on a terminal" in err and f"send {png} or " in err
    code, _, err = cli("show", str(tree.bright), "ana", "--qr")
    assert code == ExitCode.USAGE and "rotate brightdesk-agency ana --qr" in err
    code, _, err = cli("show", str(tree.acme), "gone", "--qr")  # not "rotate": it is revoked
    assert code == ExitCode.USAGE and "revoked" in err and "rotate" not in err

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = cli("show", str(tree.acme), "maria", "--qr")
    assert (code, err) == (0, "")
    assert "\u2588" in out or "\u2580" in out  # segno's compact terminal blocks
    assert not any(secret in out for secret in secrets)
    code, out, err = cli("show", str(tree.bright), "kim", "--qr")
    assert (code, out) == (ExitCode.USAGE, "") and "--client-pubkey" in err
