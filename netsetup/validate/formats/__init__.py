"""One renderer per output format; each turns a Report into the text to print."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from netsetup.errors import InputError
from netsetup.validate.findings import Report
from netsetup.validate.formats import github, json, junit, sarif, text

FORMATS: dict[str, Callable[[Report], str]] = {
    "text": text.render,
    "github": github.render,
    "json": json.render,
    "sarif": sarif.render,
    "junit": junit.render,
}


def choose_format(requested: str | None, environ: Mapping[str, str]) -> str:
    """The format asked for; without one, `github` inside GitHub Actions and `text` elsewhere."""
    if requested is None:
        return "github" if environ.get("GITHUB_ACTIONS") == "true" else "text"
    if requested not in FORMATS:
        raise InputError(
            f"unknown format {requested!r}; choose one of {', '.join(FORMATS)}", where="--format"
        )
    return requested


def render(report: Report, fmt: str) -> str:
    return FORMATS[choose_format(fmt, {})](report)
