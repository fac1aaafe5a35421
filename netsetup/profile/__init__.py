"""The profile model: one company network (`profile.toml`) and its peers (`peers/<name>.toml`)."""

from netsetup.profile.model import AccessRule, Peer, Profile
from netsetup.profile.store import load_peers, load_profile

__all__ = ["AccessRule", "Peer", "Profile", "load_peers", "load_profile"]
