"""`gateway bootstrap`'s parts that need no gateway: the helper it runs there (run here, as the
gateway runs it: `python3 -I -c <its text> <verb> <args>`, on files under tmp_path), the witness
zipapp, what it reads from /etc/os-release, the sudoers line and the unit. The whole bootstrap
against a real sshd, wg and nft is tests/lab/test_bootstrap.py."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from netsetup.gateway import bootstrap
from netsetup.gateway.remote import CommandResult

ME = pwd.getpwuid(os.getuid()).pw_name


def helper(*args: str, stdin: bytes = b"") -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", bootstrap.helper_program(), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    answer = json.loads(done.stdout)
    assert isinstance(answer, dict)
    assert (done.returncode == 0) == ("status" in answer), answer
    return answer


def test_put_writes_once_then_finds_it_as_wanted(tmp_path: Path) -> None:
    target = tmp_path / "60-netsetup.conf"
    assert helper("put", str(target), "640", ME, stdin=b"one\n") == {"status": "changed"}
    assert target.read_bytes() == b"one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert helper("put", str(target), "640", ME, stdin=b"one\n") == {"status": "ok"}
    assert helper("put", str(target), "600", ME, stdin=b"one\n") == {"status": "changed"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert helper("put", str(target), "600", ME, stdin=b"two\n") == {"status": "changed"}
    assert target.read_bytes() == b"two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left


def test_put_never_writes_through_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    link = tmp_path / "netsetup"
    link.symlink_to(elsewhere)
    answer = helper("put", str(link), "440", ME, stdin=b"x\n")
    assert "symbolic link" in answer["error"]
    assert elsewhere.read_text() == "keep\n"
    assert link.is_symlink()


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo (package sudo) is missing")
def test_a_sudoers_line_visudo_rejects_is_never_moved_into_place(tmp_path: Path) -> None:
    target = tmp_path / "netsetup"
    answer = helper("put", str(target), "440", ME, "--visudo", stdin=b"this is not sudoers\n")
    assert "visudo rejects" in answer["error"]
    assert list(tmp_path.iterdir()) == []
    line = bootstrap.sudoers_line("admin") + "\n"
    good = helper("put", str(target), "440", ME, "--visudo", stdin=line.encode())
    assert good == {"status": "changed"}
    assert target.read_text() == "admin ALL=(root) NOPASSWD: /usr/local/sbin/netsetup-gateway\n"


def test_dir_makes_and_then_fixes_a_folder(tmp_path: Path) -> None:
    stage = tmp_path / "stage" / "admin"
    assert helper("dir", str(stage), "700", ME) == {"status": "changed"}
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700
    assert helper("dir", str(stage), "700", ME) == {"status": "ok"}
    stage.chmod(0o755)
    assert helper("dir", str(stage), "700", ME) == {"status": "changed"}
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700


def test_line_is_added_once_and_a_missing_file_gets_the_header(tmp_path: Path) -> None:
    conf = tmp_path / "nftables.conf"
    header = bootstrap.NFT_HEADER.encode()
    line = bootstrap.NFT_INCLUDE
    assert helper("line", str(conf), "755", line, stdin=header) == {"status": "changed"}
    assert conf.read_text() == bootstrap.NFT_HEADER + line + "\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o755
    assert helper("line", str(conf), "755", line, stdin=header) == {"status": "ok"}
    conf.write_text("#!/usr/sbin/nft -f\ntable inet filter {\n}")  # no final newline
    conf.chmod(0o700)
    assert helper("line", str(conf), "755", line) == {"status": "changed"}
    assert conf.read_text().splitlines() == ["#!/usr/sbin/nft -f", "table inet filter {", "}", line]
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700  # an existing file keeps its mode


def test_an_unknown_verb_is_refused() -> None:
    assert "usage" in helper("rm", "/")["error"]


def test_the_witness_zipapp_is_the_same_bytes_each_time_and_runs(tmp_path: Path) -> None:
    first = bootstrap.witness_zipapp()
    assert first == bootstrap.witness_zipapp()
    app = tmp_path / "netsetup-witness.pyz"
    app.write_bytes(first)
    names = zipfile.ZipFile(app).namelist()
    assert "__main__.py" in names
    assert "netsetup/responder/witness.py" in names
    assert not [n for n in names if "__pycache__" in n]
    # isolated (-I) and from another folder: it uses nothing but the zipapp and the stdlib
    checked = subprocess.run(
        [sys.executable, "-I", str(app), "--check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok: python ")


@pytest.mark.parametrize(
    ("text", "name", "supported"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n', "Debian GNU/Linux 12", True),
        ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\n', "Ubuntu 24.04", True),
        ('NAME="Raspbian GNU/Linux"\nID=raspbian\nID_LIKE=debian\n', "Raspbian", True),
        ('PRETTY_NAME="Fedora Linux 40"\nID=fedora\n', "Fedora Linux 40", False),
        ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n', "Rocky Linux", False),
        ("", "an unknown system", False),
    ],
)
def test_which_systems_bootstrap_prepares(text: str, name: str, supported: bool) -> None:
    found, ok = bootstrap.describe_os(text)
    assert name in found
    assert ok is supported


def test_the_witness_unit_runs_the_zipapp_on_the_installed_profile() -> None:
    unit = bootstrap.witness_unit()
    assert (
        "ExecStart=/usr/bin/python3 -I /usr/local/lib/netsetup/netsetup-witness.pyz "
        "--profile /etc/netsetup/profiles/%i\n"
    ) in unit
    assert "WantedBy=multi-user.target" in unit


def test_the_zipapp_check_tells_a_missing_cryptography_apart(tmp_path: Path) -> None:
    """Exit 3 only for the one thing bootstrap fixes with apt (python3-cryptography)."""
    from netsetup.gateway.witness_service import NO_CRYPTOGRAPHY

    app = tmp_path / "netsetup-witness.pyz"
    app.write_bytes(bootstrap.witness_zipapp())
    without = (
        "import runpy, sys\n"
        "sys.modules['cryptography'] = None  # as if the package were not installed\n"
        "sys.argv = ['netsetup-witness', '--check']\n"
        f"runpy.run_path({str(app)!r}, run_name='__main__')\n"
    )
    checked = subprocess.run(
        [sys.executable, "-I", "-c", without], capture_output=True, text=True, check=False
    )
    assert checked.returncode == NO_CRYPTOGRAPHY, checked.stdout + checked.stderr
    assert "no module 'cryptography" in checked.stdout


class LocalSession:
    """Runs bootstrap's commands here, as the gateway would (the helper for real, on files
    under tmp_path): a stand-in for SSH only."""

    is_root = True

    def __init__(self) -> None:
        from netsetup.profile.model import SshTarget

        self.target = SshTarget(ME, "localhost", 22)

    def run(
        self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60, sudo: bool = True
    ) -> CommandResult:
        argv = [sys.executable if argv[0] == bootstrap.PYTHON else argv[0], *argv[1:]]
        done = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=timeout)
        return CommandResult(
            tuple(argv), done.returncode, done.stdout.decode(), done.stderr.decode()
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="the allow file is root's")
def test_bootstrap_lists_the_sites_interface_for_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netsetup.gateway import agent
    from netsetup.profile.store import load_profile

    allow = tmp_path / "etc" / "netsetup" / "agent.allow"
    monkeypatch.setattr(bootstrap, "ALLOW_FILE", str(allow))
    profile = load_profile(Path(__file__).parents[2] / "profiles" / "acme-dental")
    gateway = profile.gateway
    work = bootstrap.Bootstrap(LocalSession(), profile.site(gateway.name), gateway)  # type: ignore[arg-type]
    assert work.agent_allow().status == "changed"
    assert stat.S_IMODE(allow.stat().st_mode) == 0o644 and allow.stat().st_uid == 0
    assert agent.allowed_interfaces(str(allow)) == {gateway.interface}
    assert work.agent_allow().status == "ok"  # idempotent
    # another profile's interface on the same gateway stays listed; ours is added once
    allow.write_text("# mine\nwg-other\n")
    assert work.agent_allow().status == "changed"
    assert agent.allowed_interfaces(str(allow)) == {"wg-other", gateway.interface}
    assert allow.read_text().count(gateway.interface) == 1
    assert "agent_allow" in [step.__name__ for step in work.preparation()]
