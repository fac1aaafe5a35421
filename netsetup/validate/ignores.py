"""`# netsetup: ignore[NS106] reason` silences a code on its line, or in its whole table when it
sits on the table's header line. An ignore that silences nothing is reported (NS010), so stale
ignores do not pile up and hide the next real problem.

Only a real TOML comment counts: the same text inside a string value (`name = "x # netsetup:
ignore[NS106]"`) is data, not an ignore. NS201 (a secret in profiles/) cannot be silenced: a key
that was committed is leaked whatever a comment says, so an ignore naming it is reported too."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netsetup.validate.findings import Finding, Severity
from netsetup.validate.registry import RULES, define

UNUSED_IGNORE = define(
    "NS010",
    "unused-ignore",
    Severity.WARNING,
    "A `# netsetup: ignore[CODE]` comment that silences nothing, names a code that no rule has, "
    "or names NS201, which cannot be ignored.",
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
# A secret stays a secret whatever a comment says: these codes are never silenced.
UNIGNORABLE = frozenset(("NS201",))


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
    state = _LexState()
    for number, line in enumerate(text.splitlines(), start=1):
        if state.at_top_level() and line.lstrip().startswith("["):
            header = number
        header_of.append(header)
        comment = state.feed(line)
        if comment >= 0:
            match = _IGNORE.search(line, comment)  # anywhere in the comment
            if match:
                codes = [c.strip().upper() for c in match.group(1).split(",") if c.strip()]
                by_line[number] = _Ignore(number, match.start() + 1, codes)
    return _FileIgnores(by_line, header_of) if by_line else None


class _LexState:
    """Just enough of a TOML lexer to tell a comment from a `#` inside a string.

    Carried from line to line: an open multi-line string and the depth of open arrays and inline
    tables (a line starting with `[` inside an array is not a table header).
    """

    def __init__(self) -> None:
        self.multiline: str | None = None  # the open ''' or \"\"\" delimiter
        self.depth = 0

    def at_top_level(self) -> bool:
        return self.multiline is None and self.depth == 0

    def feed(self, line: str) -> int:
        """Advance over one line; the index of the `#` that starts its comment, or -1."""
        i, end = 0, len(line)
        while i < end:
            if self.multiline is not None:
                close = _multiline_end(line, i, self.multiline)
                if close < 0:
                    return -1
                self.multiline, i = None, close
                continue
            char = line[i]
            if char == "#":
                return i
            if char in "\"'":
                if line.startswith(char * 3, i):
                    self.multiline, i = char * 3, i + 3
                    continue
                i = _string_end(line, i + 1, char)
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}" and self.depth > 0:
                self.depth -= 1
            i += 1
        return -1


def _string_end(line: str, i: int, quote: str) -> int:
    """The index after the closing quote of a one-line string whose body starts at `i`."""
    while i < len(line):
        char = line[i]
        if char == "\\" and quote == '"':
            i += 2
            continue
        if char == quote:
            return i + 1
        i += 1
    return len(line)  # unterminated: a syntax error that NS001 reports


def _multiline_end(line: str, i: int, delimiter: str) -> int:
    """The index after the delimiter that closes a multi-line string, or -1 on this line."""
    while i < len(line):
        if line[i] == "\\" and delimiter == '"""':
            i += 2
            continue
        if line.startswith(delimiter, i):
            i += 3
            while i < len(line) and line[i] == delimiter[0]:  # up to two quotes end the content
                i += 1
            return i
        i += 1
    return -1


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
        if (
            ignores is None
            or finding.code == UNUSED_IGNORE.code
            or finding.code in UNIGNORABLE
            or not ignores.silence(finding)
        ):
            kept.append(finding)
    for path, ignores in scanned.items():
        for ignore in ignores.by_line.values():
            if not ignore.codes:
                kept.append(_unused(path, ignore, "ignore[] names no code"))
            for code in ignore.codes:
                if code not in RULES:
                    kept.append(_unused(path, ignore, f"ignore[{code}]: there is no rule {code}"))
                elif code in UNIGNORABLE:
                    kept.append(
                        _unused(
                            path,
                            ignore,
                            f"ignore[{code}]: {code} {RULES[code].name} cannot be ignored; remove "
                            "the comment, and remove the key and treat it as leaked",
                        )
                    )
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
