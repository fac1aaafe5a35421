"""The admin's state directory: preshared keys, client configs, the gateway key and the audit log.

Layout (everything 0700 / 0600):
    $NETSETUP_STATE_DIR (default $XDG_STATE_HOME/netsetup, else ~/.local/state/netsetup)
        audit.jsonl                         one JSON line per change, never a secret
        <profile-id>/psk/<peer>.<key-tag>.psk the preshared key the gateway needs
        <profile-id>/clients/<peer>/        default output folder of a client config and QR code
        <profile-id>/gateway/private.key    optional: lets `render --out` write a complete config
        <profile-id>/pending/<peer>.json    a change in flight (see netsetup.provision.journal)
        <profile-id>/responder/token        the office responder's token (32 random bytes,
                                            base64): every peer's responder key derives from it

Every path builder takes a checked `ProfileId` and `PeerName` (never a plain str), so a name that
could climb out of its folder (`../x`) cannot reach one; mypy finds a caller that skips the check.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from netsetup.errors import InputError
from netsetup.fsutil import (
    SECRET_DIR_MODE,
    append_line,
    ensure_dir,
    private_dir,
    remove_file,
    remove_tree,
    write_secret,
)
from netsetup.keys import SecretKey, fingerprint
from netsetup.profile.values import PeerName, ProfileId, format_time

AUDIT_TAIL_BYTES = 1 << 20  # how far back a recovered change looks for its own audit line


def default_state_root() -> Path:
    if os.environ.get("NETSETUP_STATE_DIR"):
        return Path(os.environ["NETSETUP_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "netsetup"


def current_actor() -> str:
    actor = os.environ.get("NETSETUP_ACTOR")
    if actor:
        return actor
    # os and pwd, not getpass and socket: those imports cost milliseconds on every provision
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


TOKEN_FILE_BYTES = 4096  # a token file is 45 bytes; anything far larger is not one


def load_token_file(path: Path) -> SecretKey | None:
    """A responder token file's token; None when there is no such file. A file that is not a
    small regular file holding one token is an InputError naming it (never its contents)."""
    from netsetup.validate.reading import Unreadable, read_regular

    if not os.path.lexists(path):
        return None
    try:
        return SecretKey(read_regular(path, TOKEN_FILE_BYTES).decode("ascii").strip())
    except Unreadable as exc:
        raise InputError(f"cannot read the responder token: {exc}", where=str(path)) from None
    except ValueError:  # UnicodeDecodeError too
        raise InputError("the responder token file holds no token", where=str(path)) from None


def _load_stored_secret(path: Path, what: str) -> SecretKey | None:
    """A key-shaped secret netsetup stored at `path` (None: none yet). A symbolic link, a FIFO,
    a device or a file far larger than a key is refused (an InputError naming the file, never
    its contents): it is not what netsetup wrote, and /dev/zero would fill the memory. (Its own
    small reader: provision must not load netsetup.validate.)"""
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symbolic link
        reason = "a symbolic link, not a file" if path.is_symlink() else exc.strerror
        raise InputError(f"cannot read the stored {what}: {reason}", where=str(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > TOKEN_FILE_BYTES:
            why = "not a regular file" if not stat.S_ISREG(info.st_mode) else "far too large"
            raise InputError(f"cannot read the stored {what}: {why}", where=str(path))
        data = os.read(fd, TOKEN_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        if len(data) > TOKEN_FILE_BYTES:
            raise ValueError("grew")
        return SecretKey(data.decode("ascii").strip())
    except ValueError:  # UnicodeDecodeError too
        raise InputError(f"the stored {what} is damaged", where=str(path)) from None


class StateDir:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_state_root()

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"

    def _secret_dir(self, profile_id: ProfileId, *parts: str) -> Path:
        """The folder root/<profile>/<parts...>, created 0700 down from the root."""
        private_dir(self.root)  # created 0700, or an existing one that is already private
        path = self.root.joinpath(ProfileId(profile_id), *parts)
        for parent in reversed([path, *path.parents]):
            if self.root in parent.parents:  # our own folders below the root: forced 0700
                if parent.is_symlink():  # else the secrets and the chmod go where it points
                    raise InputError(
                        "a link in the state folder, where netsetup keeps secrets in its own "
                        "private folders; remove the link",
                        where=str(parent),
                    )
                ensure_dir(parent, SECRET_DIR_MODE)
        return path

    # -- preshared keys --------------------------------------------------------------------
    # A preshared key file is named after the peer and the public key it belongs to, so a
    # rotation interrupted before its peer file is written leaves the old pair matching.
    def psk_dir(self, profile_id: ProfileId) -> Path:
        return self.root / ProfileId(profile_id) / "psk"

    def psk_path(self, profile_id: ProfileId, peer: PeerName, public_key: str) -> Path:
        tag = fingerprint(public_key).removeprefix("SHA256:")
        return self.psk_dir(profile_id) / f"{PeerName(peer)}.{tag}.psk"

    def save_psk(
        self, profile_id: ProfileId, peer: PeerName, public_key: str, psk: SecretKey
    ) -> Path:
        self._secret_dir(profile_id, "psk")
        path = self.psk_path(profile_id, peer, public_key)
        write_secret(path, psk.reveal() + "\n")
        return path

    def load_psk(self, profile_id: ProfileId, peer: PeerName, public_key: str) -> SecretKey | None:
        path = self.psk_path(profile_id, peer, public_key)
        try:
            return SecretKey(path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            raise InputError(
                f"the stored preshared key of {peer!r} is damaged", where=str(path)
            ) from None

    def psk_files(self, profile_id: ProfileId, peer: PeerName) -> list[Path]:
        """Every preshared key file of the peer, whatever public key it belongs to."""
        folder = self.psk_dir(profile_id)
        prefix = f"{PeerName(peer)}."
        try:
            names = os.listdir(folder)
        except OSError:
            return []  # as glob did: nothing there it can see (missing, or a file in the way)
        # peer names hold no '.', so `<peer>.<tag>.psk` never matches another peer's file;
        # matched by hand, not by a glob pattern compiled anew for every peer name
        ours = (
            n for n in names if n.startswith(prefix) and n.endswith(".psk") and n.count(".") == 2
        )
        return sorted(folder / name for name in ours)

    def delete_psk(self, profile_id: ProfileId, peer: PeerName, *, keep: str | None = None) -> None:
        """Remove the peer's preshared keys, except the one of public key `keep`."""
        kept = self.psk_path(profile_id, peer, keep) if keep else None
        for path in self.psk_files(profile_id, peer):
            if path != kept:
                remove_file(path)

    # -- client configs --------------------------------------------------------------------
    def client_dir(self, profile_id: ProfileId, peer: PeerName) -> Path:
        return self.root / ProfileId(profile_id) / "clients" / PeerName(peer)

    def make_client_dir(self, profile_id: ProfileId, peer: PeerName) -> Path:
        return self._secret_dir(profile_id, "clients", PeerName(peer))

    def delete_client_dir(self, profile_id: ProfileId, peer: PeerName) -> None:
        remove_tree(self.client_dir(profile_id, peer))

    # -- changes in flight -----------------------------------------------------------------
    def journal_dir(self, profile_id: ProfileId) -> Path:
        return self.root / ProfileId(profile_id) / "pending"

    def journal_path(self, profile_id: ProfileId, peer: PeerName) -> Path:
        return self.journal_dir(profile_id) / f"{PeerName(peer)}.json"

    def make_journal_dir(self, profile_id: ProfileId) -> Path:
        return self._secret_dir(profile_id, "pending")

    # -- gateway key -----------------------------------------------------------------------
    def gateway_key_path(self, profile_id: ProfileId) -> Path:
        return self.root / ProfileId(profile_id) / "gateway" / "private.key"

    def load_gateway_key(self, profile_id: ProfileId) -> SecretKey | None:
        return _load_stored_secret(self.gateway_key_path(profile_id), "gateway key")

    def save_gateway_key(self, profile_id: ProfileId, key: SecretKey) -> Path:
        """Store the gateway's private key (0600 in 0700 folders), replacing any before: `init`
        makes it, `import` takes it from a gateway's config, `apply` renders with it."""
        self._secret_dir(profile_id, "gateway")
        path = self.gateway_key_path(profile_id)
        write_secret(path, key.reveal() + "\n")
        return path

    # -- office responder token -----------------------------------------------------------
    # One per profile. Each peer's responder key is derived from it and the peer's public key
    # (`netsetup.responder.office_wire.peer_key`), so the office responder needs only the token
    # and the active peers' files. Key-shaped (base64 of 32 bytes): SecretKey keeps it unshown.
    def responder_token_path(self, profile_id: ProfileId) -> Path:
        return self.root / ProfileId(profile_id) / "responder" / "token"

    def load_responder_token(self, profile_id: ProfileId) -> SecretKey | None:
        return _load_stored_secret(self.responder_token_path(profile_id), "responder token")

    def responder_token(self, profile_id: ProfileId) -> SecretKey:
        """The profile's token, made (0600 in a 0700 folder) the first time it is needed. The
        caller holds the profile lock, so two provisions never make two tokens."""
        token = self.load_responder_token(profile_id)
        if token is None:
            import base64

            self._secret_dir(profile_id, "responder")
            token = SecretKey(base64.b64encode(os.urandom(32)).decode("ascii"))
            write_secret(self.responder_token_path(profile_id), token.reveal() + "\n")
        return token

    # -- audit -----------------------------------------------------------------------------
    @property
    def audit_path(self) -> Path:
        return self.root / "audit.jsonl"

    @staticmethod
    def audit_line(
        action: str, moment: datetime, *, profile: ProfileId, peer: PeerName, **fields: Any
    ) -> str:
        """The audit line of one change. Names come only as checked `ProfileId`/`PeerName`
        (checked again here: the log never receives an unvalidated name); the other fields are
        never secret (fingerprints, addresses, times)."""
        record = {
            "time": format_time(moment),
            "actor": current_actor(),
            "action": action,
            "profile": ProfileId(profile),
            "peer": PeerName(peer),
            **fields,
        }
        return json.dumps(record, sort_keys=True, default=str)

    def append_audit(self, line: str) -> None:
        private_dir(self.root)
        append_line(self.audit_path, line)

    def audit_has(self, line: str) -> bool:
        """True when `line` is among the recent audit lines (a recovered change logs once)."""
        try:
            with self.audit_path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - AUDIT_TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return False
        return line in tail.splitlines()

    def audit(
        self, action: str, moment: datetime, *, profile: ProfileId, peer: PeerName, **fields: Any
    ) -> None:
        """Append one audit line (see `audit_line`)."""
        self.append_audit(self.audit_line(action, moment, profile=profile, peer=peer, **fields))
