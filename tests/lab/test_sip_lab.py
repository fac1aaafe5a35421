"""Issue 9, the checks `sip.udp`, `sip.tcp`, `sip.tls`, `sip.alg` and `nat` against the real lab
(Kamailio in the office, the witness's SIP mirror and STUN on the gateway, the home router's
masquerade): healthy, then each fault alone: UDP 5060 dropped in the office, fragments dropped
at the gateway, the kernel's SIP ALG in the home router, a home router that forgets quiet UDP
flows after 10 s (with --long). Diagnose runs in the home namespace, as the assistant would."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from netsetup.lab import Lab
from netsetup.lab.diagnose import run_diagnose

pytestmark = pytest.mark.lab

ONLY = "sip,nat"
DEADLINE_S = 30.0
MASKED = re.compile(r"^\d{1,3}\.\d{1,3}\.x\.x$")


def run_checks(lab: Lab, *extra: str, timeout: float = 90) -> tuple[dict[str, Any], str]:
    """The checks of one `netsetup diagnose --json` run by id, and its stdout."""
    args = ["--json", "--deadline", str(DEADLINE_S), "--only", ONLY, *extra]
    result = run_diagnose(lab, args, timeout=timeout)
    assert result.returncode in (0, 1), result.stderr
    envelope = json.loads(result.stdout)
    return {c["id"]: c for c in envelope["checks"]}, result.stdout


def statuses(checks: dict[str, Any]) -> dict[str, str]:
    return {i: c["status"] for i, c in checks.items()}


@pytest.fixture
def assistant(lab: Lab, connect: Callable[..., str]) -> Iterator[Lab]:
    connect("dana", "dedicated")
    yield lab
    lab.clear()


def _public_v4(lab: Lab) -> str:
    return str(lab.plan.router_wan.v4.ip)


def test_healthy_every_sip_check_and_nat_pass_with_the_address_masked(assistant: Lab) -> None:
    checks, stdout = run_checks(assistant)
    assert statuses(checks) == {
        "sip.udp": "pass",
        "sip.tcp": "pass",
        "sip.tls": "pass",
        "sip.alg": "pass",
        "nat": "pass",
    }, checks
    for transport in ("udp", "tcp", "tls"):
        metrics = checks[f"sip.{transport}"]["metrics"]
        assert metrics["code"] == 200 and metrics["rtt_ms"] > 0
        assert "kamailio" in (metrics["server"] or "").lower()
    assert checks["sip.udp"]["metrics"]["padded_bytes"] >= 1400  # the big one got through too
    assert "acme-dental.example" in checks["sip.tls"]["metrics"]["certificate"]
    alg = checks["sip.alg"]["metrics"]
    assert all(v == "intact" for k, v in alg.items() if k.startswith(("udp_", "tcp_"))), alg
    assert alg.get("udp_5060") == "intact" and alg.get("tcp_5060") == "intact", alg
    nat = checks["nat"]["metrics"]
    assert nat["nat"] is True and MASKED.match(nat["public_address"]), nat
    assert "--long" in checks["nat"]["summary"]
    assert _public_v4(assistant) not in stdout  # nowhere in the report

    shown, _ = run_checks(assistant, "--include-public-ip")
    assert shown["nat"]["metrics"]["public_address"] == _public_v4(assistant)


def test_udp_5060_dropped_in_the_office_fails_udp_with_the_tcp_fix(assistant: Lab) -> None:
    assistant.inject("drop", port=5060, proto="udp", host="office")
    checks, _ = run_checks(assistant)
    udp = checks["sip.udp"]
    assert udp["status"] == "fail", udp
    assert "TCP" in udp["fix"] and "ask IT" in udp["fix"]
    assert udp["metrics"]["works_over"] in ("tcp", "tls")
    assert checks["sip.tcp"]["status"] == "pass"
    assert checks["sip.tls"]["status"] == "pass"
    assert checks["sip.alg"]["status"] == "pass" and checks["nat"]["status"] == "pass"


def test_fragments_dropped_warns_udp_to_switch_to_tcp(assistant: Lab) -> None:
    assistant.inject("drop-fragments")
    checks, _ = run_checks(assistant)
    udp = checks["sip.udp"]
    assert udp["status"] == "warn", udp
    assert "TCP or TLS" in udp["fix"] and udp["owner"] == "assistant"
    assert udp["metrics"]["code"] == 200  # the small OPTIONS still answered
    assert {i: s for i, s in statuses(checks).items() if i != "sip.udp"} == {
        "sip.tcp": "pass",
        "sip.tls": "pass",
        "sip.alg": "pass",
        "nat": "pass",
    }


def test_the_routers_sip_alg_warns_sip_alg_with_the_fix(assistant: Lab) -> None:
    """A warn, not a fail: calls through the tunnel never meet the ALG."""
    assistant.inject("sip-alg")
    checks, _ = run_checks(assistant)
    alg = checks["sip.alg"]
    assert alg["status"] == "warn", alg
    assert "SIP ALG" in alg["fix"] and "TLS" in alg["fix"] and alg["owner"] == "assistant"
    assert "outside the tunnel" in alg["fix"]
    assert alg["metrics"]["udp_5060"] == "rewritten"
    assert any(f.startswith(("via", "contact", "sdp")) for f in alg["metrics"]["udp_5060_changed"])
    control = f"udp_{assistant.profile().gateway.witness_port}"
    assert alg["metrics"][control] == "intact"  # the control: the mirror changes nothing
    # through the tunnel the ALG sees only WireGuard: the PBX checks are untouched
    assert {i: s for i, s in statuses(checks).items() if i != "sip.alg"} == {
        "sip.udp": "pass",
        "sip.tcp": "pass",
        "sip.tls": "pass",
        "nat": "pass",
    }


def test_a_short_nat_timeout_warns_with_long(assistant: Lab) -> None:
    assistant.inject("nat-timeout", seconds=10)
    args = ["--json", "--deadline", "200", "--only", "nat", "--long"]
    result = run_diagnose(assistant, args, timeout=260)
    assert result.returncode in (0, 1), result.stderr
    nat = {c["id"]: c for c in json.loads(result.stdout)["checks"]}["nat"]
    assert nat["status"] == "warn", nat
    assert nat["metrics"]["lifetime_below_s"] == 15  # gone after 15 s idle: less than keepalive 25
    assert nat["metrics"]["keepalive_s"] == 25
    assert "PersistentKeepalive" in nat["fix"] and "incoming call" in nat["summary"]


def test_the_labs_router_keeps_a_binding_longer_than_the_keepalive(assistant: Lab) -> None:
    """The control of the test above: the router's default UDP timeout (30 s here) outlives the
    tunnel's keepalive, so --long passes and tells the interval found."""
    args = ["--json", "--deadline", "200", "--only", "nat", "--long"]
    result = run_diagnose(assistant, args, timeout=260)
    assert result.returncode == 0, result.stderr
    nat = {c["id"]: c for c in json.loads(result.stdout)["checks"]}["nat"]
    assert nat["status"] == "pass", nat
    assert nat["metrics"]["lifetime_at_least_s"] >= 25
    assert "longer than the tunnel's keepalive (25 s)" in nat["summary"]
