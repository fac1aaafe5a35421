"""The profile model: one company network (`profile.toml`) and its peers (`peers/<name>.toml`).

The names below load on first use, so that importing `netsetup.profile.model` (the CLI does, for
`AccessMode`) does not also import the parser and the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netsetup.profile.model import AccessRule, Peer, Profile
    from netsetup.profile.store import load_peers, load_profile

__all__ = ["AccessRule", "Peer", "Profile", "load_peers", "load_profile"]
_HOMES = {
    "AccessRule": "model",
    "Peer": "model",
    "Profile": "model",
    "load_peers": "store",
    "load_profile": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
