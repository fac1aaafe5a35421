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


# A report names the company's hosts, addresses and SSH keys (and with --include-public-ip the
# assistant's address): for its owner only, who attaches it to the ticket. A folder made for it is
# the owner's alone too; a folder that exists keeps its mode.
REPORT_MODE = 0o600
REPORT_FOLDER_MODE = 0o700


def write_reports(report: DiagnoseReport, folder: Path) -> WrittenReports:
    """Write report.md, report.html and report.json into `folder` (created if needed), each
    atomically: a reader never sees half a report. A file in the way is replaced, never written
    through (a symlink named report.html is replaced by the report, its target is untouched)."""
    from netsetup.errors import EnvironmentProblem
    from netsetup.fsutil import atomic_write

    check_report_folder(folder)
    written = []
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=REPORT_FOLDER_MODE)
        for name, text in render_all(report).items():
            target = folder / name
            atomic_write(target, text, mode=REPORT_MODE)
            written.append(target)
    except OSError as exc:  # named by the report's path, not the temporary file's
        raise EnvironmentProblem.from_os_error(exc, where=target) from None
    return WrittenReports(folder, tuple(written))
