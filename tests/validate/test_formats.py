"""Golden files pin every output format; SARIF validates against the official 2.1.0 schema."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from netsetup.validate import FORMATS, Report, render, validate
from netsetup.validate.formats.github import escape_data, escape_property
from tests.validate.validate_support import BROKEN, NOW, materialize

GOLDEN = Path(__file__).resolve().parent / "golden"
REPO = Path(__file__).resolve().parents[2]
# the official schema, committed beside the tests (tests/data/README.md says where it is from)
SARIF_SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"
EXTENSIONS = {
    "text": "txt",
    "github": "github.txt",
    "json": "json",
    "sarif": "sarif",
    "junit": "xml",
}


def broken_report(in_tmp: Path) -> Report:
    materialize(BROKEN, in_tmp / "profiles")
    return validate([Path("profiles")], now=NOW)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_golden(fmt: str, in_tmp: Path) -> None:
    output = render(broken_report(in_tmp), fmt)
    golden = GOLDEN / f"broken.{EXTENSIONS[fmt]}"
    if os.environ.get("NETSETUP_UPDATE_GOLDEN") == "1":
        golden.write_text(output)
    assert output == golden.read_text()


def test_sarif_validates_against_the_official_schema(in_tmp: Path) -> None:
    assert SARIF_SCHEMA.is_file(), f"the SARIF schema is expected at {SARIF_SCHEMA}"
    schema = json.loads(SARIF_SCHEMA.read_text())
    document = json.loads(render(broken_report(in_tmp), "sarif"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=str)
    assert errors == []
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert not result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith(
            "/"
        )


def test_junit_has_one_testcase_per_profile(in_tmp: Path) -> None:
    report = broken_report(in_tmp)
    root = ET.fromstring(render(report, "junit"))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [p.path for p in report.profiles]
    assert all(c.find("failure") is not None for c in cases)


def test_json_envelope(in_tmp: Path) -> None:
    document = json.loads(render(broken_report(in_tmp), "json"))
    assert document["schema"] == "netsetup.validate/1"
    assert set(document["findings"][0]) == {
        "path",
        "line",
        "column",
        "code",
        "rule",
        "severity",
        "message",
    }


def test_clean_report_in_every_format(in_tmp: Path) -> None:
    report = validate([REPO / "profiles"], now=NOW)
    assert report.findings == []
    for fmt in FORMATS:
        assert render(report, fmt)


def test_github_escaping() -> None:
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_no_file_reaches_outside_the_repository() -> None:
    """A fresh clone must test alone: nothing may read the development layout's shared folder."""
    quoted = '"' + "shared" + '"'  # built in pieces, so this file does not name it either
    needles = (".." + "/shared", "shared" + "/schemas", "parent / " + quoted)
    offenders = []
    for path in REPO.rglob("*"):
        if ".git" in path.parts or not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert offenders == []
