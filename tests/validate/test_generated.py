"""Thousands of peers with randomly planted mistakes: exactly the planted ones are found."""

from __future__ import annotations

import base64
import ipaddress
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsetup.profile.model import Peer
from netsetup.profile.store import peer_to_toml
from netsetup.validate import validate
from tests.validate.validate_support import NOW

PROFILE = """[company]
name = "Generated Co"

[gateway]
endpoint = "vpn.generated.example:51820"
public_key = "{gateway_key}"

[network]
tunnel_v4 = "198.18.0.0/16"
tunnel_v6 = "2001:db8:100::/64"
keepalive = 25

[dns]
servers = ["192.0.2.53"]

[access]
dedicated = ["192.0.2.0/24", "2001:db8:20::/64"]
agency = ["192.0.2.20/32 tcp/443"]

[[portal]]
name = "documents"
host = "192.0.2.20"
port = 443
"""

# mistake -> (code, the key whose line the finding points at)
MISTAKES = {
    "same-address": ("NS105", "address_v4"),
    "same-key": ("NS101", "public_key"),
    "gateway-key": ("NS102", "public_key"),
    "outside-subnet": ("NS104", "address_v4"),
    "expired-active": ("NS114", "expires"),
    "no-ipv6": ("NS112", "address_v4"),
    "bad-key": ("NS005", "public_key"),
    "syntax": ("NS001", "status"),
}


def key_from(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(32)).decode("ascii")


def line_of(text: str, key: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(f"{key} ="))


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    peers=st.integers(min_value=1000, max_value=3000),
    planted=st.lists(st.sampled_from(sorted(MISTAKES)), max_size=40),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_exactly_the_planted_mistakes_are_found(peers: int, planted: list[str], seed: int) -> None:
    rng = random.Random(seed)
    gateway_key = key_from(rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "profiles" / "generated"
        (root / "peers").mkdir(parents=True)
        (root / "profile.toml").write_text(PROFILE.format(gateway_key=gateway_key))
        created = datetime(2026, 1, 1, tzinfo=UTC)
        base_v4 = ipaddress.IPv4Address("198.18.0.10")
        base_v6 = ipaddress.IPv6Address("2001:db8:100::10")
        clean = [
            Peer(
                name=f"p-{i:05d}",
                mode=rng.choice(("dedicated", "agency")),
                public_key=key_from(rng),
                address_v4=base_v4 + i,
                address_v6=base_v6 + i,
                created=created,
                expires=created + timedelta(days=3650) if rng.random() < 0.5 else None,
            )
            for i in range(peers)
        ]
        # each mistake goes to its own peer, copying from a peer earlier in name order that stays
        # untouched (the later peer is the one reported)
        victims = rng.sample(range(1, peers), len(planted))
        touched = set(victims)
        sources = [i for i in range(peers) if i not in touched]
        texts = {i: peer_to_toml(p) for i, p in enumerate(clean)}
        expected: set[tuple[str, int, str]] = set()
        for mistake, victim in zip(planted, victims, strict=True):
            peer = clean[victim]
            source = clean[rng.choice([s for s in sources[:50] if s < victim] or [0])]
            if mistake == "same-address":
                peer = _replace(peer, address_v4=source.address_v4)
            elif mistake == "same-key":
                peer = _replace(peer, public_key=source.public_key)
            elif mistake == "gateway-key":
                peer = _replace(peer, public_key=gateway_key)
            elif mistake == "outside-subnet":
                peer = _replace(peer, address_v4=ipaddress.IPv4Address("198.19.0.10") + victim)
            elif mistake == "expired-active":
                peer = _replace(peer, expires=NOW - timedelta(days=1 + victim))
            elif mistake == "no-ipv6":
                peer = _replace(peer, address_v6=None)
            text = peer_to_toml(peer)
            if mistake == "bad-key":
                text = text.replace(peer.public_key, peer.public_key[:-4] + "=")
            elif mistake == "syntax":
                text = text.replace('status = "active"', "status = active")
            texts[victim] = text
            code, key = MISTAKES[mistake]
            path = (root / "peers" / f"{peer.name}.toml").as_posix()
            expected.add((path, line_of(text, key), code))
        for i, text in texts.items():
            (root / "peers" / f"{clean[i].name}.toml").write_text(text)

        report = validate([root.parent], now=NOW)
        assert {(f.path, f.line, f.code) for f in report.findings} == expected
        assert len(report.findings) == len(planted)


def _replace(peer: Peer, **changes: object) -> Peer:
    from dataclasses import replace

    return replace(peer, **changes)  # type: ignore[arg-type]
