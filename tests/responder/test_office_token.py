"""The office responder's token and each peer's responder key: made once per profile (0600 in
0700), derived per peer, written on the client config's responder line (never in the QR code),
read back by diagnose, and never shown by any command or report."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.clock import FixedClock
from netsetup.diagnose.clientconfig import ClientConfig
from netsetup.diagnose.context import CheckContext
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.profile.store import load_profile
from netsetup.provision import service
from netsetup.provision.client_config import qr_payload
from netsetup.responder import office_wire
from netsetup.state import StateDir
from tests.diagnose.test_cli import FakeCheck, Keys, diagnose, scenario, write_config

__all__ = ["scenario"]  # the fixture, used below by name

AT = FixedClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
KEY_LINE = re.compile(r"responder-key=(\S+)")


def responder_key_of(config: Path) -> str:
    found = KEY_LINE.search(config.read_text())
    assert found is not None
    return found.group(1)


def test_first_provision_makes_the_token_private_and_later_ones_reuse_it(
    acme: Path, state_dir: Path
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    path = state.responder_token_path(profile.id)
    assert not path.exists()
    service.provision(profile, "maria", "dedicated", state=state, clock=AT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text()
    assert len(base64.b64decode(token.strip(), validate=True)) == 32
    service.provision(profile, "temp", "agency", state=state, clock=AT)
    service.rotate(profile, "maria", state=state, clock=AT)
    assert path.read_text() == token


def test_each_peer_gets_its_own_key_derived_from_the_token(acme: Path, state_dir: Path) -> None:
    profile = load_profile(acme)
    state = StateDir()
    maria = service.provision(profile, "maria", "dedicated", state=state, clock=AT)
    temp = service.provision(profile, "temp", "agency", state=state, clock=AT)
    token = state.load_responder_token(profile.id)
    assert token is not None
    for result in (maria, temp):
        config = ClientConfig.read(result.config)
        public = config.client_public_key()
        assert public is not None
        expected = office_wire.peer_key(base64.b64decode(token.reveal()), base64.b64decode(public))
        assert config.info.responder_key is not None
        assert base64.b64decode(config.info.responder_key.reveal()) == expected
        assert config.info.responder is not None
        assert (str(config.info.responder[0]), config.info.responder[1]) == ("192.0.2.50", 4789)
    assert responder_key_of(maria.config) != responder_key_of(temp.config)


def test_rotate_writes_the_new_keys_responder_key_and_the_qr_code_has_none(
    acme: Path, state_dir: Path
) -> None:
    profile = load_profile(acme)
    state = StateDir()
    first = service.provision(profile, "maria", "dedicated", state=state, clock=AT)
    before = responder_key_of(first.config)
    text = first.config.read_text()
    assert before in text and before not in qr_payload(text)
    second = service.rotate(profile, "maria", state=state, clock=AT)
    assert responder_key_of(second.config) != before


def test_no_responder_no_token_and_no_key_line(acme: Path, state_dir: Path) -> None:
    toml = acme / "profile.toml"
    toml.write_text(toml.read_text().replace('responder = "192.0.2.50:4789"\n', ""))
    profile = load_profile(acme)
    state = StateDir()
    result = service.provision(profile, "maria", "dedicated", state=state, clock=AT)
    assert "responder" not in result.config.read_text()
    assert state.load_responder_token(profile.id) is None


def test_config_lines_carry_codec_plc_and_sip_mirror(acme: Path, state_dir: Path) -> None:
    toml = acme / "profile.toml"
    toml.write_text(
        toml.read_text().replace(
            'rtp_ports = "10000-20000"\n',
            'rtp_ports = "10000-20000"\ncodec = "g729"\nplc = false\n',
        )
    )
    profile = load_profile(acme)
    result = service.provision(profile, "maria", "dedicated", state=StateDir(), clock=AT)
    info = ClientConfig.read(result.config).info
    assert (info.codec, info.plc, info.sip_mirror) == ("g729", False, True)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("responder=192.0.2.50:4789 responder-key=abc", "responder-key is not a key"),
        ("sip=192.0.2.40 codec=opus", "codec 'opus'"),
        ("sip=192.0.2.40 plc=yes", "plc is 'yes'"),
        ("gateway=198.18.10.1 sip-mirror=2", "sip-mirror is '2'"),
    ],
)
def test_bad_lines_are_problems_not_crashes(line: str, problem: str) -> None:
    text = f"[Interface]\n# netsetup-diagnose: {line}\n[Peer]\nPublicKey = x\n"
    info = ClientConfig.parse(text).info
    assert len(info.problems) == 1 and problem in info.problems[0][1]


def test_the_cli_never_shows_the_token_or_a_responder_key(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}
    outputs = []
    for args in (
        ["provision", str(acme), "maria", "--mode", "dedicated", "--qr"],
        ["provision", str(acme), "temp", "--mode", "agency", "--json"],
        ["rotate", str(acme), "maria", "--json"],
        ["list", str(acme), "--json"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "netsetup", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    token = (state_dir / "acme-dental" / "responder" / "token").read_text().strip()
    keys = [responder_key_of(p) for p in state_dir.rglob("*.conf")]
    assert len(keys) == 2
    for secret in [token, *keys]:
        assert secret not in "\n".join(outputs)
        assert secret not in (state_dir / "audit.jsonl").read_text()


def _leaking(ctx: CheckContext) -> Outcome:
    key = ctx.info.responder_key.reveal() if ctx.info.responder_key else "none"
    return Outcome.problem(Status.fail, f"responder key {key}", f"tell IT {key}", Owner.it, key=key)


@pytest.mark.parametrize("as_json", [False, True])
def test_diagnose_never_shows_the_responder_key(
    tmp_path: Path,
    scenario: list[FakeCheck],
    capsys: pytest.CaptureFixture[str],
    as_json: bool,
) -> None:
    secret = base64.b64encode(office_wire.peer_key(os.urandom(32), os.urandom(32))).decode()
    config = write_config(tmp_path, Keys())
    config.write_text(
        config.read_text().replace(
            "[Peer]",
            f"# netsetup-diagnose: responder=192.0.2.50:4789 responder-key={secret}\n[Peer]",
        )
    )
    assert ClientConfig.read(config).info.responder_key is not None
    scenario.append(FakeCheck("fake.leak", _leaking))
    folder = tmp_path / "reports"
    extra = ["--json"] if as_json else []
    code, out, err = diagnose(config, capsys, "--report", str(folder), *extra)
    assert code == 1
    texts = [out, err, *(p.read_text() for p in folder.iterdir())]
    assert len(texts) == 5
    for text in texts:
        assert secret not in text
    assert "[key removed]" in out


def test_the_stored_token_must_be_a_small_regular_file(tmp_path: Path) -> None:
    """A token path made a symlink (to /dev/zero, or to another file), a FIFO or a huge file is
    refused with an error naming the file and never its contents; no file is no token yet."""
    from netsetup.errors import InputError

    state = StateDir(tmp_path / "state")
    path = state.responder_token_path("acme")
    assert state.load_responder_token("acme") is None
    path.parent.mkdir(parents=True)
    secret = base64.b64encode(os.urandom(32)).decode("ascii")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(secret + "\n")
    for make in (
        lambda: path.symlink_to("/dev/zero"),
        lambda: path.symlink_to(elsewhere),
        lambda: os.mkfifo(path),
        lambda: path.write_bytes(b"A" * (1 << 20)),
    ):
        make()
        with pytest.raises(InputError) as caught:
            state.load_responder_token("acme")
        assert str(path) in str(caught.value.where) and secret not in str(caught.value)
        path.unlink()
    path.write_text(secret + "\n")
    token = state.load_responder_token("acme")
    assert token is not None and token.reveal() == secret
