"""`# netsetup: ignore[NS106] reason` silences a code on its line, or in its whole table when it
sits on the table's header line. An ignore that silences nothing is reported (NS010), so stale
ignores do not pile up and hide the next real problem."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netsetup.validate.findings import Finding, Severity
from netsetup.validate.registry import RULES, define

UNUSED_IGNORE = define(
    "NS010",
    "unused-ignore",
    Severity.WARNING,
    "A `# netsetup: ignore[CODE]` comment that silences nothing, or names a code that no rule has.",
    "A stale ignore keeps silencing its code after the original reason is gone, and will hide the "
    "next real problem on that line or table without anyone deciding so.",
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    mtu = 1380  # netsetup: ignore[NS110] our ISP needs a small MTU
    """,
    """
    [network]
    tunnel_v4 = "198.18.10.0/24"
    mtu = 1200  # netsetup: ignore[NS110] our ISP needs a small MTU
    """,
)

_MARKER = "netsetup:"
_IGNORE = re.compile(r"#\s*netsetup:\s*ignore\[([^\]]*)\]")


@dataclass
class _Ignore:
    line: int
    column: int
    codes: list[str]
    used: set[str] = field(default_factory=set)


@dataclass
class _FileIgnores:
    by_line: dict[int, _Ignore]
    header_of: list[
        int
    ]  # header_of[line] = line of the table header that line belongs to (0: none)

    def silence(self, finding: Finding) -> bool:
        for line in (finding.line, self._header(finding.line)):
            ignore = self.by_line.get(line)
            if ignore is not None and finding.code in ignore.codes:
                ignore.used.add(finding.code)
                return True
        return False

    def _header(self, line: int) -> int:
        return self.header_of[line] if 0 < line < len(self.header_of) else 0


def _scan(text: str) -> _FileIgnores | None:
    if _MARKER not in text:  # the common case costs one substring search
        return None
    by_line: dict[int, _Ignore] = {}
    header_of = [0]
    header = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):
            header = number
        header_of.append(header)
        match = _IGNORE.search(line)
        if match:
            codes = [c.strip().upper() for c in match.group(1).split(",") if c.strip()]
            by_line[number] = _Ignore(number, match.start() + 1, codes)
    return _FileIgnores(by_line, header_of) if by_line else None


def apply_ignores(findings: list[Finding], files: dict[str, str]) -> list[Finding]:
    """The findings that are not silenced, plus one NS010 per ignored code that silenced nothing.

    `files` maps each file's display path to its text.
    """
    scanned = {path: found for path, text in files.items() if (found := _scan(text)) is not None}
    if not scanned:
        return findings
    kept: list[Finding] = []
    for finding in findings:
        ignores = scanned.get(finding.path)
        if ignores is None or finding.code == UNUSED_IGNORE.code or not ignores.silence(finding):
            kept.append(finding)
    for path, ignores in scanned.items():
        for ignore in ignores.by_line.values():
            if not ignore.codes:
                kept.append(_unused(path, ignore, "ignore[] names no code"))
            for code in ignore.codes:
                if code not in RULES:
                    kept.append(_unused(path, ignore, f"ignore[{code}]: there is no rule {code}"))
                elif code not in ignore.used:
                    kept.append(
                        _unused(
                            path,
                            ignore,
                            f"ignore[{code}] silences nothing here: remove it "
                            f"({code} {RULES[code].name} does not fire on this line or table)",
                        )
                    )
    return kept


def _unused(path: str, ignore: _Ignore, message: str) -> Finding:
    rule = UNUSED_IGNORE
    return Finding(path, ignore.line, ignore.column, rule.code, rule.name, rule.severity, message)
