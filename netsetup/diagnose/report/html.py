"""The HTML report: one self-contained page (inline CSS, nothing fetched), readable on a phone."""

from __future__ import annotations

from typing import Any

from netsetup.diagnose.explain import report_view
from netsetup.diagnose.report.phone import phone_calls
from netsetup.diagnose.result import DiagnoseReport

TEMPLATE = "report.html.j2"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("netsetup.diagnose.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: DiagnoseReport) -> str:
    template = _environment().get_template(TEMPLATE)
    return str(template.render(view=report_view(report), phone=phone_calls(report)))
