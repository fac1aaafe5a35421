"""`lab connect NAME` checks the name before it looks for a lab, adds a client host or provisions:
a bad name is a usage error about the name, whatever state the machine's labs are in."""

from __future__ import annotations

import pytest

from .support import run_main


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", "a\nb", "maria\x00", "m\u0430ria"]
)  # the last: Cyrillic a
def test_a_bad_name_is_refused_first(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["lab", "connect", name, "--host", "new-host"], capsys)
    assert code == 2
    assert err.startswith("error: peer name ") and "lab" not in err.split("(")[0], err
