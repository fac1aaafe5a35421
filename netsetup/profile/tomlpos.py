"""Where a key or value sits in a TOML text (tomllib keeps no positions).

`KeyLocator(text).find(("access", "dedicated", 2))` gives the 1-based line and column of the third
element of `access.dedicated`. The scan is one linear pass and runs only when a finding needs a
position, so loading thousands of clean files never pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = tuple[str | int, ...]
Position = tuple[int, int]

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class KeyLocator:
    def __init__(self, text: str) -> None:
        self._text = text
        self._positions: dict[KeyPath, Position] | None = None

    def find(self, path: Sequence[str | int]) -> Position | None:
        """Position of `path`, or of its longest prefix that is known; None if nothing matches."""
        positions = self.positions()
        key = tuple(path)
        while key:
            if key in positions:
                return positions[key]
            key = key[:-1]
        return None

    def line(self, path: Sequence[str | int]) -> int | None:
        found = self.find(path)
        return found[0] if found else None

    def positions(self) -> dict[KeyPath, Position]:
        if self._positions is None:
            self._positions = _Scanner(self._text).scan()
        return self._positions


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.out: dict[KeyPath, Position] = {}
        self.aot: dict[KeyPath, int] = {}

    # -- low level -------------------------------------------------------------------------
    def pos(self) -> Position:
        return (self.line, self.i - self.line_start + 1)

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def advance(self) -> str:
        ch = self.text[self.i]
        self.i += 1
        if ch == "\n":
            self.line += 1
            self.line_start = self.i
        return ch

    def at_end(self) -> bool:
        return self.i >= len(self.text)

    def skip_ws(self, newlines: bool = False) -> None:
        while not self.at_end():
            ch = self.peek()
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.advance()
            elif newlines and ch == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        while not self.at_end() and self.peek() != "\n":
            self.advance()

    def skip_line(self) -> None:
        self.skip_comment()
        if not self.at_end():
            self.advance()

    # -- grammar ---------------------------------------------------------------------------
    def scan(self) -> dict[KeyPath, Position]:
        prefix: KeyPath = ()
        try:
            while not self.at_end():
                self.skip_ws(newlines=True)
                if self.at_end():
                    break
                if self.peek(2) == "[[":
                    prefix = self.array_header()
                elif self.peek() == "[":
                    prefix = self.table_header()
                else:
                    self.key_value(prefix)
        except (IndexError, RecursionError):
            pass  # a broken or absurdly nested file: keep what was found before the break
        return self.out

    def array_header(self) -> KeyPath:
        """`[[a.b]]`: the next element of array a.b; returns the prefix of the keys that follow."""
        start = self.pos()
        self.i += 2
        resolved = self.resolve(self.key())
        index = self.aot.get(resolved, 0)
        self.aot[resolved] = index + 1
        prefix = (*resolved, index)
        self.define(resolved, start)
        self.out[prefix] = start
        self.skip_line()
        return prefix

    def table_header(self) -> KeyPath:
        start = self.pos()
        self.i += 1
        prefix = self.resolve(self.key())
        self.define(prefix, start)
        self.skip_line()
        return prefix

    def key_value(self, prefix: KeyPath) -> None:
        start = self.pos()
        path = (*prefix, *self.key())
        self.define(path, start, below=len(prefix))  # a.b.c = 1 defines a.b
        self.skip_ws()
        if self.peek() == "=":
            self.advance()
        self.skip_ws()
        self.value(path)
        self.skip_line()

    def define(self, path: KeyPath, start: Position, below: int = 0) -> None:
        """Record `start` for `path` and every prefix longer than `below` not seen before: a
        header `[a.b]` is where table `a` first appears if nothing named it earlier."""
        for depth in range(below + 1, len(path) + 1):
            self.out.setdefault(path[:depth], start)

    def resolve(self, raw: KeyPath) -> KeyPath:
        """Insert the current index after every array-of-tables segment of a header path."""
        resolved: KeyPath = ()
        for segment in raw:
            resolved = (*resolved, segment)
            if resolved in self.aot:
                resolved = (*resolved, self.aot[resolved] - 1)
        # the header itself names the array, not its element
        if raw and resolved and resolved[-1] != raw[-1] and resolved[:-1] in self.aot:
            resolved = resolved[:-1]
        return resolved

    def key(self) -> KeyPath:
        parts: list[str | int] = []
        while not self.at_end():
            self.skip_ws()
            ch = self.peek()
            if ch in "\"'":
                parts.append(self.string())
            else:
                start = self.i
                while not self.at_end() and self.peek() in _BARE:
                    self.advance()
                if self.i == start:
                    break
                parts.append(self.text[start : self.i])
            self.skip_ws()
            if self.peek() == ".":
                self.advance()
                continue
            break
        return tuple(parts)

    def string(self) -> str:
        quote = self.advance()
        if self.peek(2) == quote * 2:  # multi-line string
            self.i += 2
            start = self.i
            while not self.at_end() and self.peek(3) != quote * 3:
                if quote == '"' and self.peek() == "\\":
                    self.advance()
                self.advance()
            value = self.text[start : self.i]
            self.i += 3
            return value
        chars: list[str] = []
        while not self.at_end() and self.peek() != quote and self.peek() != "\n":
            ch = self.advance()
            if quote == '"' and ch == "\\" and not self.at_end():
                ch = self.advance()
            chars.append(ch)
        if self.peek() == quote:
            self.advance()
        return "".join(chars)

    def value(self, path: KeyPath) -> None:
        ch = self.peek()
        if ch in "\"'":
            self.string()
        elif ch == "[":
            self.array(path)
        elif ch == "{":
            self.inline_table(path)
        else:
            while not self.at_end() and self.peek() not in ",]}\n#":
                self.advance()

    def array(self, path: KeyPath) -> None:
        self.advance()
        index = 0
        while True:
            self.skip_ws(newlines=True)
            if self.at_end() or self.peek() == "]":
                break
            self.out.setdefault((*path, index), self.pos())
            self.value((*path, index))
            index += 1
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.advance()
            elif self.peek() != "]":
                break
        if self.peek() == "]":
            self.advance()

    def inline_table(self, path: KeyPath) -> None:
        self.advance()
        while True:
            self.skip_ws()
            if self.at_end() or self.peek() in "}\n":
                break
            start = self.pos()
            key = self.key()
            if not key:
                break
            self.out.setdefault((*path, *key), start)
            self.skip_ws()
            if self.peek() == "=":
                self.advance()
            self.skip_ws()
            self.value((*path, *key))
            self.skip_ws()
            if self.peek() == ",":
                self.advance()
        if self.peek() == "}":
            self.advance()


# Deeper than this, a value is not a setting: the nesting is what broke the parser.
DEEP_NESTING = 64


def nesting_start_line(text: str, depth: int = DEEP_NESTING) -> int:
    """The line where the first value nested more than `depth` arrays or inline tables deep
    begins (1 if there is none). tomllib gives no position when deep nesting exhausts its stack.
    """
    level = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            i = _after_string(text, i)
            continue
        if ch == "#":
            i = _line_end(text, i)
            continue
        if ch in "[{":
            start = i if level == 0 else start
            level += 1
            if level > depth:
                return text.count("\n", 0, start) + 1
        elif ch in "]}":
            level = max(level - 1, 0)
        i += 1
    return 1


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _after_string(text: str, i: int) -> int:
    """Index just past the string that starts at `i` (or the end of a broken one)."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1
