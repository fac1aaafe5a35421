"""netsetup's SSH session to a gateway: paramiko, the pinned host key, key authentication only,
and the gateway agent as the only program it runs there.

The host key is checked by a `RejectPolicy` that accepts exactly the fingerprint pinned in the
profile (`[gateway] host_key`): no known_hosts file is read, so an unknown or changed key is
refused right after the key exchange, before authentication, and nothing of ours (not even the
user name) has been sent. `fetch_host_key` is the one exception, for `gateway trust`: it does the
key exchange only and never authenticates.

Every remote command is an argv list joined with `shlex.join`: no command string is ever built
from profile text without quoting. A non-root login runs the agent through `sudo -n` (the
README's sudoers line allows exactly that program).
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import secrets
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from netsetup.errors import RemoteError
from netsetup.profile.model import SshTarget

if TYPE_CHECKING:
    import paramiko

AGENT_PATH = "/usr/local/sbin/netsetup-gateway"
STAGE_ROOT = "/var/lib/netsetup/stage"
DEFAULT_TIMEOUT = 15.0
# what `sudo -n` prints when the account may not run the program without a password
_SUDO_REFUSED = ("a password is required", "may not run sudo", "is not allowed to execute")


class HostKeyRefused(RemoteError):
    """The gateway offered a host key that is not the pinned one (or none is pinned)."""


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:<base64>` of a host key, as `ssh-keygen -lf` and OpenSSH print it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _pinned_policy(target: SshTarget, pinned: str | None) -> paramiko.MissingHostKeyPolicy:
    import paramiko

    class PinnedKeyPolicy(paramiko.RejectPolicy):
        """RejectPolicy with one exception: the fingerprint pinned in the profile."""

        def missing_host_key(  # type: ignore[override]  # accepts one key: may return
            self, client: Any, hostname: str, key: paramiko.PKey
        ) -> None:
            offered = host_key_fingerprint(key)
            if pinned is not None and secrets.compare_digest(offered, pinned):
                return
            raise host_key_refused(target, pinned, offered)

    return PinnedKeyPolicy()


def host_key_refused(target: SshTarget, pinned: str | None, offered: str) -> HostKeyRefused:
    if pinned is None:
        return HostKeyRefused(
            f"no SSH host key is pinned for this gateway; it offers {offered}. Check that "
            "fingerprint on the gateway's console (ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub), then run `netsetup gateway trust PROFILE`",
            where=str(target),
        )
    return HostKeyRefused(
        "the gateway's SSH host key is not the pinned one: nothing was sent.\n"
        f"  pinned in the profile:  {pinned}\n"
        f"  offered by the gateway: {offered}\n"
        "If the gateway was reinstalled, check the new fingerprint on its console and run "
        "`netsetup gateway trust PROFILE --replace`; otherwise someone may be in the middle",
        where=str(target),
    )


@dataclass(frozen=True)
class CommandResult:
    """One remote command: its exit status and output (never holds a secret we sent)."""

    argv: tuple[str, ...]
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


def _connection_error(target: SshTarget, exc: BaseException) -> RemoteError:
    import paramiko

    if isinstance(exc, HostKeyRefused):
        return exc
    if isinstance(exc, paramiko.PasswordRequiredException):
        return RemoteError(
            "the SSH key file is protected by a passphrase: load it into ssh-agent "
            "(ssh-add FILE) and try again",
            where=str(target),
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return RemoteError(
            f"the gateway refused netsetup's SSH key for user {target.user!r} (key "
            "authentication only: give the key with --identity FILE or NETSETUP_SSH_KEY, or load "
            "it into ssh-agent)",
            where=str(target),
        )
    if isinstance(exc, socket.timeout | TimeoutError):
        return RemoteError("the gateway did not answer over SSH in time", where=str(target))
    detail = str(exc) or type(exc).__name__
    return RemoteError(f"cannot talk to the gateway over SSH: {detail}", where=str(target))


def _connect_socket(target: SshTarget, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((str(target.host), target.port), timeout=timeout)
    except OSError as exc:
        raise _connection_error(target, exc) from None


def fetch_host_key(target: SshTarget, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The fingerprint of the host key the gateway offers: the key exchange only, no login."""
    import paramiko

    sock = _connect_socket(target, timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return host_key_fingerprint(transport.get_remote_server_key())
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _connection_error(target, exc) from None
    finally:
        transport.close()
        sock.close()


class GatewaySession:
    """One SSH connection to a gateway. Use as a context manager:

    with GatewaySession(gateway.ssh, host_key=gateway.host_key, identity=key) as session:
        live = session.agent("read", "--interface", "wg0", "--table", "netsetup_wg0")
    """

    def __init__(
        self,
        target: SshTarget,
        *,
        host_key: str | None,
        identity: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.target = target
        self.host_key = host_key
        self.identity = identity
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __repr__(self) -> str:
        return f"GatewaySession({self.target})"

    # -- connection ---------------------------------------------------------------------------

    def __enter__(self) -> GatewaySession:
        self.connect()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        import paramiko

        if self.host_key is None:
            # refuse before any packet: with nothing pinned every key would be "unknown"
            offered = fetch_host_key(self.target, self.timeout)
            raise host_key_refused(self.target, None, offered)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_pinned_policy(self.target, self.host_key))
        try:
            client.connect(
                str(self.target.host),
                port=self.target.port,
                username=self.target.user,
                key_filename=str(self.identity) if self.identity else None,
                allow_agent=True,
                look_for_keys=self.identity is None,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise _connection_error(self.target, exc) from None
        self._client = client

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise RemoteError("the SSH session is not connected", where=str(self.target))
        return self._client

    @property
    def is_root(self) -> bool:
        return self.target.user == "root"

    @property
    def stage_dir(self) -> str:
        """Where this login uploads files for the agent (made by `gateway bootstrap`)."""
        return posixpath.join(STAGE_ROOT, self.target.user)

    # -- commands -----------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        sudo: bool = True,
        timeout: float = 120.0,
    ) -> CommandResult:
        """Run one program on the gateway (as root: through `sudo -n` unless we are root)."""
        import paramiko

        full = ["sudo", "-n", "--", *argv] if sudo and not self.is_root else list(argv)
        command = shlex.join(full)
        try:
            channel = self.client.get_transport().open_session(timeout=self.timeout)  # type: ignore[union-attr]
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout = _read_all(channel, stderr=False)
            stderr = _read_all(channel, stderr=True)
            status = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _connection_error(self.target, exc) from None
        return CommandResult(
            tuple(full),
            status,
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
        )

    def agent(self, verb: str, *args: str, timeout: float = 300.0) -> dict[str, Any]:
        """Run the gateway agent and return its JSON answer (also when it says `"ok": false`)."""
        result = self.run([AGENT_PATH, verb, *args], timeout=timeout)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
        raise self._agent_problem(result)

    def _agent_problem(self, result: CommandResult) -> RemoteError:
        text = (result.stderr or result.stdout).strip()
        if any(marker in text for marker in _SUDO_REFUSED):
            return RemoteError(
                f"the account {self.target.user!r} may not run the gateway agent through sudo "
                "without a password: add the sudoers line from the README "
                f"({self.target.user} ALL=(root) NOPASSWD: {AGENT_PATH})",
                where=str(self.target),
            )
        if result.status in (126, 127) or "No such file" in text or "not found" in text:
            return RemoteError(
                f"the gateway agent ({AGENT_PATH}) is not installed on this gateway: run "
                "`netsetup gateway bootstrap PROFILE` first",
                where=str(self.target),
            )
        last = text.splitlines()[-1] if text else f"exit status {result.status}"
        return RemoteError(f"the gateway agent gave no answer: {last}", where=str(self.target))

    # -- files --------------------------------------------------------------------------------

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def upload(self, data: bytes, remote_path: str, *, mode: int = 0o600) -> None:
        """Write `remote_path` by SFTP: a temporary file beside it (made with `mode` before a
        byte is written), then renamed into place, so it is never seen half-written."""
        import paramiko

        directory, name = posixpath.split(remote_path)
        temporary = posixpath.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            with self.sftp.open(temporary, "wx") as handle:
                handle.chmod(mode)
                handle.write(data)
            self.sftp.posix_rename(temporary, remote_path)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._forget(temporary)
            raise _connection_error(self.target, exc) from None

    def _forget(self, remote_path: str) -> None:
        """Remove a file if the connection still allows it (cleanup after a failure)."""
        try:
            self.sftp.remove(remote_path)
        except Exception:  # the connection may be gone: the caller reports that
            return

    def remove(self, remote_path: str) -> bool:
        """Remove one file; False when it was not there."""
        import paramiko

        try:
            self.sftp.remove(remote_path)
        except FileNotFoundError:
            return False
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _connection_error(self.target, exc) from None
        return True

    def listdir(self, remote_path: str) -> list[str]:
        import paramiko

        try:
            return sorted(self.sftp.listdir(remote_path))
        except FileNotFoundError:
            return []
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _connection_error(self.target, exc) from None


def _read_all(channel: paramiko.Channel, *, stderr: bool) -> bytes:
    chunks: list[bytes] = []
    receive = channel.recv_stderr if stderr else channel.recv
    while True:
        chunk = receive(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
