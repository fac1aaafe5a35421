"""A stand-in for the gateway's live state, so the witness can be tested without WireGuard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from netsetup.keys import KeyPair, SecretKey, generate_keypair
from netsetup.profile.model import Peer
from netsetup.responder.witness import LiveState

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def peer(
    name: str, public_key: str, status: str = "active", expires: datetime | None = None
) -> Peer:
    import ipaddress

    return Peer(
        name=name,  # type: ignore[arg-type]
        mode="dedicated",
        public_key=public_key,
        address_v4=ipaddress.IPv4Address("198.18.10.2"),
        address_v6=None,
        created=NOW,
        expires=expires,
        status=status,
    )


@dataclass
class FakeGateway:
    """What `wg show` and the nftables sets would say; counts how often the key was read."""

    key: KeyPair = field(default_factory=generate_keypair)
    listen_port: int | None = 51820
    handshakes: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] | None = field(default_factory=dict)
    files: dict[str, Peer] = field(default_factory=dict)
    reads: int = 0

    def live(self, fresh: bool = False) -> LiveState:
        self.reads += 1
        private: SecretKey | None = self.key.private
        return LiveState(private, self.listen_port, dict(self.handshakes))

    def seen_age(self, address: str) -> tuple[bool, float | None]:
        if self.seen is None:
            return False, None
        return True, self.seen.get(address)

    def peers(self) -> Mapping[str, Peer]:
        return self.files
