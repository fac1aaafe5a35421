"""`--key-file` as an IT admin might get it wrong: a FIFO, a device, a missing file, the wg0.conf
instead of the key. Each is refused at once with what and where; none blocks the start (a
blocked start ignores even SIGTERM) or fills the memory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from netsetup.errors import InputError
from netsetup.keys import generate_keypair
from netsetup.profile.store import load_profile
from netsetup.responder.witness import gateway_key


def _refused(acme: Path, key_file: Path) -> str:
    profile = load_profile(acme)
    caught: list[BaseException] = []

    def read() -> None:
        try:
            gateway_key(profile, key_file, None)
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        if key_file.is_fifo():  # release the reader before failing
            os.close(os.open(key_file, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"reading {key_file} did not end")
    (error,) = caught
    assert isinstance(error, InputError)
    assert str(key_file) in str(error)
    return str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_not_waited_on(acme: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "gateway.key"
    os.mkfifo(fifo)
    assert "FIFO" in _refused(acme, fifo)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null here")
def test_a_device_is_refused(acme: Path) -> None:
    # /dev/zero is the dangerous one (read to its end, it fills the memory); /dev/null stands
    # for it, so a regression cannot take the test machine down
    assert "character device" in _refused(acme, Path("/dev/null"))


def test_a_huge_file_is_refused_unread(acme: Path, tmp_path: Path) -> None:
    huge = tmp_path / "gateway.key"
    with huge.open("wb") as handle:
        handle.truncate(64 << 20)  # sparse: 64 MiB that take no room on disk
    assert "more than" in _refused(acme, huge)


def test_a_missing_file_says_so(acme: Path, tmp_path: Path) -> None:
    assert "no such file" in _refused(acme, tmp_path / "missing.key")


def test_a_config_instead_of_the_key_is_no_key(acme: Path, tmp_path: Path) -> None:
    gateway = generate_keypair()
    config = tmp_path / "wg0.conf"
    config.write_text(f"[Interface]\nPrivateKey = {gateway.private.reveal()}\nListenPort = 1\n")
    message = _refused(acme, config)
    assert "no WireGuard key" in message and gateway.private.reveal() not in message
    config.write_text(gateway.private.reveal() + "\n")
    assert gateway_key(load_profile(acme), config, None) == gateway.private


def test_the_start_warning_names_the_likely_causes_not_only_root(
    acme: Path, tmp_path: Path
) -> None:
    """Run as root on a gateway whose interface is down, "needs root" sent the admin the wrong
    way: the warning names the command that failed and both causes."""
    import signal
    import subprocess
    import sys

    from .test_serve import _profile_with, free_udp_port

    port = free_udp_port()
    profile = _profile_with(acme, port, "nswtest1")  # an interface no machine has
    key_file = tmp_path / "gateway.key"
    key_file.write_text(generate_keypair().private.reveal() + "\n")
    argv = [sys.executable, "-m", "netsetup", "responder", "--profile", str(profile)]
    argv += ["--role", "gateway", "--listen", "127.0.0.1", "--key-file", str(key_file)]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        process.stderr.readline()
        warning = process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert "`wg show nswtest1` failed" in warning and "interface up" in warning, warning
    assert "run as root" in warning
