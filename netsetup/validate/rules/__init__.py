"""Every rule module, one per group of rules. Importing this package defines all the rules."""

from netsetup.validate import ignores
from netsetup.validate.rules import (
    across,
    addresses,
    identity,
    internal,
    leaks,
    lifecycle,
    routes,
    schema,
    services,
    sites,
    tunnel,
)

__all__ = [
    "across",
    "addresses",
    "identity",
    "ignores",
    "internal",
    "leaks",
    "lifecycle",
    "routes",
    "schema",
    "services",
    "sites",
    "tunnel",
]
