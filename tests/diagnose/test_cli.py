"""`netsetup diagnose` as people run it: exit statuses 0/1/2/130, the terminal's order (each
check as it ends, then the verdict first and the problems fix-first), --json, --report, and no key
or public address in anything it prints or writes.

The checks here are a small test family (`fake.*`, selected with `--only fake`), so these tests
pin the command's behaviour whatever the real checks find on this machine. The Ctrl-C test runs a
real process that waits on a real socket on 127.0.0.1 that never answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netsetup.diagnose import engine
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.keys import KeyPair, generate_keypair
from tests.cli.support import run_main

REPO = Path(__file__).resolve().parents[2]
CONTACT = "it@acme-dental.example"
ANSI = "\x1b["


class FakeCheck(Check):
    def __init__(self, check_id: str, make: Callable[[CheckContext], Outcome]) -> None:
        self.id = check_id
        self.title = f"Fake {check_id}"
        self.budget_s = 30.0
        self.make = make

    def run(self, ctx: CheckContext) -> Outcome:
        return self.make(ctx)


SCENARIO: list[FakeCheck] = []


def _family(ctx: DiagnoseContext) -> list[Check]:
    return list(SCENARIO)


@pytest.fixture
def scenario() -> Iterator[list[FakeCheck]]:
    """The checks of the next run (the family is registered for the test only)."""
    engine.load_families()  # the real families first, as in a real run
    engine.FAMILIES.append(("fake", _family))
    SCENARIO.clear()
    yield SCENARIO
    SCENARIO.clear()
    engine.FAMILIES.remove(("fake", _family))


class Keys:
    def __init__(self) -> None:
        self.client: KeyPair = generate_keypair()
        self.gateway: KeyPair = generate_keypair()
        self.psk = generate_keypair().private

    def all(self) -> list[str]:
        return [
            self.client.private.reveal(),
            self.client.public,
            self.gateway.private.reveal(),
            self.gateway.public,
            self.psk.reveal(),
        ]


def write_config(folder: Path, keys: Keys) -> Path:
    path = folder / "wg-acme.conf"
    path.write_text(
        "[Interface]\n"
        f"PrivateKey = {keys.client.private.reveal()}\n"
        "Address = 198.18.10.5/32\n"
        "DNS = 192.0.2.53\n"
        "# netsetup-diagnose: v=1 profile=acme-dental company=Acme%20Dental%20Practice "
        f"contact={CONTACT}\n"
        "\n[Peer]\n"
        f"PublicKey = {keys.gateway.public}\n"
        f"PresharedKey = {keys.psk.reveal()}\n"
        "Endpoint = 127.0.0.1:9\n"
        "AllowedIPs = 192.0.2.0/24, 198.18.10.0/24\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def config(tmp_path: Path, keys: Keys) -> Path:
    return write_config(tmp_path, keys)


def passing(summary: str = "all good") -> Callable[[CheckContext], Outcome]:
    return lambda ctx: Outcome.passed(summary, rtt_ms=1.5)


def failing(owner: Owner, summary: str, fix: str) -> Callable[[CheckContext], Outcome]:
    return lambda ctx: Outcome.problem(Status.fail, summary, fix, owner)


def diagnose(
    config: Path, capsys: pytest.CaptureFixture[str], *args: str, terminal: bool = False
) -> tuple[int, str, str]:
    return run_main(
        ["diagnose", "--config", str(config), "--only", "fake", *args], capsys, terminal=terminal
    )


# -- exit statuses ------------------------------------------------------------------------------


def test_all_passed_exits_0_with_plain_text_on_a_pipe(
    config: Path, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario += [FakeCheck("fake.one", passing()), FakeCheck("fake.two", passing("fine too"))]
    code, out, err = diagnose(config, capsys)
    assert code == 0, err
    assert ANSI not in out  # no colour when not a terminal
    lines = out.splitlines()
    assert lines[0].startswith("PASS") and "fake.one" in lines[0] and "all good" in lines[0]
    assert "PASS: Everything works." in out
    assert "Passed 2 of 2: fake.one, fake.two." in out


def test_a_failed_check_exits_1_verdict_first_then_fixes_in_order(
    config: Path, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    warn = lambda ctx: Outcome.problem(  # noqa: E731
        Status.warn, "slow DNS", "add a second DNS server", Owner.it
    )
    scenario += [
        FakeCheck("fake.dns", warn),
        FakeCheck("fake.ok", passing()),
        FakeCheck("fake.udp", failing(Owner.assistant, "UDP is blocked", "open UDP 51820")),
        FakeCheck("fake.line", failing(Owner.isp, "the line drops packets", "call them")),
    ]
    code, out, err = diagnose(config, capsys)
    assert code == 1, err
    verdict = out.index("FAIL: Something is broken")
    fixes = [out.index(s) for s in ("Fix: open UDP 51820", "Fix: call them", "Fix: add a second")]
    assert verdict < fixes[0] and fixes == sorted(fixes)
    assert "Who: You can fix this" in out
    assert "Who: Call your internet provider" in out
    assert f"Who: Ask your company's IT ({CONTACT})" in out
    assert out.rstrip().splitlines()[-1] == "Passed 1 of 4: fake.ok."


def test_a_warning_alone_exits_0(
    config: Path, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.append(
        FakeCheck("fake.w", lambda ctx: Outcome.problem(Status.warn, "meh", "do y", Owner.it))
    )
    code, out, _ = diagnose(config, capsys)
    assert code == 0 and "WARN: It works, but" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--deadline", "0"], "--deadline must be between"),
        (["--only", "no-such-check"], "selects no check"),
    ],
)
def test_bad_input_exits_2(
    config: Path,
    scenario: list[FakeCheck],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    code, _, err = run_main(["diagnose", "--config", str(config), *args], capsys)
    assert code == 2
    assert words in err and err.startswith("error: ")


def test_a_missing_config_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.conf"
    code, _, err = run_main(["diagnose", "--config", str(missing)], capsys)
    assert code == 2 and str(missing) in err


def test_a_report_path_that_is_a_file_exits_2_before_anything_runs(
    config: Path, scenario: list[FakeCheck], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []
    scenario.append(FakeCheck("fake.x", lambda ctx: ran.append("x") or Outcome.passed("x")))
    blocker = tmp_path / "reports"
    blocker.write_text("keep me")
    code, _, err = diagnose(config, capsys, "--report", str(blocker))
    assert code == 2 and f"({blocker})" in err and "folder" in err
    assert not ran and blocker.read_text() == "keep me"


# -- the terminal, --json, --report -------------------------------------------------------------


def test_a_terminal_gets_colour(
    config: Path, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.append(FakeCheck("fake.udp", failing(Owner.assistant, "blocked", "open it")))
    code, out, _ = diagnose(config, capsys, terminal=True)
    assert code == 1 and ANSI in out and "open it" in out


def test_json_is_the_envelope_alone(
    config: Path, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario += [
        FakeCheck("fake.ok", passing()),
        FakeCheck("fake.udp", failing(Owner.assistant, "blocked", "open it")),
    ]
    code, out, _ = diagnose(config, capsys, "--json")
    assert code == 1
    document = json.loads(out)  # nothing else on stdout
    assert document["schema"] == "netsetup.diagnose/1"
    assert document["verdict"] == "fail" and document["problems"] == ["fake.udp"]
    assert document["config"] == "wg-acme.conf" and document["contact"] == CONTACT
    by_id = {c["id"]: c for c in document["checks"]}
    assert by_id["fake.udp"]["owner"] == "assistant" and by_id["fake.udp"]["fix"] == "open it"
    assert by_id["fake.ok"]["metrics"] == {"rtt_ms": 1.5}


def test_report_writes_three_files_and_says_where(
    config: Path, scenario: list[FakeCheck], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.append(FakeCheck("fake.udp", failing(Owner.assistant, "blocked", "open it")))
    folder = tmp_path / "new" / "reports"
    code, out, _ = diagnose(config, capsys, "--report", str(folder))
    assert code == 1
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "report.md"]
    assert str(folder / "report.html") in out
    assert json.loads((folder / "report.json").read_text())["verdict"] == "fail"


# -- secrets and public addresses ---------------------------------------------------------------


def leaking(ctx: CheckContext) -> Outcome:
    """A check that (wrongly) puts the config's keys and public addresses in what it returns."""
    config = ctx.config
    private = config.private_key.reveal() if config.private_key else ""
    psk = config.preshared_key.reveal() if config.preshared_key else ""
    return Outcome.problem(
        Status.fail,
        f"handshake with key {private} failed; seen from 203.0.113.77",
        f"tell IT the preshared key {psk}",
        Owner.it,
        peer=str(config.peers[0]["publickey"].value) if config.peers else "",
        seen_from="203.0.113.77:40211",
        office="192.0.2.31",
    )


@pytest.mark.parametrize("as_json", [False, True])
def test_no_key_and_no_public_address_anywhere(
    config: Path,
    keys: Keys,
    scenario: list[FakeCheck],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    as_json: bool,
) -> None:
    scenario.append(FakeCheck("fake.leak", leaking))
    folder = tmp_path / "reports"
    extra = ["--json"] if as_json else []
    code, out, err = diagnose(config, capsys, "--report", str(folder), *extra, terminal=True)
    assert code == 1
    outputs = {"stdout": out, "stderr": err}
    outputs |= {p.name: p.read_text() for p in folder.iterdir()}
    assert len(outputs) == 5
    for name, text in outputs.items():
        for secret in keys.all():
            assert secret not in text, f"a key in {name}"
        assert "203.0.113.77" not in text, f"the public address in {name}"
    assert "203.0.x.x" in out  # masked, not dropped
    for name in ("report.md", "report.html", "report.json"):  # the company's addresses stay
        assert "203.0.x.x" in outputs[name] and "192.0.2.31" in outputs[name], name


def test_include_public_ip_shows_the_address_but_no_key(
    config: Path, keys: Keys, scenario: list[FakeCheck], capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.append(FakeCheck("fake.leak", leaking))
    code, out, err = diagnose(config, capsys, "--include-public-ip")
    assert code == 1 and "203.0.113.77" in out
    assert not any(secret in out + err for secret in keys.all())


# -- Ctrl-C -------------------------------------------------------------------------------------


def run_with_slow_check() -> None:
    """Entry point of the Ctrl-C test's process: `fake.fast` passes at once, `fake.slow` waits
    for an answer from 127.0.0.1:$SLOW_PORT that never comes."""
    port = int(os.environ["SLOW_PORT"])

    def wait_for_answer(ctx: CheckContext) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=ctx.time_left()) as conn:
            conn.settimeout(ctx.time_left())
            conn.recv(1)
        return Outcome.passed("answered")

    engine.load_families()
    engine.FAMILIES.append(("fake", _family))
    SCENARIO.extend([FakeCheck("fake.fast", passing()), FakeCheck("fake.slow", wait_for_answer)])
    from netsetup.cli import main

    main(sys.argv[1:])


def test_ctrl_c_exits_130_after_writing_what_was_found(config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        env = {**os.environ, "SLOW_PORT": str(port), "PYTHONPATH": str(REPO)}
        code = "from tests.diagnose.test_cli import run_with_slow_check; run_with_slow_check()"
        argv = ["diagnose", "--config", str(config), "--only", "fake", "--report", str(folder)]
        process = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        try:
            silent.settimeout(20)
            waiting, _ = silent.accept()  # the slow check is now waiting for its answer
            time.sleep(0.2)
            began = time.monotonic()
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
            waited = time.monotonic() - began
            waiting.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, (out, err)
    assert waited < 5  # it did not wait for the 30 s budget
    document = json.loads((folder / "report.json").read_text())
    assert document["interrupted"] is True
    by_id = {c["id"]: c for c in document["checks"]}
    assert by_id["fake.fast"]["status"] == "pass"
    assert by_id["fake.slow"]["status"] == "unknown"
    assert "interrupted" in by_id["fake.slow"]["summary"]
    assert "Interrupted (Ctrl-C)" in (folder / "report.md").read_text()
    assert (folder / "report.html").stat().st_size > 1000
    assert "fake.fast" in out and "Interrupted (Ctrl-C)" in out and "report.html" in out


# -- `netsetup lab diagnose` (its lab run is in tests/lab/test_diagnose_report.py) --------------


def test_lab_diagnose_is_documented_and_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["lab", "diagnose", "--help"], capsys)
    assert code == 0 and "Example" in out and "--user" in out
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out, err = run_main(["lab", "diagnose", "--", "--json"], capsys)
    assert code == 2 and "the lab needs root" in err


def test_lab_diagnose_passes_an_absolute_report_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netsetup.cli.lab import _report_path_absolute

    monkeypatch.chdir(tmp_path)
    assert _report_path_absolute(["--json", "--report", "out"]) == [
        "--json",
        "--report",
        str(tmp_path / "out"),
    ]
    assert _report_path_absolute(["--report=r"]) == [f"--report={tmp_path / 'r'}"]
    assert _report_path_absolute(["--only", "dns"]) == ["--only", "dns"]


def test_ctrl_c_ends_the_run_but_waits_for_the_output() -> None:
    from netsetup.cli import Interrupted
    from netsetup.cli.diagnose import _CtrlC

    before = signal.getsignal(signal.SIGINT)
    with _CtrlC() as ctrl_c:
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode
        ctrl_c.deferring = True
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert ctrl_c.caught
    assert signal.getsignal(signal.SIGINT) is before
