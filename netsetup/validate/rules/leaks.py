"""NS201: a private or preshared key anywhere under the validated paths.

Every file is scanned, not only TOML: a client .conf dropped next to a profile leaks just as well,
and so does a bare key file (`private.key`, `gw.key`, `maria.<tag>.psk`: just the key, as `wg
genkey` and netsetup's state directory write them). The key itself never appears in a finding, and
an ignore comment cannot silence this rule (see ignores.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from netsetup.validate.context import Context, OtherFile, Tree, display
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, tree_check

SECRET = define(
    "NS201",
    "secret-in-profiles",
    Severity.ERROR,
    "A private or preshared key is assigned somewhere under the validated paths, in any file "
    "(TOML, a WireGuard .conf, JSON, notes), hidden folders included, or sits alone in a key file "
    "(`private.key`, `*.psk`). This rule cannot be silenced with an ignore comment.",
    "profiles/ lives in a repository that many people and CI systems read. A private key there "
    "lets anyone impersonate the assistant or the gateway; a preshared key weakens the tunnel. "
    "Keys belong in the client config, on the gateway and in the admin's state directory only.",
    """
    # profiles/acme/peers/alice.conf
    [Interface]
    private_key = <44 base64 characters of a WireGuard key>
    """,
    """
    # profiles/acme/peers/alice.toml  (public key only; the private key stays with the assistant)
    public_key = "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ="
    """,
)

# The names wg, wg-quick, netsetup and most tools use, in any case and quoting; the value must have
# the shape of a WireGuard key (base64 of 32 bytes) so that documentation placeholders stay quiet.
_ASSIGNMENT = re.compile(
    r"""(?i)((?:private|preshared)[_-]?key)["']?[ \t]*[=:][ \t]*["']?"""
    r"""([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)"""
)


# A cheap test first (one scan, no lowered copy of the text): the full pattern runs only on files
# that name a key.
_HINT = re.compile(r"(?i)pr(?:ivate|eshared)[_-]?key")


# A bare key file: its name says "secret key", and it holds a token of a WireGuard key's shape
# (standard base64, 44 characters ending in "=", 32 bytes). Only files other than profile.toml and
# the peer files are looked at, and only those with such a name: clean peers cost nothing here.
_SECRET_SUFFIXES = (".key", ".psk", ".priv", ".private")
_SECRET_WORDS = ("private", "preshared", "psk", "secret")
_PRESHARED_WORDS = ("preshared", "psk")
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])")


def secret_file_kind(name: str) -> str | None:
    """The kind of key ("private" or "preshared") a file name suggests, or None.

    `public.key`, `gw.pub.key` and the like hold public keys: a name that says "pub" and none of
    the secret words is not a secret's name.
    """
    lowered = name.lower()
    worded = any(word in lowered for word in _SECRET_WORDS)
    if not worded and ("pub" in lowered or not lowered.endswith(_SECRET_SUFFIXES)):
        return None
    return "preshared" if any(w in lowered for w in _PRESHARED_WORDS) else "private"


@tree_check
def check_secrets(tree: Tree, ctx: Context) -> None:
    assigned: dict[Path, set[int]] = {}
    for path, text in tree.files():
        if _HINT.search(text) is None:
            continue
        for match in _ASSIGNMENT.finditer(text):
            kind = "preshared" if match.group(1).lower().startswith("preshared") else "private"
            assigned.setdefault(path, set()).add(match.start(2))
            _report(
                ctx,
                path,
                text,
                match.start(),
                f"a {kind} key is stored here ({match.group(1)} = <redacted>); remove it and "
                f"treat it as leaked: {_remedy(kind)}",
            )
    candidates: list[tuple[OtherFile, str]] = []
    for other in tree.others:
        file_kind = secret_file_kind(other.path.name)
        if file_kind is not None:
            candidates.append((other, file_kind))
    if candidates:
        _check_key_files(tree, candidates, assigned, ctx)


def _check_key_files(
    tree: Tree,
    candidates: list[tuple[OtherFile, str]],
    assigned: dict[Path, set[int]],
    ctx: Context,
) -> None:
    public = _public_keys(tree)  # a public key in `gw.key` is no secret
    for other, kind in candidates:
        done = assigned.get(other.path, set())
        for match in _TOKEN.finditer(other.text):
            if match.start() in done or match.group() in public:
                continue
            _report(
                ctx,
                other.path,
                other.text,
                match.start(),
                f"{other.path.name!r} looks like a {kind} key file and holds a WireGuard key "
                f"(<redacted>); remove it and treat it as leaked: {_remedy(kind)}",
            )


def _public_keys(tree: Tree) -> set[str]:
    keys: set[str] = set()
    for entry in tree.profiles:
        if entry.profile is not None:
            keys.update(site.public_key for site in entry.profile.gateways)
        keys.update(peer.public_key for _, peer in entry.valid_peers())
    return keys


def _remedy(kind: str) -> str:
    return "rotate the peer" if kind == "private" else "replace it"


def _report(ctx: Context, path: Path, text: str, start: int, message: str) -> None:
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    ctx.report_at(display(path), line, column, SECRET.code, message)
