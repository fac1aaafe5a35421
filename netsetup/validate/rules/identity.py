"""NS101-NS102: keys within one profile. A WireGuard peer *is* its public key on the gateway."""

from __future__ import annotations

from netsetup.validate.context import Context, PeerEntry, ProfileEntry, site_tables
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, profile_check

DUPLICATE_KEY = define(
    "NS101",
    "duplicate-public-key",
    Severity.ERROR,
    "Two peer files of one profile carry the same public key.",
    "The gateway knows a peer only by its key: two assistants with one key are one peer, so the "
    "second configuration replaces the first and one of them loses access (or both share an "
    "address and see each other's traffic). Revoking one revokes both.",
    """
    # peers/alice.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    # peers/bob.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    """,
    """
    # peers/alice.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    # peers/bob.toml  (rotated: `netsetup rotate bob`)
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    """,
)
PEER_IS_GATEWAY = define(
    "NS102",
    "peer-key-is-gateway-key",
    Severity.ERROR,
    "A peer's public key is the gateway's own public key.",
    "WireGuard refuses a peer with the interface's own key, so the gateway configuration fails to "
    "apply; it also means the gateway's private key was handed to an assistant.",
    """
    # profile.toml: [gateway] public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    # peers/alice.toml
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    """,
    """
    # peers/alice.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    """,
)


@profile_check
def check_peer_keys(entry: ProfileEntry, ctx: Context) -> None:
    # every gateway's key: with several sites, one site's key on a peer is as wrong
    gateway_keys = (
        {site.public_key: path for site, path in site_tables(entry.profile)}
        if entry.profile
        else {}
    )
    first: dict[str, PeerEntry] = {}
    for peer_entry, peer in entry.valid_peers():
        key = peer.public_key
        if key in gateway_keys:
            ctx.report(
                peer_entry.file,
                ("public_key",),
                PEER_IS_GATEWAY.code,
                f"peer {peer_entry.name!r} has the gateway's own public key "
                f"({ctx.where(entry.file, (*gateway_keys[key], 'public_key'))}); "
                "give the peer its own key pair",
            )
            continue
        other = first.setdefault(key, peer_entry)
        if other is not peer_entry:
            ctx.report(
                peer_entry.file,
                ("public_key",),
                DUPLICATE_KEY.code,
                f"peer {peer_entry.name!r} has the same public key as peer {other.name!r} "
                f"({ctx.where(other.file, ('public_key',))}); the gateway would treat them as one "
                "peer: rotate one of them",
            )
