"""NS116-NS118: the gateways of a profile (`[gateway]`, or several `[[gateway]]` sites) and how
netsetup reaches them over SSH."""

from __future__ import annotations

from netsetup.profile import schema as s
from netsetup.validate.context import Context, ProfileEntry, site_tables
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, profile_check

UNKNOWN_SITE = define(
    "NS116",
    "peer-unknown-gateway",
    Severity.ERROR,
    'A peer file names a gateway (`gateway = "..."`) that is not one of the profile\'s '
    "`[[gateway]]` sites.",
    "No gateway renders that peer: the assistant's tunnel never comes up, and `provision`, "
    "`render` and `apply` refuse the peer until its file names a site that exists.",
    """
    # profile.toml: [[gateway]] name = "main" and [[gateway]] name = "branch"
    # peers/alice.toml
    gateway = "brnach"
    """,
    """
    # peers/alice.toml
    gateway = "branch"
    """,
)
SITE_OVERLAP = define(
    s.SITE_OVERLAP,
    "site-subnets-overlap",
    Severity.ERROR,
    "The tunnel subnets of two `[[gateway]]` sites of one profile overlap (a first site without "
    "subnets of its own uses `[network]`'s).",
    "An address in both would belong to two gateways: a peer of one site could be given an "
    "address the other site routes to one of its own peers, and an assistant with both tunnels "
    "up would send one company's traffic to the wrong site.",
    """
    [[gateway]]
    name = "main"          # uses [network] tunnel_v4 = "198.18.10.0/24"
    [[gateway]]
    name = "branch"
    tunnel_v4 = "198.18.10.128/25"
    """,
    """
    [[gateway]]
    name = "branch"
    tunnel_v4 = "198.18.11.0/24"
    """,
)
NO_HOST_KEY = define(
    "NS118",
    "ssh-without-host-key",
    Severity.WARNING,
    "A gateway has `ssh` (how plan, apply and bootstrap log in) but no pinned `host_key`.",
    "netsetup only talks to a gateway whose SSH host key matches the pinned one, so every command "
    "over SSH refuses it until the key is pinned; pin it once, after checking the fingerprint, "
    "with `netsetup gateway trust PROFILE` (a key taken on first use could be an attacker's).",
    """
    [gateway]
    ssh = "admin@gw.acme.example:22"
    """,
    """
    [gateway]
    ssh = "admin@gw.acme.example:22"
    host_key = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
    """,
)


@profile_check
def check_sites(entry: ProfileEntry, ctx: Context) -> None:
    profile = entry.profile
    if profile is None:
        return
    for site, path in site_tables(profile):
        if site.ssh is not None and site.host_key is None:
            ctx.report(
                entry.file,
                (*path, "ssh"),
                NO_HOST_KEY.code,
                f"gateway {site.name!r} has ssh = {str(site.ssh)!r} but no host_key: commands "
                f"over SSH refuse an unpinned gateway; run `netsetup gateway trust {profile.id}`",
            )
    names = {site.name for site in profile.gateways}
    for peer_entry, peer in entry.valid_peers():
        if peer.gateway is not None and peer.gateway not in names:
            known = ", ".join(repr(name) for name in sorted(names))
            ctx.report(
                peer_entry.file,
                ("gateway",),
                UNKNOWN_SITE.code,
                f"peer {peer_entry.name!r} names gateway {peer.gateway!r}, which the profile "
                f"does not have (its gateways: {known})",
            )
