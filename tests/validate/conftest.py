"""Fixtures of the validate tests; the helpers live in validate_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from tmp_path so that reported paths are short and relative, as in CI."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
