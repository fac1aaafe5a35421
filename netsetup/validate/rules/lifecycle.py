"""NS114: peers whose access should have ended."""

from __future__ import annotations

from netsetup.profile.values import format_time
from netsetup.validate.context import Context, ProfileEntry
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, profile_check

EXPIRED_ACTIVE = define(
    "NS114",
    "expired-peer-active",
    Severity.WARNING,
    'A peer file says status = "active" although its expiry date has passed.',
    "Expiry is how temporary (agency) access ends. `netsetup render` leaves expired peers out "
    "of the gateway config, but a gateway rendered before the date still lets the peer in. "
    "Re-render the gateway (`netsetup render PROFILE --out ...`), then revoke the peer "
    "(`netsetup revoke`) or renew it on purpose (`netsetup renew --expires ...`). A warning, not "
    "an error: the date passes on its own, and a profiles repository's CI must not turn red on a "
    "calendar date with no change; use --fail-on warning to make it block.",
    """
    status = "active"
    expires = 2024-01-31T00:00:00Z
    """,
    """
    status = "revoked"
    expires = 2024-01-31T00:00:00Z
    revoked = 2024-01-31T00:00:00Z
    """,
)


@profile_check
def check_expired(entry: ProfileEntry, ctx: Context) -> None:
    for peer_entry, peer in entry.valid_peers():
        if peer.status == "active" and peer.is_expired(ctx.now):
            assert peer.expires is not None
            ctx.report(
                peer_entry.file,
                ("expires",),
                EXPIRED_ACTIVE.code,
                f"peer {peer_entry.name!r} expired at {format_time(peer.expires)} but is still "
                f"active: re-render the gateway (`netsetup render {entry.id} --out ...` leaves "
                f"expired peers out), then `netsetup revoke {entry.id} {peer_entry.name}` or "
                f"`netsetup renew {entry.id} {peer_entry.name} --expires ...`",
            )
