"""The diagnose reports: terminal (text.py), Markdown, HTML and JSON renderers over one report.

Renderers never compute: the words come from `netsetup.diagnose.explain`, the redaction from
`netsetup.diagnose.privacy`. `write_reports` writes the three files of `--report DIR`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netsetup.diagnose.privacy import scrub_keys
from netsetup.diagnose.result import DiagnoseReport
from netsetup.errors import InputError

REPORT_FILES = ("report.md", "report.html", "report.json")


@dataclass(frozen=True)
class WrittenReports:
    folder: Path
    files: tuple[Path, ...]

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def check_report_folder(folder: Path) -> None:
    """Refuse a --report path that cannot become the reports' folder, before anything runs."""
    if folder.exists() and not folder.is_dir():
        raise InputError("--report needs a folder, and this is a file", where=str(folder))
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError("--report: a part of this path is a file", where=str(parent))
            break


def render_all(report: DiagnoseReport) -> dict[str, str]:
    """Each report file's name and text; every text scrubbed of anything shaped like a key."""
    from netsetup.diagnose.report.html import render_html
    from netsetup.diagnose.report.json import render_json
    from netsetup.diagnose.report.markdown import render_markdown

    texts = {
        "report.md": render_markdown(report),
        "report.html": render_html(report),
        "report.json": render_json(report),
    }
    return {name: scrub_keys(text) for name, text in texts.items()}


def write_reports(report: DiagnoseReport, folder: Path) -> WrittenReports:
    """Write report.md, report.html and report.json into `folder` (created if needed), each
    atomically: a reader never sees half a report."""
    from netsetup.fsutil import atomic_write, ensure_dir

    check_report_folder(folder)
    ensure_dir(folder)
    written = []
    for name, text in render_all(report).items():
        atomic_write(folder / name, text)
        written.append(folder / name)
    return WrittenReports(folder, tuple(written))
