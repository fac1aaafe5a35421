"""The reports of a real diagnose run in the lab: written by `netsetup lab diagnose --report`,
the HTML opened in headless Chromium at a phone's size, and no key of the lab (the gateway's
private key, the assistants' private keys, the preshared keys, and the public keys too) and no
public address of the lab's internet in any of them."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netsetup.lab import Lab

from .conftest import REPO, require_lab

pytestmark = pytest.mark.lab

KEY = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=")
PHONE = (412, 915)


def lab_keys(lab: Lab) -> set[str]:
    """Every key the lab holds: in its state folder (client configs, preshared keys, the
    gateway's key) and its run folder (the gateway's key and config)."""
    found: set[str] = set()
    for root in (lab.state_dir, lab.run_dir):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 1 << 20:
                found |= set(KEY.findall(path.read_text(errors="replace")))
    return found


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the image data): a blank page is one colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels))


def screenshot(page: Path, out: Path, profile_dir: Path) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        require_lab(["chromium"])  # skips, or fails under NETSETUP_REQUIRE_LAB=1
        raise AssertionError("unreachable")
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile_dir}",
            f"--screenshot={out}",
            f"--window-size={PHONE[0]},{PHONE[1]}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def report_folder(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where the reports go: under the test's folder as root; for an unprivileged user a folder
    of theirs (the test's folder is root's alone)."""
    user = request.param
    if user is None:
        yield tmp_path / "report"
        return
    import pwd

    from netsetup.lab.diagnose import run_diagnose

    if "user" not in inspect.signature(run_diagnose).parameters:
        pytest.skip("run_diagnose cannot run as another user in this tree")
    folder = Path(tempfile.mkdtemp(prefix="netsetup-report-"))
    account = pwd.getpwnam(user)
    os.chown(folder, account.pw_uid, account.pw_gid)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("user", "report_folder"), [(None, None), ("nobody", "nobody")], indirect=["report_folder"]
)
def test_lab_diagnose_report_opens_in_chromium_and_holds_no_secret(
    lab: Lab, connect: Callable[..., str], tmp_path: Path, user: str | None, report_folder: Path
) -> None:
    connect("maria")
    folder = report_folder
    # as root, a relative --report: `lab diagnose` makes it absolute (the run starts elsewhere)
    shown = "report" if user is None else str(folder)
    argv = ["lab", "diagnose", "--lab", lab.prefix, "--report", shown]
    argv += ["--user", user] if user else []
    ran = subprocess.run(
        [sys.executable, "-m", "netsetup", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,  # the first unprivileged run builds its venv
        check=False,
    )
    assert (folder / "report.json").is_file(), (ran.stdout, ran.stderr[-2000:])
    reports = {name: (folder / name).read_text() for name in ("report.md", "report.html")}
    reports["report.json"] = (folder / "report.json").read_text()
    envelope = json.loads(reports["report.json"])
    assert ran.returncode == (1 if envelope["verdict"] == "fail" else 0), ran.stderr
    assert str(folder / "report.html") in ran.stdout

    # when and where
    assert envelope["config"] and envelope["config"] in reports["report.md"]
    assert envelope["started"] in reports["report.md"]
    assert envelope["started"] in reports["report.html"]
    assert envelope["host"] in reports["report.html"]

    # no key of the lab, no public address of its internet
    keys = lab_keys(lab)
    assert len(keys) >= 4, "the lab's keys were not found: the search would prove nothing"
    public = {str(lab.plan.router_wan.v4.ip), str(lab.plan.gateway_wan.v4.ip)}
    outputs = {**reports, "stdout": ran.stdout, "stderr": ran.stderr}
    for name, text in outputs.items():
        leaked = [k for k in keys if k in text]
        assert not leaked, f"{len(leaked)} lab key(s) in {name}"
        assert not [a for a in public if a in text], f"a public address in {name}"

    # the page, at a phone's size
    shot = tmp_path / "report.png"
    taken = screenshot(folder / "report.html", shot, tmp_path / "chromium")
    assert taken.returncode == 0, taken.stderr[-2000:]
    width, height, colours = png_facts(shot)
    assert (width, height) == PHONE
    assert shot.stat().st_size > 10_000 and colours > 20, "the screenshot looks blank"
