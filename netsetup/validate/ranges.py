"""Sort-based interval work on IP networks: nesting and overlap without pairwise loops.

CIDR blocks are laminar (two blocks are either disjoint or one holds the other), so after sorting
by (start, prefix length) a single sweep with a stack of the open enclosing blocks finds every
block that sits inside another in O(n log n).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from netsetup.profile.model import AccessRule
from netsetup.profile.values import IPNetwork

T = TypeVar("T")


def nested(items: Iterable[tuple[IPNetwork, T]]) -> Iterator[tuple[T, list[T]]]:
    """For every item inside (or equal to) earlier-sorted items: the item and its enclosers.

    Enclosers are listed innermost first. Of two identical networks the one given later is the
    inner one, so input order decides which of a duplicate pair is reported.
    """
    keyed = sorted(
        (
            (
                net.version,
                int(net.network_address),
                net.prefixlen,
                index,
                int(net.broadcast_address),
                item,
            )
            for index, (net, item) in enumerate(items)
        ),
        key=lambda k: k[:4],
    )
    stack: list[tuple[int, int, T]] = []  # (version, end, item)
    for version, start, _, _, end, item in keyed:
        while stack and (stack[-1][0] != version or stack[-1][1] < start):
            stack.pop()
        if stack:
            yield item, [entry[2] for entry in reversed(stack)]
        stack.append((version, end, item))


def covers(wide: AccessRule, narrow: AccessRule) -> bool:
    """Whether `wide` allows everything `narrow` allows (networks aside)."""
    if wide.proto is None:
        return True
    if narrow.proto != wide.proto:
        return False
    if not wide.ports:
        return True
    if not narrow.ports:
        return False
    return all(
        any(lo <= n_lo and n_hi <= hi for lo, hi in wide.ports) for n_lo, n_hi in narrow.ports
    )


def contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    return outer.version == inner.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def overlaps(one: IPNetwork, other: IPNetwork) -> bool:
    return one.version == other.version and one.overlaps(other)
