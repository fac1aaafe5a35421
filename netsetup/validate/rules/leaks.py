"""NS201: a private or preshared key anywhere under the validated paths.

Every file is scanned, not only TOML: a client .conf dropped next to a profile leaks just as well.
The key itself never appears in a finding.
"""

from __future__ import annotations

import re

from netsetup.validate.context import Context, Tree, display
from netsetup.validate.findings import Severity
from netsetup.validate.registry import define, tree_check

SECRET = define(
    "NS201",
    "secret-in-profiles",
    Severity.ERROR,
    "A private or preshared key is assigned somewhere under the validated paths, in any file "
    "(TOML, a WireGuard .conf, JSON, notes).",
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


# Cheap substring tests first: the case-insensitive regex runs only on files that name a key.
_HINTS = (
    "privatekey",
    "private_key",
    "private-key",
    "presharedkey",
    "preshared_key",
    "preshared-key",
)


@tree_check
def check_secrets(tree: Tree, ctx: Context) -> None:
    for path, text in tree.files():
        lowered = text.lower()
        if not any(hint in lowered for hint in _HINTS):
            continue
        for match in _ASSIGNMENT.finditer(text):
            start = match.start()
            line = text.count("\n", 0, start) + 1
            column = start - (text.rfind("\n", 0, start) + 1) + 1
            kind = "preshared" if match.group(1).lower().startswith("preshared") else "private"
            ctx.report_at(
                display(path),
                line,
                column,
                SECRET.code,
                f"a {kind} key is stored here ({match.group(1)} = <redacted>); remove it and "
                f"treat it as leaked: {'rotate the peer' if kind == 'private' else 'replace it'}",
            )
