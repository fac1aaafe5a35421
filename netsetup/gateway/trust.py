"""`netsetup gateway trust`: the explicit first contact with a gateway's SSH server.

Every other command refuses a host key that is not the one pinned in the profile. Pinning is
the one moment the admin must compare the fingerprint the gateway offers with the one its
console shows (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); `trust` fetches it without
logging in, shows it, and writes it into the gateway's table of profile.toml once confirmed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

from netsetup.errors import InputError, RemoteError
from netsetup.profile.model import Profile

TRUST_SCHEMA = "netsetup.gateway-trust/1"


@dataclass(frozen=True)
class TrustCheck:
    """The key a gateway offers, next to the one its profile pins."""

    gateway: str
    position: int  # among the profile's gateways
    target: str
    offered: str
    pinned: str | None

    @property
    def status(self) -> Literal["new", "same", "changed"]:
        if self.pinned is None:
            return "new"
        return "same" if secrets.compare_digest(self.pinned, self.offered) else "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "ssh": self.target,
            "offered": self.offered,
            "pinned": self.pinned,
            "status": self.status,
        }


def check_host_key(profile: Profile, gateway: str | None, *, timeout: float = 15.0) -> TrustCheck:
    """Fetch the host key a gateway offers (key exchange only: no login, nothing of ours sent
    but the SSH version string)."""
    from netsetup.gateway.remote import fetch_host_key

    try:
        site = profile.gateway_named(gateway)
    except KeyError:
        names = ", ".join(g.name for g in profile.gateways)
        raise InputError(
            f"no gateway {gateway!r} in the profile (it has: {names})", where="--gateway"
        ) from None
    if site.ssh is None:
        raise InputError(
            f'gateway {site.name!r} has no `ssh = "user@host:port"`: add it to its table',
            where=str(profile.profile_file),
        )
    offered = fetch_host_key(site.ssh, timeout)
    position = [g.name for g in profile.gateways].index(site.name)
    return TrustCheck(site.name, position, str(site.ssh), offered, site.host_key)


def side_by_side(check: TrustCheck) -> str:
    return f"  pinned in the profile:  {check.pinned}\n  offered by the gateway: {check.offered}"


def pin_host_key(
    profile: Profile, check: TrustCheck, *, expect: str | None = None, replace: bool = False
) -> bool:
    """Write the offered fingerprint as the gateway's `host_key`. Refuses (nothing written) a
    key that is not `expect`, and a change of a pinned key without `replace`. Returns False
    when the profile already pins it."""
    from netsetup.profile.edit import set_gateway_key

    if expect is not None and not secrets.compare_digest(expect.strip(), check.offered):
        raise RemoteError(
            "the gateway offers another host key than the one expected: nothing was written\n"
            f"  expected (--expect):    {expect.strip()}\n"
            f"  offered by the gateway: {check.offered}",
            where=check.target,
        )
    if check.status == "same":
        return False
    if check.status == "changed" and not replace:
        raise RemoteError(
            "the gateway offers another host key than the pinned one: nothing was written\n"
            f"{side_by_side(check)}\n"
            "If the gateway was reinstalled, check the new fingerprint on its console and run "
            "again with --replace; otherwise someone may be in the middle",
            where=check.target,
        )
    return set_gateway_key(profile.profile_file, check.position, "host_key", check.offered)
