"""The SSH session against a real OpenSSH server on 127.0.0.1: the pinned host key is the only one
accepted (refused before authentication), key authentication only, commands and SFTP uploads."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.errors import RemoteError
from netsetup.gateway import remote
from netsetup.profile.model import SshTarget

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh-keygen") and os.geteuid() == 0),
    reason="needs OpenSSH's sshd and ssh-keygen, as root (CI installs them)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _fingerprint(public_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_file)], capture_output=True, text=True)
    return out.stdout.split()[1]


class Server:
    def __init__(self, directory: Path, port: int, log: Path) -> None:
        self.directory = directory
        self.port = port
        self.log = log
        self.fingerprint = _fingerprint(directory / "host.pub")
        self.client_key = directory / "client"

    def target(self, user: str = "root") -> SshTarget:
        return SshTarget(user, "127.0.0.1", self.port)

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sshd")
    os.chmod(directory, 0o700)
    _keygen(directory / "host")
    _keygen(directory / "client")
    shutil.copy(directory / "client.pub", directory / "authorized_keys")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    port = _free_port()
    (directory / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {directory / 'host'}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "LogLevel VERBOSE",
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n"
    )
    log = directory / "sshd.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(directory / "sshd_config")],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield Server(directory, port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_fetch_host_key_is_the_servers_fingerprint(server: Server) -> None:
    assert remote.fetch_host_key(server.target()) == server.fingerprint


def test_a_different_pinned_key_is_refused_before_authentication(server: Server) -> None:
    before = len(server.logged())
    other = "SHA256:" + "A" * 43
    session = remote.GatewaySession(server.target(), host_key=other, identity=server.client_key)
    with pytest.raises(remote.HostKeyRefused) as caught:
        session.connect()
    message = str(caught.value)
    assert other in message and server.fingerprint in message  # side by side
    assert "nothing was sent" in message
    time.sleep(0.3)
    since = server.logged()[before:]
    assert "publickey" not in since and "root" not in since  # no login, not even the user name


def test_no_pinned_key_is_refused_and_names_the_offered_one(server: Server) -> None:
    session = remote.GatewaySession(server.target(), host_key=None, identity=server.client_key)
    with pytest.raises(remote.HostKeyRefused) as caught:
        session.connect()
    assert server.fingerprint in str(caught.value)
    assert "netsetup gateway trust" in str(caught.value)


def test_the_pinned_key_logs_in_and_runs_commands_as_argv(server: Server) -> None:
    with remote.GatewaySession(
        server.target(), host_key=server.fingerprint, identity=server.client_key
    ) as session:
        result = session.run(["printf", "%s|", "a b", "$(id)", ";rm -rf /"])
        assert result.ok
        # every argument arrived as one word, nothing was interpreted by the remote shell
        assert result.stdout == "a b|$(id)|;rm -rf /|"


def test_a_wrong_client_key_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    _keygen(tmp_path / "stranger")
    session = remote.GatewaySession(
        server.target(), host_key=server.fingerprint, identity=tmp_path / "stranger"
    )
    with pytest.raises(RemoteError) as caught:
        session.connect()
    assert "refused netsetup's SSH key" in str(caught.value)
    assert not isinstance(caught.value, remote.HostKeyRefused)


def test_upload_writes_with_the_mode_and_leaves_no_temporary_file(
    server: Server, tmp_path: Path
) -> None:
    target = tmp_path / "uploaded.conf"
    with remote.GatewaySession(
        server.target(), host_key=server.fingerprint, identity=server.client_key
    ) as session:
        session.upload(b"secret-ish\n", str(target), mode=0o600)
        assert target.read_bytes() == b"secret-ish\n"
        assert target.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["uploaded.conf"]
        assert session.remove(str(target)) is True
        assert session.remove(str(target)) is False


def test_a_missing_agent_says_to_bootstrap(server: Server) -> None:
    with (
        remote.GatewaySession(
            server.target(), host_key=server.fingerprint, identity=server.client_key
        ) as session,
        pytest.raises(RemoteError) as caught,
    ):
        session.agent("version")
    assert "gateway bootstrap" in str(caught.value)


def test_an_unreachable_gateway_is_a_remote_error() -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(RemoteError) as caught:
        remote.fetch_host_key(SshTarget("root", "127.0.0.1", port), timeout=3)
    assert "127.0.0.1" in str(caught.value)
