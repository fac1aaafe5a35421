"""The value parsers behind the schema: ranges nothing can be reached at, durations both ways."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest

from netsetup.profile import values as v


@pytest.mark.parametrize(
    ("network", "what"),
    [
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("127.0.0.1/32", "loopback"),
        ("0.0.0.0/32", "0.0.0.0/8"),
        ("239.1.2.0/24", "multicast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:192.0.2.0/120", "IPv4-mapped"),
        ("ff02::1/128", "multicast"),
    ],
)
def test_unusable_ranges_are_named(network: str, what: str) -> None:
    found = v.unusable_range(ipaddress.ip_network(network))
    assert found is not None and what in found


@pytest.mark.parametrize(
    "network", ["192.0.2.0/24", "0.0.0.0/0", "::/0", "2001:db8::/32", "10.0.0.0/8", "128.0.0.0/1"]
)
def test_ordinary_and_wide_ranges_are_usable(network: str) -> None:
    assert v.unusable_range(ipaddress.ip_network(network)) is None


def test_destination_allows_a_full_tunnel_but_not_broadcast() -> None:
    assert str(v.parse_destination("0.0.0.0/0")) == "0.0.0.0/0"
    assert str(v.parse_destination("::/0")) == "::/0"
    with pytest.raises(ValueError, match="nothing there is reachable through the tunnel"):
        v.parse_destination("255.255.255.255/32")
    with pytest.raises(v.HostBitsError):
        v.parse_destination("192.0.2.1/24")


@pytest.mark.parametrize(
    ("tunnel", "message"),
    [
        ("0.0.0.0/0", "every address"),
        ("::/0", "every address"),
        ("0.0.0.0/1", "overlaps 'this host"),  # wider than the unusable range, still touching it
        ("255.255.255.252/30", "overlaps reserved or broadcast"),
        ("::/64", "overlaps reserved (::/8"),
        ("ff00::/64", "overlaps multicast"),
    ],
)
def test_tunnel_refuses_everything_and_unusable_ranges(tunnel: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        v.parse_tunnel(tunnel)


def test_tunnel_accepts_ordinary_subnets() -> None:
    assert str(v.parse_tunnel("198.18.10.0/24")) == "198.18.10.0/24"
    assert str(v.parse_tunnel("2001:db8:10::/64")) == "2001:db8:10::/64"


@pytest.mark.parametrize("address", ["255.255.255.255", "0.0.0.0", "::", "224.0.0.251", "::1"])
def test_service_address_refuses_what_is_no_server(address: str) -> None:
    with pytest.raises(ValueError, match="not the address of a server"):
        v.parse_service_address(address)


def test_service_address_accepts_both_families() -> None:
    assert str(v.parse_service_address("192.0.2.53")) == "192.0.2.53"
    assert str(v.parse_service_address("2001:db8::53")) == "2001:db8::53"


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(days=30), "30d"),
        (timedelta(weeks=2), "2w"),
        (timedelta(hours=12), "12h"),
        (timedelta(days=365), "365d"),
        (timedelta(hours=36), "36h"),
    ],
)
def test_format_duration_is_read_back_by_parse_duration(span: timedelta, text: str) -> None:
    assert v.format_duration(span) == text
    assert v.parse_duration(text) == span


@pytest.mark.parametrize("span", [timedelta(0), timedelta(minutes=90), timedelta(days=-1)])
def test_format_duration_refuses_what_a_profile_cannot_say(span: timedelta) -> None:
    with pytest.raises(ValueError):
        v.format_duration(span)
