"""`netsetup plan` and `netsetup apply` as the admin runs them, where no gateway is reached: the
exit codes and words of what stops them before any connection."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..cli.support import run_main


@pytest.fixture
def acme(acme: Path) -> Path:
    """acme-dental without `ssh`: nothing here may try to reach the example's documentation
    address."""
    profile = acme / "profile.toml"
    profile.write_text(re.sub(r"(?m)^ssh\s*=.*\n", "", profile.read_text()))
    return acme


def test_plan_of_a_gateway_without_ssh(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["plan", str(acme)], capsys)
    assert code == 2
    assert "gateway gateway (no ssh): cannot plan: gateway 'gateway' has no `ssh" in out
    assert "not known: gateway (no plan could be made" in out
    assert "netsetup apply" not in out  # no plan: nothing for apply to apply
    code, out, _ = run_main(["plan", str(acme), "--json"], capsys)
    document = json.loads(out)
    assert document["schema"] == "netsetup.plan/1" and document["exit_code"] == 2
    assert document["in_sync"] is False
    assert "has no `ssh" in document["gateways"][0]["error"]


def test_apply_refusals_before_any_connection(
    acme: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["apply", str(acme), "--adopt"], capsys)
    assert code == 2 and "error: --adopt needs --mode dedicated|agency" in err
    code, out, err = run_main(["apply", str(acme), "--gateway", "nope"], capsys)
    assert code == 2 and "no gateway 'nope' in the profile (it has: gateway)" in err
    code, out, err = run_main(["apply", str(acme), "--confirm-within", "1"], capsys)
    assert code == 2 and "5 to 3600 seconds" in err
    code, out, err = run_main(["apply", str(acme)], capsys)
    assert code == 2 and "gateway gateway (no ssh): refused: gateway 'gateway' has no `ssh" in out
    code, out, err = run_main(["apply", str(acme), "--json"], capsys)
    assert code == 2
    document = json.loads(out)
    assert document["schema"] == "netsetup.apply/1"
    (result,) = document["gateways"]
    assert (
        result["status"] == "refused" and result["outcome"] == "nothing was changed on the gateway"
    )
    audit = (state_dir / "audit.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["action"] == "apply"
