"""diagnose against hostile input: a server's banner and a config's lines that carry escape
sequences or markup, a FIFO among the configs, an Address that is not one, report folders with
something in the way. Real servers on 127.0.0.1 (paramiko's SSH server), real files."""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import pytest

from netsetup.diagnose.clientconfig import MARK, ClientConfig, candidate_configs
from netsetup.diagnose.discover import find_active_config
from netsetup.errors import InputError
from netsetup.keys import generate_keypair
from tests.cli.support import run_main

from .helpers import tcp_server

# what a hostile server or config could send to drive the assistant's (or IT's) terminal: clear
# the screen, set the window title, ring the bell, a C1 CSI, a line break that fakes a verdict
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"
CONTROL = ("\x1b", "\x07", "\x9b")


def _server_key() -> paramiko.PKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def hostile_ssh_server(banner: str) -> tcp_server:  # type: ignore[valid-type]
    """paramiko's SSH server whose version line (the banner) is `banner`."""
    key = _server_key()

    def serve(conn: object) -> None:
        transport = paramiko.Transport(conn)
        transport.local_version = banner
        transport.add_server_key(key)
        done = threading.Event()
        try:
            transport.start_server(event=done, server=paramiko.ServerInterface())
            done.wait(3)
            while transport.is_active():
                threading.Event().wait(0.05)
        except (paramiko.SSHException, EOFError):
            pass
        finally:
            transport.close()

    return tcp_server(serve)


def write_config(folder: Path, lines: list[str], address: str = "198.18.10.5/32") -> Path:
    client, gateway = generate_keypair(), generate_keypair()
    path = folder / "wg-acme.conf"
    path.write_text(
        f"{MARK} v=1 profile=acme-dental contact=it@acme-dental.example\n"
        + "".join(f"{MARK} {line}\n" for line in lines)
        + "[Interface]\n"
        f"PrivateKey = {client.private.reveal()}\n"
        f"Address = {address}\n"
        "\n[Peer]\n"
        f"PublicKey = {gateway.public}\n"
        "Endpoint = 127.0.0.1:9\n"
        "AllowedIPs = 192.0.2.0/24, 198.18.10.0/24\n"
    )
    return path


def _outputs(out: str, err: str, folder: Path) -> dict[str, str]:
    return {"stdout": out, "stderr": err} | {p.name: p.read_text() for p in folder.iterdir()}


# -- escape sequences -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_hostile_ssh_banner_never_reaches_the_terminal_or_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    banner = f"SSH-2.0-Evil{ESCAPES}<script>alert(1)</script>"
    with hostile_ssh_server(banner) as port:
        config = write_config(tmp_path, [f"target=office-ssh kind=ssh host=127.0.0.1 port={port}"])
        folder = tmp_path / "reports"
        extra = ["--json"] if as_json else []
        code, out, err = run_main(
            ["diagnose", "--config", str(config), "--only", "ssh", "--report", str(folder), *extra],
            capsys,
            terminal=False,
        )
    assert code == 0, err  # an unpinned key: a warning
    outputs = _outputs(out, err, folder)
    assert "SSH-2.0-Evil" in outputs["report.md"]  # the banner is shown ...
    for name, text in outputs.items():
        for char in CONTROL:
            assert char not in text, f"{char!r} in {name}"  # ... its escapes written out
    assert "<script>" not in outputs["report.html"]
    assert "\\\\x1b[2J" in outputs["report.md"]  # the escape shown as text
    assert "\\<script>" in outputs["report.md"]  # no raw HTML for a ticket to render


def test_found_text_is_no_link_image_or_html_in_the_markdown_report() -> None:
    from netsetup.diagnose.report.markdown import render_markdown
    from netsetup.diagnose.result import CheckResult, DiagnoseReport, Outcome, Owner, Status

    banner = "SSH-2.0-x ![t](https://evil.example/t.png) [fix](https://evil.example) <img src=x>"
    outcome = Outcome.problem(Status.warn, f"banner {banner}", "call IT", Owner.it, banner=banner)
    report = DiagnoseReport(
        started=datetime(2026, 11, 27, tzinfo=UTC),
        duration_s=0.1,
        checks=(CheckResult("ssh.office", "SSH", outcome, 0.1),),
        host="pc",
        platform="Linux",
        config="wg.conf",
        profile_id="acme",
        company="Acme <b>Dental</b>",
    )
    text = render_markdown(report)
    for active in ("<", "]("):  # each one found in the text is escaped: no HTML, link or image
        assert not re.search(r"(?<!\\)" + re.escape(active), text), active
    assert "\\<img src=x>" in text and "Acme \\<b>Dental\\</b>" in text  # shown as itself
    assert "![t]\\(https://evil.example/t.png)" in text


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("target=../../etc kind=tcp host=127.0.0.1 port=9", "target name '../../etc'"),
        ("target=x<b> kind=tcp host=127.0.0.1 port=9", "target name 'x<b>'"),
        ("target=ssh kind=ssh host=127.0.0.1 host-key=<i>", "host_key '<i>'"),
        ("target=ssh kind=ssh port=22", "no host="),
    ],
)
def test_a_target_line_is_held_to_the_profile_rules(tmp_path: Path, line: str, words: str) -> None:
    parsed = ClientConfig.read(write_config(tmp_path, [line]))
    assert parsed.info.targets == ()
    ((number, what),) = parsed.info.problems
    assert number == 2 and words in what, what


def test_a_check_id_is_shown_escaped_whatever_made_it() -> None:
    from netsetup.diagnose.privacy import Redactor
    from netsetup.diagnose.result import CheckResult, Outcome

    shown = Redactor().result(CheckResult(f"reach.x{ESCAPES}", "t", Outcome.passed("s"), 0.1))
    assert not any(char in shown.id for char in CONTROL)


# -- finding the config ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_a_config_does_not_hang_the_search(tmp_path: Path) -> None:
    fifo = tmp_path / "evil.conf"
    os.mkfifo(fifo)
    real = write_config(tmp_path, [])
    found: list[list[Path]] = []
    thread = threading.Thread(target=lambda: found.append(candidate_configs([tmp_path])))
    thread.daemon = True
    thread.start()
    thread.join(5)
    if thread.is_alive():  # release the reader blocked in open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("candidate_configs blocked on a FIFO")
    assert found == [[real]]


def test_a_config_whose_address_is_not_one_is_no_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [], address="nonsense")
    code, _, err = run_main(
        ["diagnose", "--config", str(config), "--only", "interfaces"], capsys, terminal=False
    )
    assert code in (0, 1) and "internal error" not in err, err
    with pytest.raises(InputError):  # discovery passes it over
        find_active_config([tmp_path])


def test_no_active_tunnel_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        find_active_config([tmp_path / "Downloads", tmp_path])
    assert str(tmp_path / "Downloads") in str(caught.value)


# -- the report folder ----------------------------------------------------------------------------


@pytest.fixture
def quiet_config(tmp_path: Path) -> Iterator[Path]:
    yield write_config(tmp_path, [])


def _report(config: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = ["diagnose", "--config", str(config), "--only", "interfaces", "--report", str(folder)]
    code, _, err = run_main(argv, capsys, terminal=False)
    return code, err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_reports_are_for_their_owner_only(
    quiet_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new"
    code, err = _report(quiet_config, folder, capsys)
    assert code in (0, 1), err
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    _report(quiet_config, shared, capsys)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # a folder that was there keeps its mode


def test_a_symlink_named_like_a_report_is_replaced_not_written_through(
    quiet_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "report.html").symlink_to(victim)
    code, err = _report(quiet_config, folder, capsys)
    assert code in (0, 1), err
    assert victim.read_text() == "keep me\n"
    assert not (folder / "report.html").is_symlink()


def test_a_report_that_cannot_be_written_names_it(
    quiet_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "reports"
    (folder / "report.html").mkdir(parents=True)
    code, err = _report(quiet_config, folder, capsys)
    assert code == 4, err
    assert str(folder / "report.html") in err and ".tmp" not in err, err


# -- what the help and the README promise --------------------------------------------------------


def test_help_and_readme_name_every_exit_status_diagnose_can_end_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(["diagnose", "--help"], capsys)
    assert code == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Diagnose") :]
    for status in ("0 nothing failed", "1 a check failed", "2 bad input", "4 ", "70 ", "130 "):
        assert status in " ".join(out.split()), status
        assert status in " ".join(section.split()), status


def test_the_witness_unit_does_not_hide_an_editable_install_under_root_or_home() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    unit = readme[readme.index("[Service]") : readme.index("[Install]")]
    assert "ProtectHome=yes" not in unit and "ProtectHome=read-only" in unit
