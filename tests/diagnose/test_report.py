"""The renderers over hand-built reports: the verdict first, the problems in fix-first order with
their fix and who acts, the measurements; when and where; the same facts in all three files; no
key and (unless asked) no public address in any of them."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netsetup.diagnose.explain import metric_text, report_view, who_acts
from netsetup.diagnose.privacy import KEY_REMOVED, Redactor, mask_address, scrub_keys
from netsetup.diagnose.report import check_report_folder, render_all, write_reports
from netsetup.diagnose.report.html import render_html
from netsetup.diagnose.report.markdown import render_markdown
from netsetup.diagnose.result import SCHEMA, CheckResult, DiagnoseReport, Outcome, Owner, Status
from netsetup.errors import InputError
from netsetup.keys import generate_keypair

STARTED = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)
CONTACT = "it@acme-dental.example"


def result(check_id: str, outcome: Outcome, duration: float = 0.25) -> CheckResult:
    return CheckResult(check_id, check_id.replace(".", " ").title(), outcome, duration)


def make_report(*checks: CheckResult, interrupted: bool = False) -> DiagnoseReport:
    return DiagnoseReport(
        started=STARTED,
        duration_s=2.5,
        checks=checks,
        host="maria-laptop",
        platform="Windows-11",
        config="wg-acme.conf",
        profile_id="acme-dental",
        interrupted=interrupted,
        company="Acme Dental Practice",
        contact=CONTACT,
    )


def broken_report() -> DiagnoseReport:
    """A report with one problem of each kind, listed in an order that is not fix-first."""
    return make_report(
        result("interfaces", Outcome.passed("uplink eth0, no clash", uplink="eth0")),
        result(
            "dns",
            Outcome.problem(
                Status.warn,
                "company names also go to your home router's DNS",
                "add an NRPT rule for acme-dental.example",
                Owner.it,
                leaked_names=["files.acme-dental.example"],
            ),
        ),
        result(
            "tunnel.handshake",
            Outcome.problem(
                Status.fail,
                "the company never received your packets",
                "let UDP 51820 out in your router's firewall",
                Owner.assistant,
                sent=12,
                received=0,
            ),
        ),
        result("reach.fileserver", Outcome.skip("not checked: tunnel.handshake failed")),
        result(
            "ssh.office-ssh",
            Outcome(Status.unknown, "no answer within the time the run allows (10 s)"),
        ),
        result(
            "tunnel.mtu",
            Outcome.problem(
                Status.fail,
                "big packets are lost on the way",
                "set MTU = 1320 in [Interface]",
                Owner.isp,
                largest=1320,
                black_hole=True,
            ),
        ),
    )


def text_of_html(page: str) -> str:
    """The visible text of the page, tags removed and entities decoded."""
    body = re.sub(r"(?s)<style>.*?</style>", " ", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


# -- the words ----------------------------------------------------------------------------------


def test_problems_come_fix_first_and_the_verdict_is_the_worst() -> None:
    report = broken_report()
    assert report.verdict is Status.fail
    assert [c.id for c in report.problems] == [
        "tunnel.handshake",
        "tunnel.mtu",
        "ssh.office-ssh",
        "dns",
    ]
    assert report.to_envelope()["problems"] == [c.id for c in report.problems]


def test_who_acts_in_plain_words() -> None:
    assert who_acts(Owner.assistant, CONTACT) == "You can fix this"
    assert who_acts(Owner.it, CONTACT) == f"Ask your company's IT ({CONTACT})"
    assert who_acts(Owner.isp, CONTACT) == "Call your internet provider"
    assert who_acts(Owner.it, None) == "Ask your company's IT"


def test_a_pass_or_a_skip_names_nobody_to_act() -> None:
    view = report_view(broken_report())
    by_id = {c.id: c for c in view.checks}
    assert by_id["interfaces"].who is None
    assert by_id["reach.fileserver"].who is None
    unknown = by_id["ssh.office-ssh"].who
    assert unknown == f"Ask your company's IT ({CONTACT}): send them this report"


# -- Markdown -----------------------------------------------------------------------------------


def test_markdown_puts_the_verdict_first_then_the_problems_in_order() -> None:
    text = render_markdown(broken_report())
    first_lines = text.splitlines()[:3]
    assert "FAIL" in first_lines[0] and "Acme Dental Practice" in first_lines[0]
    assert "Something is broken" in first_lines[2]
    positions = [
        text.index(s)
        for s in (
            "the company never received your packets",
            "big packets are lost on the way",
            "no answer within the time",
            "company names also go to",
        )
    ]
    assert positions == sorted(positions)
    assert "**Fix:** let UDP 51820 out in your router's firewall" in text
    assert "**Who:** You can fix this" in text
    assert "**Who:** Call your internet provider" in text
    assert "2026-11-27T09:30:05+00:00" in text and "maria-laptop" in text
    assert "wg-acme.conf" in text and "Windows-11" in text
    assert "Passed 1 of 6: interfaces. Skipped 1: reach.fileserver." in text


def test_markdown_table_cells_survive_pipes_and_newlines() -> None:
    report = make_report(
        result("dns", Outcome.problem(Status.warn, "a | b\nc", "do x", Owner.it, n="1|2"))
    )
    text = render_markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("| `dns`"))
    assert "a \\| b c" in row and "n: 1\\|2" in row
    assert row.count(" | ") == 4  # five cells: nothing split a cell in two


def test_a_healthy_report_says_so_and_lists_no_problem() -> None:
    report = make_report(result("interfaces", Outcome.passed("fine")))
    text = render_markdown(report)
    assert "PASS: Everything works." in text
    assert "What to fix" not in text
    page = text_of_html(render_html(report))
    assert "Everything works." in page and "What to fix" not in page


def test_an_interrupted_run_says_so() -> None:
    report = make_report(
        result("interfaces", Outcome.passed("fine")),
        result("dns", Outcome(Status.unknown, "interrupted (Ctrl-C) before it finished")),
        interrupted=True,
    )
    assert "Interrupted (Ctrl-C)" in render_markdown(report)
    assert "Interrupted (Ctrl-C)" in text_of_html(render_html(report))
    assert json.loads(render_all(report)["report.json"])["interrupted"] is True


# -- HTML ---------------------------------------------------------------------------------------


def test_html_is_one_self_contained_page_for_a_phone() -> None:
    page = render_html(broken_report())
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width" in page
    # nothing is fetched: no scripts, no links to stylesheets, fonts or images, no url()
    assert not re.search(r"<script|<link|<img|<iframe|url\(|@import|src=|href=", page, re.I)


def test_html_verdict_first_then_problems_then_measurements() -> None:
    page = text_of_html(render_html(broken_report()))
    order = [
        page.index("Something is broken"),
        page.index("What to fix"),
        page.index("the company never received your packets"),
        page.index("big packets are lost on the way"),
        page.index("company names also go to"),
        page.index("Measurements"),
        page.index("largest: 1320"),
    ]
    assert order == sorted(order)
    assert "Fix: set MTU = 1320 in [Interface]" in page
    assert "Who: Call your internet provider" in page


def test_html_escapes_what_the_checks_found() -> None:
    report = make_report(
        result("dns", Outcome.problem(Status.fail, "<script>alert(1)</script>", "x", Owner.it))
    )
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page


# -- the same facts in all three ----------------------------------------------------------------


def test_markdown_and_html_carry_every_fact_of_the_json() -> None:
    texts = render_all(broken_report())
    envelope = json.loads(texts["report.json"])
    assert envelope["schema"] == SCHEMA
    markdown = flat(texts["report.md"])
    page = text_of_html(texts["report.html"])
    facts = [envelope["started"], envelope["host"], envelope["platform"], envelope["config"]]
    facts += [envelope["profile"], envelope["company"], envelope["contact"]]
    for check in envelope["checks"]:
        facts += [check["id"], check["summary"], check["status"].upper()]
        facts += [check["fix"]] if check["fix"] else []
        facts += [f"{k}: {metric_text(v)}" for k, v in check["metrics"].items()]
        if check["owner"]:
            facts.append(who_acts(Owner(check["owner"]), envelope["contact"]))
    for fact in facts:
        shown = str(fact)
        assert shown in markdown, f"report.md lacks {shown!r}"
        assert shown in page, f"report.html lacks {shown!r}"


def test_json_envelope_has_the_design_fields() -> None:
    envelope = json.loads(render_all(broken_report())["report.json"])
    for key in ("schema", "started", "duration_s", "verdict", "checks"):
        assert key in envelope
    assert envelope["verdict"] == "fail"
    for check in envelope["checks"]:
        assert {"id", "title", "status", "summary", "metrics", "fix", "owner"} <= set(check)
    assert {c["owner"] for c in envelope["checks"]} == {None, "it", "assistant", "isp"}


# -- privacy ------------------------------------------------------------------------------------


def leaky_report() -> tuple[DiagnoseReport, list[str]]:
    """A report whose checks (wrongly) carry keys and public addresses everywhere they can."""
    pair, other = generate_keypair(), generate_keypair()
    secrets = [pair.private.reveal(), pair.public, other.private.reveal()]
    report = make_report(
        result(
            "tunnel.handshake",
            Outcome.problem(
                Status.fail,
                f"key {secrets[0]} from 203.0.113.77:40211 and [2001:db8:ffe0::77]:4",
                f"ask IT about {secrets[1]}; your address is 8.8.4.4",
                Owner.it,
                psk=secrets[2],
                endpoint="198.51.100.10:51820",
                nested={"seen_from": ["203.0.113.77", "192.168.1.20"], secrets[1]: 1},
                office="192.0.2.31",
                home="10.0.0.7",
                tunnel="198.18.10.5",
                local6="fe80::1",
            ),
        )
    )
    return report, secrets


def company_redactor(show: bool = False) -> Redactor:
    import ipaddress

    nets = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.18.10.0/24", "0.0.0.0/0")]
    return Redactor(nets, show_public_ip=show)


def test_no_key_and_no_public_address_in_any_report(tmp_path: Path) -> None:
    report, secrets = leaky_report()
    written = write_reports(company_redactor().report(report), tmp_path / "out")
    for path in written.files:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"a key in {path.name}"
        for public in ("203.0.113.77", "8.8.4.4", "198.51.100.10", "2001:db8:ffe0::77"):
            assert public not in text, f"{public} in {path.name}"
        # the company's and private addresses stay: they are what IT needs
        for kept in ("192.0.2.31", "10.0.0.7", "198.18.10.5", "192.168.1.20", "fe80::1"):
            assert kept in text, f"{kept} missing from {path.name}"
        assert "203.0.x.x:40211" in text and KEY_REMOVED in text
        assert "2001:db8:x:x:x:x:x:x" in text


def test_include_public_ip_shows_addresses_but_never_keys() -> None:
    report, secrets = leaky_report()
    texts = render_all(company_redactor(show=True).report(report))
    for name, text in texts.items():
        assert "203.0.113.77" in text and "8.8.4.4" in text, name
        assert not any(secret in text for secret in secrets), name
    assert json.loads(texts["report.json"])["public_ip_shown"] is True


def test_the_final_scrub_catches_a_key_the_redactor_never_saw() -> None:
    report, secrets = leaky_report()  # not redacted at all: the renderers' last scrub only
    for name, text in render_all(report).items():
        assert not any(secret in text for secret in secrets), name


def test_scrub_and_mask_leave_look_alikes_alone() -> None:
    fingerprint = "SHA256:" + "A" * 43  # an SSH host key fingerprint: no padding, not a key
    assert scrub_keys(fingerprint) == fingerprint
    longer = "B" * 60 + "="  # a longer base64 blob is not cut in two
    assert scrub_keys(longer) == longer
    redactor = Redactor()
    for text in ("at 2026-11-27T09:30:05+00:00", "version 1.2.3.4.5", "mac 00:11:22:33:44:55"):
        assert redactor.text(text) == text
    assert redactor.text("from 203.0.113.9.") == "from 203.0.x.x."
    import ipaddress

    assert mask_address(ipaddress.ip_address("2001:db8::1")) == "2001:db8:x:x:x:x:x:x"


# -- the folder ---------------------------------------------------------------------------------


def test_reports_are_written_into_a_new_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    written = write_reports(broken_report(), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "report.md"]
    assert written.html == folder / "report.html"
    assert not list(folder.glob(".*.tmp"))


def test_a_file_in_place_of_the_folder_is_refused_with_where(tmp_path: Path) -> None:
    blocker = tmp_path / "report"
    blocker.write_text("mine")
    with pytest.raises(InputError) as refused:
        check_report_folder(blocker)
    assert refused.value.where == str(blocker)
    with pytest.raises(InputError) as refused:
        check_report_folder(blocker / "inside")
    assert refused.value.where == str(blocker)
    assert blocker.read_text() == "mine"


def test_nested_measurements_stay_readable_and_a_skip_line_is_short() -> None:
    from netsetup.diagnose.explain import check_view

    assert metric_text({"a": {"x": 1, "y": [2, 3]}, "b": True}) == "a=(x=1, y=(2, 3)), b=yes"
    skipped = result(
        "dns",
        Outcome.skip("not checked: tunnel.handshake failed; fix that first (long)", blocked_by="t"),
    )
    assert check_view(skipped).line == "not checked: t must work first"
