"""The terminal: each check's line as it finishes (under a spinner on a terminal), then the
verdict first, the problems in fix-first order with their fix and who acts, and one line for what
passed. Plain text without colour when the output is not a terminal (a pipe, a file, a test)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from netsetup.diagnose.explain import CheckView, ReportView
from netsetup.diagnose.privacy import scrub_keys
from netsetup.diagnose.report.phone import PhoneCalls
from netsetup.errors import one_line

STYLES = {
    "pass": "green",
    "warn": "yellow",
    "unknown": "magenta",
    "fail": "bold red",
    "skip": "dim",
}
LABEL_WIDTH = 8


class Terminal:
    """Where diagnose talks to the person who runs it (rich, imported only here)."""

    def __init__(self, out: TextIO, is_terminal: bool) -> None:
        from rich.console import Console

        self.is_terminal = is_terminal
        self.console = Console(
            file=out,
            force_terminal=is_terminal,
            color_system="auto" if is_terminal else None,
            no_color=not is_terminal,
            highlight=False,
            emoji=False,
            soft_wrap=not is_terminal,  # a pipe or file gets whole lines, never rewrapped
        )

    def _text(self, *parts: tuple[str, str] | str) -> Any:
        from rich.text import Text

        text = Text()
        for part in parts:
            value, style = (part, "") if isinstance(part, str) else part
            text.append(scrub_keys(value), style=style)
        return text

    def line(self, *parts: tuple[str, str] | str) -> None:
        self.console.print(self._text(*parts))

    def hanging(self, head: tuple[str, str] | str, *parts: tuple[str, str] | str) -> None:
        """`head`, then `parts` wrapped under themselves on a terminal (one line elsewhere)."""
        if not self.is_terminal:
            self.line(head, *parts)
            return
        from rich.table import Table

        grid = Table.grid()
        grid.add_column(no_wrap=True)
        grid.add_column()
        grid.add_row(self._text(head), self._text(*parts))
        self.console.print(grid)

    @contextlib.contextmanager
    def progress(self, what: str) -> Iterator[Callable[[str], None]]:
        """A spinner with `what` while the checks run (only on a terminal); the context gives a
        function that changes its text (a new phase of the run)."""
        if not self.is_terminal:
            yield lambda text: None
            return
        with self.console.status(scrub_keys(what)) as status:
            yield lambda text: status.update(scrub_keys(text))

    def check(self, check: CheckView) -> None:
        """One finished check."""
        label = (check.label.ljust(LABEL_WIDTH), STYLES[check.status])
        self.hanging(label, (check.id, "bold"), f"  {check.line}", (f"  ({check.duration})", "dim"))

    def summary(
        self, view: ReportView, report_html: Path | None = None, phone: PhoneCalls | None = None
    ) -> None:
        """The verdict first, then what to fix first, then phone calls (when VoIP checks ran),
        then one line for what passed."""
        self.console.print()
        if view.interrupted:
            self.line((view.interrupted, "yellow"))
        self.line((f"{view.verdict_label}: ", STYLES[view.verdict]), (view.headline, "bold"))
        for number, check in enumerate(view.problems, start=1):
            self._problem(number, check)
        if phone is not None:
            self._phone(phone)
        self.console.print()
        self.line((view.passed_line, "dim"))
        if report_html is not None:
            self.line(
                "Report: ",
                (one_line(str(report_html)), "bold"),
                " (and report.md, report.json beside it): send it to your company's IT.",
            )

    def _phone(self, phone: PhoneCalls) -> None:
        self.console.print()
        mos = f"MOS {phone.mos:.2f} (estimate): " if phone.mos is not None else ""
        self.line("Phone calls: ", (f"{mos}{phone.verdict}", STYLES.get(phone.status, "")))
        if phone.fix:
            self.hanging("   Fix: ", (phone.fix, "bold"))
        if phone.who:
            self.hanging("   Who: ", phone.who)
        facts = "; ".join(f"{label} {value}" for label, value in phone.facts)
        if facts:
            self.hanging("   ", (facts, "dim"))
        if phone.mos is not None:
            self.hanging("   ", ("G.107 E-model estimate; details in the report", "dim"))

    def _problem(self, number: int, check: CheckView) -> None:
        self.console.print()
        self.line(
            f"{number}. ",
            (check.label, STYLES[check.status]),
            " ",
            (check.id, "bold"),
            f": {check.summary}",
        )
        if check.fix:
            self.hanging("   Fix: ", (check.fix, "bold"))
        if check.who:
            self.hanging("   Who: ", check.who)
