"""NS202-NS204: problems that only show when profiles are looked at together."""

from __future__ import annotations

from netsetup.profile.store import ParsedFile
from netsetup.profile.tomlpos import KeyPath
from netsetup.profile.values import IPNetwork
from netsetup.validate.context import (
    Context,
    ProfileEntry,
    Tree,
    display,
    site_tables,
    tunnel_subnets,
)
from netsetup.validate.findings import Severity
from netsetup.validate.ranges import nested
from netsetup.validate.registry import define, tree_check

TUNNEL_OVERLAP = define(
    "NS202",
    "tunnel-overlap",
    Severity.ERROR,
    "The tunnel subnets of two profiles overlap.",
    "An assistant who works for two companies has both tunnels up at once: with overlapping "
    "subnets their routes clash, and traffic meant for one company goes into the other's tunnel.",
    """
    # profiles/acme/profile.toml
    tunnel_v4 = "198.18.10.0/24"
    # profiles/bright/profile.toml
    tunnel_v4 = "198.18.10.128/25"
    """,
    """
    # profiles/bright/profile.toml
    tunnel_v4 = "198.18.20.0/25"
    """,
)
KEY_REUSED = define(
    "NS203",
    "key-reused-across-profiles",
    Severity.ERROR,
    "A public key (a gateway's or a peer's) appears in more than one profile.",
    "One key pair in two companies means one private key gives access to both: revoking an "
    "assistant at one company leaves them in at the other, and a leaked key opens both.",
    """
    # profiles/acme/peers/alice.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    # profiles/bright/peers/alice.toml
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    """,
    """
    # profiles/bright/peers/alice.toml  (its own key pair)
    public_key = "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI="
    """,
)
DUPLICATE_ID = define(
    "NS204",
    "duplicate-profile-id",
    Severity.ERROR,
    "Two profile folders have the same name (the profile id).",
    "Commands name a profile by its id (`netsetup provision acme ...`): with two of the same name "
    "an admin provisions into, or revokes from, the wrong company.",
    """
    clients/profiles/acme/profile.toml
    archive/profiles/acme/profile.toml
    """,
    """
    clients/profiles/acme/profile.toml
    archive/profiles/acme-2019/profile.toml
    """,
)


@tree_check
def check_profile_ids(tree: Tree, ctx: Context) -> None:
    first: dict[str, ProfileEntry] = {}
    for entry in tree.profiles:
        other = first.setdefault(entry.id, entry)
        if other is not entry:
            ctx.report_at(
                display(entry.file.path),
                1,
                1,
                DUPLICATE_ID.code,
                f"profile id {entry.id!r} is also used by {display(other.directory)}; "
                "rename one of the folders",
            )


@tree_check
def check_tunnel_overlap(tree: Tree, ctx: Context) -> None:
    # every site's subnets: within one profile the schema keeps them apart (NS117)
    Place = tuple[ProfileEntry, KeyPath, str, IPNetwork]  # where, and the subnet itself
    subnets: list[tuple[IPNetwork, Place]] = []
    for entry in tree.profiles:
        if entry.profile is not None:
            subnets.extend(
                (subnet, (entry, keypath, label, subnet))
                for subnet, keypath, label in tunnel_subnets(entry.profile)
            )
    for (entry, keypath, label, mine), enclosers in nested(subnets):
        other, other_keypath, _, theirs = enclosers[0]
        if other is entry:
            continue
        ctx.report(
            entry.file,
            keypath,
            TUNNEL_OVERLAP.code,
            f"{label} {mine} overlaps {theirs} of profile {other.id!r} "
            f"({ctx.where(other.file, other_keypath)})",
        )


@tree_check
def check_keys_across(tree: Tree, ctx: Context) -> None:
    first: dict[str, tuple[ProfileEntry, ParsedFile, KeyPath]] = {}
    for entry in tree.profiles:
        places: list[tuple[str, ParsedFile, KeyPath]] = []
        if entry.profile is not None:
            places.extend(
                (site.public_key, entry.file, (*path, "public_key"))
                for site, path in site_tables(entry.profile)
            )
        places.extend((p.public_key, e.file, ("public_key",)) for e, p in entry.valid_peers())
        for key, file, keypath in places:
            seen = first.setdefault(key, (entry, file, keypath))
            if seen[0] is entry:
                continue
            ctx.report(
                file,
                keypath,
                KEY_REUSED.code,
                f"this public key is also used in profile {seen[0].id!r} "
                f"({ctx.where(seen[1], seen[2])}); every profile needs its own key pairs",
            )
