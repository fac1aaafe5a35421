"""`# netsetup: ignore[CODE] reason`: on the line, on the table header, and when unused."""

from __future__ import annotations

from pathlib import Path

from netsetup.validate import validate
from tests.validate.validate_support import NOW, RULE_FIXTURES, materialize


def _findings(in_tmp: Path, edit: tuple[str, str]) -> list[tuple[int, str, str]]:
    tree = materialize(RULE_FIXTURES / "NS106" / "fail", in_tmp / "profiles")
    path = tree / "acme" / "profile.toml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1]))
    report = validate([Path("profiles")], now=NOW)
    return [(f.line, f.code, f.message) for f in report.findings]


def test_ignore_on_the_line(in_tmp: Path) -> None:
    edit = ("# <- NS106", "# netsetup: ignore[NS106] the portal rule is kept on purpose")
    assert _findings(in_tmp, edit) == []


def test_ignore_on_the_table_header_covers_the_table(in_tmp: Path) -> None:
    assert _findings(in_tmp, ("[access]\n", "[access]  # netsetup: ignore[NS106] reviewed\n")) == []


def test_ignore_of_another_code_silences_nothing(in_tmp: Path) -> None:
    found = _findings(in_tmp, ("[access]\n", "[access]  # netsetup: ignore[NS107, NS999] x\n"))
    located = [(line, code) for line, code, _ in found]
    assert located == [(17, "NS010"), (17, "NS010"), (20, "NS106")]
    messages = " ".join(message for _, _, message in found)
    assert "ignore[NS107] silences nothing" in messages and "there is no rule NS999" in messages


def test_ignore_in_the_next_table_does_not_reach_back(in_tmp: Path) -> None:
    found = _findings(in_tmp, ("[[portal]]\n", "[[portal]]  # netsetup: ignore[NS106]\n"))
    assert [code for _, code, _ in found] == ["NS106", "NS010"]


def test_results_are_deterministic(in_tmp: Path) -> None:
    materialize(RULE_FIXTURES / "NS105" / "fail", in_tmp / "profiles")
    first = validate([Path("profiles")], now=NOW)
    again = validate([Path("profiles"), Path("profiles/acme")], now=NOW)
    assert first.findings == again.findings and first.findings
