"""Help texts say what the program does: nothing it does not have, nothing less than it gives."""

from __future__ import annotations

import re

import pytest

from .support import run_main


def test_the_top_level_help_names_only_what_there_is(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    commands = set(re.findall(r"^  ([a-z]+)  ", out, re.MULTILINE))
    assert {"provision", "validate", "lab"} <= commands
    # "diagnostics" promised a command that does not exist (the profile's [diagnose] targets
    # are only what the lab checks)
    assert "diagnos" not in out.lower() or "diagnose" in commands


def test_provision_says_what_agency_reaches(capsys: pytest.CaptureFixture[str]) -> None:
    """README: agency reaches the portal and the phone system (every mode gets VoIP and DNS);
    'the portal only' made an admin expect the phone not to work."""
    code, out, _ = run_main(["provision", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "the portal only" not in text
    assert re.search(r"agency: the portal and the phone", text)
