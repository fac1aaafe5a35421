"""The admin's state directory: preshared keys, client configs, the gateway key and the audit log.

Layout (everything 0700 / 0600):
    $NETSETUP_STATE_DIR (default $XDG_STATE_HOME/netsetup, else ~/.local/state/netsetup)
        audit.jsonl                         one JSON line per change, never a secret
        <profile-id>/psk/<peer>.<key-tag>.psk the preshared key the gateway needs
        <profile-id>/clients/<peer>/        default output folder of a client config and QR code
        <profile-id>/gateway/private.key    optional: lets `render --out` write a complete config
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from netsetup.errors import InputError
from netsetup.fsutil import SECRET_DIR_MODE, append_line, ensure_dir, private_dir, write_secret
from netsetup.keys import SecretKey, fingerprint
from netsetup.profile.values import format_time


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


class StateDir:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_state_root()

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"

    def _secret_dir(self, *parts: str) -> Path:
        private_dir(self.root)  # created 0700, or an existing one that is already private
        path = self.root.joinpath(*parts)
        for parent in reversed([path, *path.parents]):
            if self.root in parent.parents:  # our own folders below the root: forced 0700
                ensure_dir(parent, SECRET_DIR_MODE)
        return path

    # -- preshared keys --------------------------------------------------------------------
    # A preshared key file is named after the peer and the public key it belongs to, so a
    # rotation interrupted before its peer file is written leaves the old pair matching.
    def psk_path(self, profile_id: str, peer: str, public_key: str) -> Path:
        tag = fingerprint(public_key).removeprefix("SHA256:")
        return self.root / profile_id / "psk" / f"{peer}.{tag}.psk"

    def save_psk(self, profile_id: str, peer: str, public_key: str, psk: SecretKey) -> None:
        self._secret_dir(profile_id, "psk")
        write_secret(self.psk_path(profile_id, peer, public_key), psk.reveal() + "\n")

    def load_psk(self, profile_id: str, peer: str, public_key: str) -> SecretKey | None:
        path = self.psk_path(profile_id, peer, public_key)
        try:
            return SecretKey(path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            raise InputError(
                f"the stored preshared key of {peer!r} is damaged", where=str(path)
            ) from None

    def delete_psk(self, profile_id: str, peer: str, *, keep: str | None = None) -> None:
        """Remove the peer's preshared keys, except the one of public key `keep`."""
        folder = self.root / profile_id / "psk"
        kept = self.psk_path(profile_id, peer, keep).name if keep else None
        try:
            names = os.listdir(folder)
        except OSError:
            return  # as glob did: nothing there it can see (missing, or a file in the way)
        prefix = f"{peer}."
        for name in names:
            # <peer>.<key-tag>.psk, matched without compiling a glob pattern for every peer name
            ours = name.startswith(prefix) and name.endswith(".psk") and name.count(".") == 2
            if ours and name != kept:
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()

    # -- client configs --------------------------------------------------------------------
    def client_dir(self, profile_id: str, peer: str) -> Path:
        return self.root / profile_id / "clients" / peer

    def delete_client_dir(self, profile_id: str, peer: str) -> None:
        shutil.rmtree(self.client_dir(profile_id, peer), ignore_errors=True)

    # -- gateway key -----------------------------------------------------------------------
    def gateway_key_path(self, profile_id: str) -> Path:
        return self.root / profile_id / "gateway" / "private.key"

    def load_gateway_key(self, profile_id: str) -> SecretKey | None:
        path = self.gateway_key_path(profile_id)
        try:
            return SecretKey(path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            raise InputError("the stored gateway key is damaged", where=str(path)) from None

    # -- audit -----------------------------------------------------------------------------
    @property
    def audit_path(self) -> Path:
        return self.root / "audit.jsonl"

    def audit(self, action: str, moment: datetime, **fields: Any) -> None:
        """Append one audit line. Callers pass only non-secret fields (names, fingerprints)."""
        private_dir(self.root)
        record = {"time": format_time(moment), "actor": current_actor(), "action": action, **fields}
        append_line(self.audit_path, json.dumps(record, sort_keys=True, default=str))
