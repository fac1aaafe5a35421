"""Writing WireGuard configs (wg-quick format) line-safely.

Configs are emitted here rather than with the `wireguard-tools` package's model because that model
writes values verbatim (a value with a newline would smuggle in a directive such as `PostUp`), its
key objects show the secret in their repr, and importing it pulls in pyroute2 on every provision.
The package's parser is used to read configs back (tests, `import`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from netsetup.keys import SecretKey

Value = str | int | SecretKey
Section = Sequence[tuple[str, Value]]

_FORBIDDEN = {
    "\n",
    "\r",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
}


class UnsafeConfigValue(ValueError):
    pass


def _safe(text: str) -> str:
    if any(ch in _FORBIDDEN or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise UnsafeConfigValue("a config value contains a control character")
    return text


def _value_text(value: Value, *, reveal: bool) -> str:
    if isinstance(value, SecretKey):
        return value.reveal() if reveal else "(redacted: write the real file with --out FILE)"
    return str(value)


def join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def render_config(
    interface: Section,
    peers: Iterable[tuple[Sequence[str], Section]],
    *,
    header: Sequence[str] = (),
    reveal: bool = True,
) -> str:
    """Render an [Interface] and [Peer] sections; each peer has comment lines and key/values.

    Every key, value and comment is checked for line breaks and control characters, so nothing
    can add a line the caller did not write. `reveal=False` replaces secrets with a marker.
    """
    lines = [f"# {_safe(c)}" for c in header]
    lines.append("[Interface]")
    lines.extend(f"{_safe(k)} = {_safe(_value_text(v, reveal=reveal))}" for k, v in interface)
    for comments, section in peers:
        lines.append("")
        lines.extend(f"# {_safe(c)}" for c in comments)
        lines.append("[Peer]")
        lines.extend(f"{_safe(k)} = {_safe(_value_text(v, reveal=reveal))}" for k, v in section)
    return "\n".join(lines) + "\n"
