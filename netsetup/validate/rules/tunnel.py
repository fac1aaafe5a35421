"""NS110-NS111: tunnel settings that decide whether the connection holds up from a home line."""

from __future__ import annotations

from netsetup.validate.context import Context, ProfileEntry
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, profile_check

MTU = define(
    "NS110",
    "mtu-out-of-range",
    Severity.WARNING,
    "network.mtu is outside 1280-1420. Below 1280 with an IPv6 tunnel subnet it is an error.",
    "Above 1420 WireGuard packets no longer fit a 1500-byte line (even less over PPPoE or "
    "DS-Lite): large transfers stall while small ones work. IPv6 needs at least 1280, so below "
    "that the interface gets no IPv6 at all; and below 1280 VoIP and file transfers waste "
    "bandwidth.",
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    mtu = 1500
    """,
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    mtu = 1380
    """,
)
KEEPALIVE = define(
    "NS111",
    "keepalive-missing",
    Severity.WARNING,
    "network.keepalive is not written, is 0 (off), or is above 60 seconds.",
    "Assistants sit behind a home router's NAT, which forgets an idle UDP mapping after 30-120 "
    "seconds: without a keepalive of at most 60 s the gateway can no longer reach the assistant "
    "(incoming calls do not ring) until they send something.",
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    keepalive = 120
    """,
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    keepalive = 25
    """,
)


@profile_check
def check_tunnel(entry: ProfileEntry, ctx: Context) -> None:
    if entry.profile is None or entry.data is None:
        return
    network = entry.profile.network
    mtu = network.mtu
    if mtu < 1280 and network.tunnel_v6 is not None:
        ctx.report(
            entry.file,
            ("network", "mtu"),
            MTU.code,
            f"network.mtu {mtu} is below 1280, the minimum for IPv6, and the profile has tunnel_v6",
            Severity.ERROR,
        )
    elif not 1280 <= mtu <= 1420:
        ctx.report(
            entry.file,
            ("network", "mtu"),
            MTU.code,
            f"network.mtu {mtu} is outside 1280-1420"
            + ("; larger packets will not fit a 1500-byte line" if mtu > 1420 else ""),
        )
    raw = entry.data.get("network")
    if not isinstance(raw, dict) or "keepalive" not in raw:
        ctx.report(
            entry.file,
            ("network",),
            KEEPALIVE.code,
            "network.keepalive is not set; assistants behind NAT need one of at most 60 s "
            "(25 is usual)",
        )
    elif network.keepalive == 0:
        ctx.report(
            entry.file,
            ("network", "keepalive"),
            KEEPALIVE.code,
            "network.keepalive is 0 (off); assistants behind NAT need one of at most 60 s",
        )
    elif network.keepalive > 60:
        ctx.report(
            entry.file,
            ("network", "keepalive"),
            KEEPALIVE.code,
            f"network.keepalive {network.keepalive} s is above 60 s; home NATs forget idle "
            "mappings sooner (25 is usual)",
        )
