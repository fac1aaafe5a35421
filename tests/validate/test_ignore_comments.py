"""Only a real TOML comment is an ignore: not the same text inside a string value."""

from __future__ import annotations

from netsetup.validate import all_rules
from netsetup.validate.findings import Finding, Severity
from netsetup.validate.ignores import apply_ignores

PATH = "profiles/acme/profile.toml"


def _kept(text: str, line: int) -> list[tuple[int, str]]:
    all_rules()
    finding = Finding(PATH, line, 1, "NS106", "allowedips-nested", Severity.WARNING, "nested")
    return [(f.line, f.code) for f in apply_ignores([finding], {PATH: text})]


def test_a_comment_silences() -> None:
    text = '[company]\nname = "a # b"  # netsetup: ignore[NS106] reviewed\n'
    assert _kept(text, 2) == []


def test_a_basic_string_is_not_a_comment() -> None:
    assert _kept('[company]\nname = "x # netsetup: ignore[NS106]"\n', 2) == [(2, "NS106")]


def test_a_literal_string_is_not_a_comment() -> None:
    assert _kept("[company]\nname = 'x # netsetup: ignore[NS106]'\n", 2) == [(2, "NS106")]


def test_an_escaped_quote_does_not_end_the_string() -> None:
    text = '[company]\nname = "say \\" # netsetup: ignore[NS106]"\n'
    assert _kept(text, 2) == [(2, "NS106")]


def test_a_quoted_key_is_not_a_comment() -> None:
    assert _kept('[company]\n"k # netsetup: ignore[NS106]" = 1\n', 2) == [(2, "NS106")]


def test_multi_line_strings_are_not_comments() -> None:
    text = (
        "[company]\n"
        'notes = """\n'
        "# netsetup: ignore[NS106]\n"
        '"""\n'
        "other = '''\n"
        "[access]  # netsetup: ignore[NS106]\n"
        "'''\n"
        "x = 1\n"
    )
    assert _kept(text, 3) == [(3, "NS106")]
    # neither is the `[access]` inside the literal string a table header for line 8
    assert _kept(text, 8) == [(8, "NS106")]


def test_a_bracket_line_inside_an_array_is_not_a_table_header() -> None:
    text = "[access]  # netsetup: ignore[NS106] reviewed\nnested = [\n  [1, 2],\n  3,\n]\n"
    assert _kept(text, 4) == []  # line 4 still belongs to [access]


def test_a_comment_after_a_closed_multi_line_string_counts() -> None:
    text = '[company]\nnotes = """a\nb"""  # netsetup: ignore[NS106] reviewed\n'
    assert _kept(text, 3) == []
