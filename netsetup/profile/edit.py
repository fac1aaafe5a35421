"""Small edits of a profile.toml that keep every other line and comment as the admin wrote them.

A TOML writer would reformat the whole file and drop its comments, which in a profile explain
why each value is what it is. These edits work on lines: find the table (`[gateway]`, or the n-th
`[[gateway]]`), replace the line of one key or add it after the table's last value, then check
that the result parses and says what was meant before writing it atomically.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from netsetup.errors import InputError
from netsetup.fsutil import atomic_write

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_-]+)\s*=")


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _headers(lines: list[str]) -> list[tuple[int, str, bool]]:
    """(line index, table name, is an array table) of every table header."""
    found = []
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and (match.group(1) == "[[") == (match.group(3) == "]]"):
            found.append((index, match.group(2).strip(), match.group(1) == "[["))
    return found


def _table_span(lines: list[str], table: str, index: int | None, where: str) -> tuple[int, int]:
    """The lines [start, end) of the body of `[table]` (index None) or of the index-th
    `[[table]]`."""
    headers = _headers(lines)
    wanted = [
        (i, position)
        for position, (i, name, array) in enumerate(headers)
        if name == table and array == (index is not None)
    ]
    if index is not None:
        wanted = wanted[index : index + 1]
    if not wanted:
        shown = f"[[{table}]] number {index + 1}" if index is not None else f"[{table}]"
        raise InputError(f"no {shown} table in the profile", where=where)
    start, position = wanted[0]
    end = headers[position + 1][0] if position + 1 < len(headers) else len(lines)
    return start + 1, end


def _value_comment(line: str) -> str:
    """The trailing `# comment` of a `key = value` line, if any (found where the text before
    the `#` is a whole TOML assignment)."""
    for position, char in enumerate(line):
        if char != "#":
            continue
        try:
            tomllib.loads(line[:position])
        except tomllib.TOMLDecodeError:
            continue
        return "  " + line[position:].strip()
    return ""


def _lookup(data: dict[str, Any], table: str, index: int | None) -> Any:
    value = data.get(table)
    if index is not None:
        return value[index] if isinstance(value, list) and len(value) > index else None
    return value


def set_table_key(
    path: Path, table: str, key: str, value: str, *, index: int | None = None
) -> bool:
    """Set `key = "value"` in `[table]` (index None) or the index-th `[[table]]` of the TOML
    file at `path`, replacing the key's line or adding one after the table's last value.
    Returns False when the file already said so (nothing written)."""
    where = str(path)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    start, end = _table_span(lines, table, index, where)
    assignment = f"{key} = {toml_string(value)}"
    for number in range(start, end):
        match = _KEY.match(lines[number])
        if match and match.group("key") == key:
            newline = "\n" if lines[number].endswith("\n") else ""
            comment = _value_comment(lines[number].rstrip("\n"))
            lines[number] = f"{match.group('indent')}{assignment}{comment}{newline}"
            break
    else:
        last = start - 1
        for number in range(start, end):
            stripped = lines[number].strip()
            if stripped and not stripped.startswith("#"):
                last = number
        if last >= 0 and not lines[last].endswith("\n"):
            lines[last] += "\n"
        lines.insert(last + 1, assignment + "\n")
    new_text = "".join(lines)
    if new_text == text:
        return False
    try:
        data = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(
            f"cannot set {key} here without breaking the file ({exc}); edit it by hand",
            where=where,
        ) from None
    entry = _lookup(data, table, index)
    if not isinstance(entry, dict) or entry.get(key) != value:
        raise InputError(
            f"cannot set {key} in this table by editing lines (a multi-line value or a dotted "
            "key?); edit it by hand",
            where=where,
        )
    atomic_write(path, new_text, mode=path.stat().st_mode & 0o777)
    return True


def set_gateway_key(profile_file: Path, position: int, key: str, value: str) -> bool:
    """`key = "value"` for the position-th gateway of the profile: in `[gateway]`, or in the
    position-th `[[gateway]]` when the file lists its sites that way."""
    lines = profile_file.read_text().splitlines()
    sites = any(name == "gateway" and array for _, name, array in _headers(lines))
    index = position if sites else None
    if not sites and position != 0:
        raise InputError(
            f"the profile has one [gateway] table, not a gateway number {position + 1}",
            where=str(profile_file),
        )
    return set_table_key(profile_file, "gateway", key, value, index=index)
