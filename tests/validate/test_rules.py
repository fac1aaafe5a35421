"""Every rule fires at the marked lines of its fail fixture and stays silent on its pass fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.validate import all_rules
from tests.validate.validate_support import RULE_FIXTURES, located, run_fixture

CODES = [rule.code for rule in all_rules()]
# NS000 reports a check that raised: a bug in netsetup, so no input can be kept that fires it (the
# robustness and fuzz tests assert it never appears)
NO_FAILING_INPUT = {"NS000"}


@pytest.mark.parametrize("code", [c for c in CODES if c not in NO_FAILING_INPUT])
def test_rule_fires_on_its_fail_fixture(code: str, in_tmp: Path) -> None:
    report, expected = run_fixture(RULE_FIXTURES / code / "fail", in_tmp)
    assert {c for _, _, c in expected} == {code}, "the fail fixture marks only its own rule"
    assert located(report) == expected


@pytest.mark.parametrize("code", CODES)
def test_rule_is_silent_on_its_pass_fixture(code: str, in_tmp: Path) -> None:
    report, expected = run_fixture(RULE_FIXTURES / code / "pass", in_tmp)
    assert expected == set()
    assert report.findings == []


def test_every_rule_has_a_doc_and_both_fixtures() -> None:
    for rule in all_rules():
        assert rule.summary and rule.why and rule.failing and rule.passing, rule.code
        assert rule.code in rule.doc and rule.name in rule.doc
        for kind in ("pass",) if rule.code in NO_FAILING_INPUT else ("fail", "pass"):
            folder = RULE_FIXTURES / rule.code / kind
            assert folder.is_dir() and any(folder.rglob("profile.toml")), f"{folder} missing"
    assert sorted(p.name for p in RULE_FIXTURES.iterdir()) == CODES, "fixtures without a rule"


def test_rule_codes_and_names_are_unique_and_stable() -> None:
    rules = all_rules()
    assert len({r.name for r in rules}) == len(rules)
    assert [r.code for r in rules] == sorted(r.code for r in rules)
    by_code = {r.code: r.name for r in rules}
    # names other tools and ignore comments depend on
    assert by_code["NS105"] == "allowedips-identical"
    assert by_code["NS106"] == "allowedips-nested"
    assert by_code["NS201"] == "secret-in-profiles"
