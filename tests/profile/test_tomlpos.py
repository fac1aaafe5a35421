"""Positions in TOML text, and reading TOML that breaks tomllib in ways it gives no position for."""

from __future__ import annotations

from netsetup.profile.schema import SYNTAX, parse_toml
from netsetup.profile.tomlpos import KeyLocator, nesting_start_line


def test_nesting_start_is_the_line_of_the_outermost_bracket() -> None:
    text = 'a = 1\n[t]\nb = "[[[[" # [[[[\nc = [\n' + "[" * 100 + "]" * 100 + "\n]\n"
    assert nesting_start_line(text, depth=50) == 4


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    text = "a = '" + "[" * 100 + "'\n" + '"""' + "{" * 100 + '"""\n# ' + "[" * 100 + "\nb = [[1]]\n"
    assert nesting_start_line(text, depth=50) == 1  # none found: line 1


def test_headers_close_their_brackets() -> None:
    text = "[[portal]]\n" * 200 + "x = " + "[" * 80
    assert nesting_start_line(text, depth=64) == 201


def test_deep_nesting_is_a_syntax_issue_with_its_line() -> None:
    text = "[network]\nmtu = 1380\nkeepalive = " + "[" * 5000 + "]" * 5000 + "\n"
    data, issue = parse_toml(text)
    assert data is None and issue is not None
    assert (issue.code, issue.line) == (SYNTAX, 3)
    assert "nested too deeply to read" in issue.message


def test_a_number_too_long_for_python_is_a_syntax_issue_with_its_line() -> None:
    data, issue = parse_toml("[network]\n\nmtu = " + "1" * 5000 + "\n")
    assert data is None and issue is not None
    assert (issue.code, issue.line) == (SYNTAX, 3)
    assert "a number with too many digits" in issue.message


def test_ordinary_syntax_errors_keep_tomllib_words_and_position() -> None:
    data, issue = parse_toml('[company]\nname = "x"\nmtu = 13 80\n')
    assert data is None and issue is not None
    assert (issue.line, issue.column) == (3, 10)
    assert issue.message.startswith("TOML syntax error: ")


def test_locator_survives_nesting_deeper_than_the_stack() -> None:
    text = "a = 1\nb = " + "[" * 5000 + "]" * 5000 + "\nc = 2\n"
    locator = KeyLocator(text)
    assert locator.find(("a",)) == (1, 1)
    assert locator.find(("b",)) == (2, 1)


def test_a_header_places_the_tables_it_opens() -> None:
    text = 'x = 1\n\n[dnsx.records]\n"a.example" = "192.0.2.1"\n[[diagnose.targets]]\nname = "n"\n'
    locator = KeyLocator(text)
    assert locator.line(("dnsx",)) == 3  # unknown table `dnsx`: reported on its header
    assert locator.line(("diagnose",)) == 5
    assert locator.line(("diagnose", "targets", 0, "name")) == 6


def test_an_earlier_table_keeps_its_own_line() -> None:
    text = "[dns]\nservers = []\n\n[dns.records]\n"
    assert KeyLocator(text).line(("dns",)) == 1


def test_inline_tables_and_arrays_are_located() -> None:
    text = 'a = { b = 1, c = [\n  "x",\n  { d = 2 },\n] }\n'
    locator = KeyLocator(text)
    assert locator.find(("a", "b")) == (1, 7)
    assert locator.find(("a", "c", 0)) == (2, 3)
    assert locator.find(("a", "c", 1)) == (3, 3)
    assert locator.find(("a", "c", 1, "d")) == (3, 5)
