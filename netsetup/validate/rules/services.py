"""NS108, NS109, NS115: DNS, VoIP and the agency portal list against the company's ranges."""

from __future__ import annotations

import ipaddress

from netsetup.profile.model import AccessRule, Profile
from netsetup.profile.values import IPNetwork
from netsetup.validate.context import (
    Context,
    ProfileEntry,
    indexed_networks,
    indexed_rules,
    tunnel_subnets,
)
from netsetup.validate.findings import Severity
from netsetup.validate.ranges import contains, covers
from netsetup.validate.registry import define, profile_check

DNS_NOT_ROUTED = define(
    "NS108",
    "dns-not-routed",
    Severity.ERROR,
    "A DNS server is outside every company range (the tunnel subnets, access.dedicated, "
    "access.agency and the portals).",
    "The client sends its DNS queries into the tunnel to an address the gateway does not serve: "
    "name lookups fail, or the company's internal names leak to a server outside the company.",
    """
    [dns]
    servers = ["198.51.100.53"]
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
    """
    [dns]
    servers = ["192.0.2.53"]
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
)
VOIP_NOT_ROUTED = define(
    "NS109",
    "voip-not-routed",
    Severity.ERROR,
    "The SIP server or a VoIP media (RTP) network is outside every company range (tunnel subnets, "
    "access lists, portals).",
    "Every mode routes the VoIP path into the tunnel; if the gateway does not serve that range, "
    "registration fails or calls connect with no audio (RTP going nowhere).",
    """
    [voip]
    sip_server = "203.0.113.40"
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
    """
    [voip]
    sip_server = "192.0.2.40"
    [access]
    dedicated = ["192.0.2.0/24"]
    """,
)
AGENCY_WIDER = define(
    "NS115",
    "agency-wider-than-portals",
    Severity.ERROR,
    "An access.agency entry allows more than the profile's [[portal]] list (host, protocol and "
    "port) and the VoIP path.",
    "Agency assistants come through a service firm and may change from week to week; they must "
    "reach only the portal and the phone system. A wider rule opens the company network to them.",
    """
    [access]
    agency = ["192.0.2.0/24"]
    [[portal]]
    name = "documents"
    host = "192.0.2.20"
    port = 443
    """,
    """
    [access]
    agency = ["192.0.2.20/32 tcp/443"]
    [[portal]]
    name = "documents"
    host = "192.0.2.20"
    port = 443
    """,
)


def _company_ranges(entry: ProfileEntry, profile: Profile) -> list[IPNetwork]:
    ranges: list[IPNetwork] = [subnet for subnet, _, _ in tunnel_subnets(profile)]
    for mode in ("dedicated", "agency"):
        ranges.extend(rule.network for _, rule in indexed_rules(entry, mode))
    ranges.extend(ipaddress.ip_network(portal.host) for portal in profile.portals)
    return ranges


def _inside(net: IPNetwork, ranges: list[IPNetwork]) -> bool:
    return any(contains(outer, net) for outer in ranges)


@profile_check
def check_services(entry: ProfileEntry, ctx: Context) -> None:
    profile = entry.profile
    if profile is None:
        return
    ranges = _company_ranges(entry, profile)
    for index, server in indexed_networks(entry, "dns", "servers"):
        if not _inside(server, ranges):
            ctx.report(
                entry.file,
                ("dns", "servers", index),
                DNS_NOT_ROUTED.code,
                f"DNS server {server.network_address} is outside every company range; add its "
                "network to access.dedicated or use a server inside the company network",
            )
    if profile.voip is not None:
        sip = ipaddress.ip_network(profile.voip.sip_server)
        if not _inside(sip, ranges):
            ctx.report(
                entry.file,
                ("voip", "sip_server"),
                VOIP_NOT_ROUTED.code,
                f"SIP server {profile.voip.sip_server} is outside every company range; calls "
                "could not register",
            )
        for index, media in indexed_networks(entry, "voip", "media"):
            if not _inside(media, ranges):
                ctx.report(
                    entry.file,
                    ("voip", "media", index),
                    VOIP_NOT_ROUTED.code,
                    f"VoIP media network {media} is outside every company range; calls would "
                    "connect without audio",
                )
    _check_agency(entry, profile, ctx)


def _check_agency(entry: ProfileEntry, profile: Profile, ctx: Context) -> None:
    allowed = [portal.as_rule() for portal in profile.portals]
    if profile.voip is not None:
        allowed.extend(AccessRule(net) for net in profile.voip.media_networks)
        allowed.append(AccessRule(ipaddress.ip_network(profile.voip.sip_server)))
    for index, rule in indexed_rules(entry, "agency"):
        if any(contains(a.network, rule.network) and covers(a, rule) for a in allowed):
            continue
        portals = ", ".join(str(p.as_rule()) for p in profile.portals) or "none"
        ctx.report(
            entry.file,
            ("access", "agency", index),
            AGENCY_WIDER.code,
            f"access.agency[{index}] {rule} is wider than the portal list ({portals}) and the "
            "VoIP path; agency assistants may reach only those",
        )
