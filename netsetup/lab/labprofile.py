"""The lab's own copy of a profile, and the changes the lab makes to it as time or an admin would.

The copy lives under the lab's run directory with the lab's freshly generated gateway key, so
nothing under the repository's `profiles/` is touched. It is built from data: the source's
profile.toml is parsed, the [gateway] fields are set, and the result is written as TOML.
"""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

from netsetup.errors import InputError
from netsetup.fsutil import atomic_write
from netsetup.lab import tomlwrite
from netsetup.profile.model import Profile
from netsetup.profile.values import PeerName

# how far in the past `expire_peer` puts the expiry: clearly over, yet recent
EXPIRED_SINCE = timedelta(minutes=1)


def write_lab_profile(
    source: Profile, destination_root: Path, public_key: str, interface: str
) -> Path:
    """Copy `source`'s profile.toml to `<destination_root>/<id>/`, with the lab's gateway key
    and interface name in [gateway]. Peers are not copied: the lab provisions its own."""
    where = str(source.profile_file)
    try:
        data = tomllib.loads(source.profile_file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"profile.toml is not valid TOML: {exc}", where=where) from None
    gateway = data.get("gateway")
    if not isinstance(gateway, dict):
        raise InputError("the lab needs a [gateway] table in profile.toml", where=where)
    gateway.update(public_key=public_key, interface=interface)
    directory = destination_root / source.id
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / "profile.toml", tomlwrite.dumps(data), mode=0o644)
    return directory


def expire_peer(profile: Profile, name: PeerName, now: datetime) -> datetime:
    """Put a peer's expiry just before `now`, as time would; returns the new expiry."""
    from netsetup.profile.store import load_peer, write_peer

    expires = now - EXPIRED_SINCE
    write_peer(profile, dataclasses.replace(load_peer(profile, name), expires=expires))
    return expires


def host_key_fingerprint(public_key_file: Path) -> str:
    """`SHA256:...` of an OpenSSH public key file, as `ssh-keygen -lf` prints it."""
    import base64
    import hashlib

    blob = base64.b64decode(public_key_file.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pin_ssh_host_keys(profile_dir: Path, fingerprint: str) -> None:
    """Pin `fingerprint` on every `ssh` target of the lab's profile copy (the office's sshd
    serves them all), as an admin pins a server's key after checking it once."""
    path = profile_dir / "profile.toml"
    data = tomllib.loads(path.read_text())
    diagnose = data.get("diagnose")
    targets = diagnose.get("targets", []) if isinstance(diagnose, dict) else []
    for target in targets:
        if isinstance(target, dict) and target.get("kind") == "ssh":
            target["host_key"] = fingerprint
    atomic_write(path, tomlwrite.dumps(data), mode=0o644)


def pin_gateway_ssh(profile_dir: Path, *, ssh: str, host_key: str, admin_from: list[str]) -> None:
    """How the lab's admin reaches the gateway: `[gateway] ssh`, the pinned `host_key` of the
    gateway's sshd and `admin_from` (the office LAN, where the lab runs `plan` and `apply`)."""
    path = profile_dir / "profile.toml"
    data = tomllib.loads(path.read_text())
    gateway = data["gateway"]
    gateway.update(ssh=ssh, host_key=host_key, admin_from=admin_from)
    atomic_write(path, tomlwrite.dumps(data), mode=0o644)
