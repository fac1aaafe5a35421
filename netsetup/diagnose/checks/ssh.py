"""The `ssh.<name>` checks: the SSH server answers with the host key the company pinned.

A paramiko transport does the key exchange only (no login, no credentials): the banner and the
server's host key, as `SHA256:<base64>` the way `ssh-keygen -l` prints it. A key that differs
from the pinned one fails with owner IT and the words "do not log in" (a reinstalled server, or
someone in between). Without a pin the fingerprint is shown as a warning, for IT to confirm.

A server with several host keys shows one per key type; when the first one does not match the
pin, the other common types are asked for too (within the check's time) before calling it changed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from netsetup.diagnose.checks.dns import ask_it
from netsetup.diagnose.checks.reach import Unreachable, connect, needs_for, shown
from netsetup.diagnose.context import CheckContext, DiagnoseContext
from netsetup.diagnose.engine import Check, register_family
from netsetup.diagnose.result import Outcome, Owner, Status
from netsetup.profile.model import Target

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")
MIN_TRY_S = 0.3  # time an extra key exchange needs at least (on a LAN: ~20 ms)


def fingerprint(key_blob: bytes) -> str:
    """`SHA256:...` of a public key blob, as OpenSSH prints it (base64 without padding)."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class HostKey:
    banner: str
    key_type: str
    fingerprint: str
    address: str
    connect_ms: float


class NotSsh(Exception):
    """Something answered, but the key exchange did not happen (with the reason)."""


def exchange(ctx: CheckContext, target: Target, key_type: str | None = None) -> HostKey:
    """One key exchange with the target (only `key_type` offered when given); no login."""
    import logging

    import paramiko

    # paramiko logs a failed exchange at ERROR; the outcome says it, not a line on stderr
    logging.getLogger("paramiko").addHandler(logging.NullHandler())

    c = connect(ctx, target, f"SSH server {target.name}")
    transport = paramiko.Transport(c.sock)
    try:
        transport.banner_timeout = ctx.time_left()
        if key_type is not None:
            transport.get_security_options().key_types = (key_type,)
        try:
            transport.start_client(timeout=ctx.time_left())
            # start_client returns at its timeout without a key: this raises then
            key = transport.get_remote_server_key()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NotSsh(str(exc) or type(exc).__name__) from None
        banner = transport.remote_version or ""
        return HostKey(banner, key.get_name(), fingerprint(key.asbytes()), c.address, c.connect_ms)
    finally:
        transport.close()
        c.sock.close()


def _other_keys(ctx: CheckContext, target: Target, first: HostKey) -> list[HostKey]:
    """The server's keys of the other common types (those it has), while time allows."""
    found: list[HostKey] = []
    for key_type in KEY_TYPES:
        if key_type == first.key_type or ctx.time_left() < MIN_TRY_S:
            continue
        try:
            found.append(exchange(ctx, target, key_type))
        except (NotSsh, Unreachable):
            continue  # the server has no key of this type
    return found


class SshCheck(Check):
    budget_s = 4.0

    def __init__(self, target: Target, needs: tuple[str, ...]) -> None:
        self.target = target
        self.id = f"ssh.{target.name}"
        self.title = f"SSH server {target.name} ({shown(target)}) shows the expected host key"
        self.needs = needs

    def run(self, ctx: CheckContext) -> Outcome:
        try:
            first = exchange(ctx, self.target)
        except Unreachable as exc:
            return exc.outcome
        except NotSsh as exc:
            return Outcome.problem(
                Status.fail,
                f"something answers on {shown(self.target)} but it is not an SSH server ({exc})",
                f"{ask_it(ctx)} to check the SSH server {self.target.name} on {shown(self.target)}",
                Owner.it,
            )
        pinned = self.target.host_key
        if pinned is None:
            return self._unpinned(ctx, first)
        if first.fingerprint == pinned:
            return self._matches(first)
        for other in _other_keys(ctx, self.target, first):
            if other.fingerprint == pinned:
                return self._matches(other)
        return self._changed(ctx, first, pinned)

    def _metrics(self, key: HostKey) -> dict[str, str | float]:
        return {
            "banner": key.banner,
            "key_type": key.key_type,
            "fingerprint": key.fingerprint,
            "address": key.address,
            "connect_ms": round(key.connect_ms, 1),
        }

    def _matches(self, key: HostKey) -> Outcome:
        return Outcome.passed(
            f"the SSH server {self.target.name} ({shown(self.target)}) shows the pinned host key "
            f"({key.key_type} {key.fingerprint})",
            **self._metrics(key),
        )

    def _unpinned(self, ctx: CheckContext, key: HostKey) -> Outcome:
        return Outcome.problem(
            Status.warn,
            f"the SSH server {self.target.name} ({shown(self.target)}) answers; its host key "
            f"is not pinned in the profile: {key.key_type} {key.fingerprint}",
            f"{ask_it(ctx)} to confirm the fingerprint {key.fingerprint} and pin it "
            f'(host_key = "{key.fingerprint}" on the target {self.target.name})',
            Owner.it,
            **self._metrics(key),
        )

    def _changed(self, ctx: CheckContext, key: HostKey, pinned: str) -> Outcome:
        return Outcome.problem(
            Status.fail,
            f"the SSH server {self.target.name} ({shown(self.target)}) shows a different host "
            f"key than the company pinned: do not log in (pinned {pinned}, now {key.fingerprint})",
            f"do not log in to {shown(self.target)}; call IT ({ctx.info.contact or 'the company'})"
            f" and read them both fingerprints: pinned {pinned}, now {key.fingerprint} "
            "(a reinstalled server, or someone in between)",
            Owner.it,
            pinned=pinned,
            **self._metrics(key),
        )


@register_family("ssh")
def checks(ctx: DiagnoseContext) -> Iterable[Check]:
    return [SshCheck(t, needs_for(ctx, t)) for t in ctx.info.targets if t.kind == "ssh"]
