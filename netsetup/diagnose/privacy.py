"""What no diagnose output may show: keys, and (unless asked) the assistant's public addresses.

Two layers. `Redactor` rewrites a result before anything renders it: every string in it (summary,
fix, metrics, keys and values, at any depth) gets its public IP addresses masked and anything
shaped like a WireGuard key removed. `scrub_keys` runs once more over every rendered text (the
terminal lines, the JSON, the Markdown, the HTML): defence in depth, should a renderer ever show a
field the redactor did not see.

Which address is public: one that is neither for private use (RFC 1918, CGNAT, loopback,
link-local, unique local, multicast, unspecified) nor inside the company's own networks (the
tunnel's Address and AllowedIPs, a default route aside). The documentation and benchmarking ranges
count as public: examples and the lab use them for the internet.
"""

from __future__ import annotations

import bisect
import contextlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from netsetup.diagnose.result import CheckResult, DiagnoseReport, Outcome
from netsetup.errors import one_line

if TYPE_CHECKING:
    from netsetup.diagnose.clientconfig import ClientConfig

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

KEY_REMOVED = "[key removed]"

# 32 bytes in standard base64: 43 characters and one '=' (what wg prints for every key). Not part
# of a longer base64 run, so a longer blob is not cut in two.
_KEY = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

PRIVATE_USE: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT: the provider's side, not the assistant's
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::1/128",
        "::/128",
        "fe80::/10",
        "fc00::/7",
        "ff00::/8",
    )
)


def _ranges(networks: Iterable[IPNetwork], version: int) -> tuple[list[int], list[int]]:
    """The networks of one IP version merged into sorted, disjoint (first, last) address ranges:
    a lookup is a bisection, not a walk through every network (a config may route thousands,
    and every address in every text is looked up)."""
    ours = [n for n in networks if n.version == version]  # one version: collapsible together
    starts: list[int] = []
    ends: list[int] = []
    for net in ipaddress.collapse_addresses(ours):  # type: ignore[type-var]
        starts.append(int(net.network_address))
        ends.append(int(net.broadcast_address))
    return starts, ends


def scrub_keys(text: str) -> str:
    """`text` with everything shaped like a WireGuard key (private, preshared or public) removed."""
    return _KEY.sub(KEY_REMOVED, text)


def mask_address(address: IPAddr) -> str:
    """The address with its host part hidden: `203.0.x.x`, `2001:db8:x:x:x:x:x:x`. The provider's
    prefix stays, which is what IT needs to tell one provider from another."""
    if address.version == 4:
        first, second, _, _ = str(address).split(".")
        return f"{first}.{second}.x.x"
    groups = address.exploded.split(":")
    return ":".join([g.lstrip("0") or "0" for g in groups[:2]] + ["x"] * 6)


class Redactor:
    """Masks public addresses (unless `show_public_ip`) and removes keys from results."""

    def __init__(self, company_networks: Iterable[IPNetwork] = (), show_public_ip: bool = False):
        self.show_public_ip = show_public_ip
        self.private = PRIVATE_USE + tuple(n for n in company_networks if n.prefixlen > 0)
        self._ranges = {version: _ranges(self.private, version) for version in (4, 6)}

    @classmethod
    def for_config(cls, config: ClientConfig, show_public_ip: bool = False) -> Redactor:
        """From a ClientConfig: its Address networks and AllowedIPs are the company's. One that
        is not valid (tunnel.config reports it) counts as none: more is masked, never less."""
        networks: list[IPNetwork] = []
        with contextlib.suppress(ValueError):
            networks += [a.network for a in config.addresses]
        with contextlib.suppress(ValueError):
            networks += list(config.allowed_ips)
        return cls(networks, show_public_ip)

    def is_public(self, address: IPAddr) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            return self.is_public(address.ipv4_mapped)
        starts, ends = self._ranges[address.version]
        at = bisect.bisect_right(starts, int(address)) - 1
        return not (at >= 0 and int(address) <= ends[at])

    def text(self, value: str) -> str:
        """`value` with keys removed, public addresses masked, and every character that is not
        printable (an escape sequence in a server's banner, a line break) written as its escape:
        what a server or a config sends never drives the terminal nor breaks a line."""
        value = scrub_keys(value)
        if not self.show_public_ip:
            value = _IPV4.sub(self._mask_match, value)
            value = _IPV6.sub(self._mask_match, value)
        return one_line(value)  # last: an escape written out could hide a key or an address

    def _mask_match(self, match: re.Match[str]) -> str:
        try:
            address = ipaddress.ip_address(match.group(0))
        except ValueError:
            return match.group(0)
        return mask_address(address) if self.is_public(address) else match.group(0)

    def value(self, value: Any) -> Any:
        """Any JSON-like value, strings redacted at every depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            return [self.value(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        return value

    def result(self, result: CheckResult) -> CheckResult:
        o = result.outcome
        outcome = Outcome(
            o.status,
            self.text(o.summary),
            self.value(dict(o.metrics)),
            self.text(o.fix) if o.fix is not None else None,
            o.owner,
        )
        return replace(
            result, id=self.text(result.id), title=self.text(result.title), outcome=outcome
        )

    def report(self, report: DiagnoseReport) -> DiagnoseReport:
        def opt(value: str | None) -> str | None:
            return self.text(value) if value is not None else None

        return replace(
            report,
            checks=tuple(self.result(c) for c in report.checks),
            host=self.text(report.host),
            platform=self.text(report.platform),
            config=opt(report.config),
            profile_id=opt(report.profile_id),
            company=opt(report.company),
            contact=opt(report.contact),
            public_ip_shown=self.show_public_ip,
        )
