"""No input stops validate: each bad file becomes a finding on its file and line, and the other
files are still checked. The fuzz test throws random TOML-ish text and raw bytes at it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsetup.validate import Report, all_rules, engine, registry, validate
from tests.validate.validate_support import NOW

REPO = Path(__file__).resolve().parents[2]
PROFILE = (REPO / "profiles" / "acme-dental" / "profile.toml").read_text()
PEER = """# Written by netsetup.
name = "alice"
mode = "dedicated"
status = "active"
public_key = "K9gGyX8OAK8aH8Myj6djqSaXI8jbj6xPk69x2xhtbpA="
key_origin = "generated"
address_v4 = "198.18.10.10"
address_v6 = "2001:db8:10::10"
created = 2026-01-10T09:00:00Z
"""
# A second profile with a planted mistake: found whatever happens to the first one.
CONTROL_PEER = PEER.replace('"dedicated"', '"temporary"').replace("alice", "zoe")
CONTROL = ("profiles/zz-control/peers/zoe.toml", 3, "NS009")


def build(
    root: Path, profile: str | bytes | None = PROFILE, peer: str | bytes | None = PEER
) -> Path:
    """profiles/acme (the file under test) and profiles/zz-control (a planted NS009)."""
    acme = root / "profiles" / "acme"
    (acme / "peers").mkdir(parents=True)
    for path, content in ((acme / "profile.toml", profile), (acme / "peers" / "alice.toml", peer)):
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            path.write_bytes(content)
    control = root / "profiles" / "zz-control"
    (control / "peers").mkdir(parents=True)
    (control / "profile.toml").write_text(
        PROFILE.replace("198.18.10.0/24", "198.18.99.0/24")
        .replace("2001:db8:10::/64", "2001:db8:99::/64")
        .replace(
            "MDKTGWX4d3ADlYiRA1ol9W47Rb6pKJFUAwDdD/XyIHI=",
            "bf57IhWgfjxe7HgNE7Oaz9wfgOLa0AGcoOWFHkA9smQ=",
        )
    )
    (control / "peers" / "zoe.toml").write_text(CONTROL_PEER)
    return root / "profiles"


def found(report: Report) -> set[tuple[str, int, str]]:
    return {(f.path, f.line, f.code) for f in report.findings}


def message(report: Report, path: str, code: str) -> str:
    return " | ".join(f.message for f in report.findings if f.path == path and f.code == code)


def with_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@dataclass(frozen=True)
class Case:
    name: str
    profile: str | bytes | None
    peer: str | bytes | None
    where: tuple[str, int, str] | None  # (file, line, code) expected, or None: only "no crash"
    words: str = ""  # in that finding's message


P = "profiles/acme/profile.toml"
A = "profiles/acme/peers/alice.toml"
DEEP = "deep = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLE = "deep = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"
HUGE_INT = "9" * 5000


def _peer_time(key: str, value: str, *, revoked: bool = False) -> str:
    text = PEER.replace('status = "active"', 'status = "revoked"') if revoked else PEER
    if key == "created":
        return text.replace("2026-01-10T09:00:00Z", value)
    return text + f"{key} = {value}\n"


CASES = [
    Case("nested 5,000 deep", DEEP + PROFILE, PEER, (P, 1, "NS001"), "nested too deeply"),
    Case(
        "inline tables nested 3,000 deep",
        PROFILE + "\n[extra]\n" + DEEP_TABLE,
        PEER,
        (P, PROFILE.count("\n") + 3, "NS001"),
        "nested too deeply",
    ),
    Case(
        "integer of 5,000 digits",
        with_line(PROFILE, "mtu = 1380", f"mtu = {HUGE_INT}"),
        PEER,
        (P, line_of(PROFILE, "mtu = 1380"), "NS001"),
        "too many digits",
    ),
    Case(
        "tunnel 255.255.255.255/32",
        with_line(PROFILE, 'tunnel_v4 = "198.18.10.0/24"', 'tunnel_v4 = "255.255.255.255/32"'),
        PEER,
        (P, line_of(PROFILE, "tunnel_v4"), "NS007"),
        "broadcast",
    ),
    Case(
        "tunnel_v6 at the top of the space",
        with_line(
            PROFILE,
            'tunnel_v6 = "2001:db8:10::/64"',
            'tunnel_v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"',
        ),
        PEER,
        (P, line_of(PROFILE, "tunnel_v6"), "NS007"),
        "multicast",
    ),
    Case(
        "office and agency 255.255.255.255/32",
        with_line(
            with_line(PROFILE, '"192.0.2.0/24", "2001:db8:20::/64"', '"255.255.255.255/32"'),
            '"192.0.2.20/32 tcp/443"',
            '"255.255.255.255/32 tcp/443"',
        ),
        PEER,
        None,
    ),
    Case(
        "everything: 0.0.0.0/0 and ::/0",
        with_line(PROFILE, '"192.0.2.0/24", "2001:db8:20::/64"', '"0.0.0.0/0", "::/0"'),
        PEER,
        None,
    ),
    Case("created in year 9999", PROFILE, _peer_time("created", "9999-12-31T00:00:00Z"), None),
    Case("expires in year 9999", PROFILE, _peer_time("expires", "9999-12-31T00:00:00Z"), None),
    Case(
        "revoked in year 9999 (quarantine beyond 9999)",
        PROFILE,
        _peer_time("revoked", "9999-12-31T00:00:00Z", revoked=True),
        None,
    ),
    Case(
        "revoked in year 1",
        PROFILE,
        _peer_time("revoked", "0001-01-01T00:00:00Z", revoked=True),
        None,
    ),
    Case(
        "expires before year 1 in UTC",
        PROFILE,
        _peer_time("expires", "0001-01-01T00:00:00+14:00"),
        (A, PEER.count("\n") + 1, "NS009"),
        "outside the years 1-9999",
    ),
    Case(
        "revoked after year 9999 in UTC",
        PROFILE,
        _peer_time("revoked", "9999-12-31T23:59:59-14:00", revoked=True),
        (A, PEER.count("\n") + 1, "NS009"),
        "outside the years 1-9999",
    ),
    Case(
        "NaN and inf",
        with_line(
            with_line(PROFILE, "mtu = 1380", "mtu = nan"), "keepalive = 25", "keepalive = inf"
        ),
        PEER,
        (P, line_of(PROFILE, "mtu = 1380"), "NS004"),
    ),
    Case(
        "empty strings",
        with_line(PROFILE, 'endpoint = "vpn.acme-dental.example:51820"', 'endpoint = ""'),
        PEER.replace('"198.18.10.10"', '""'),
        (A, line_of(PEER, "address_v4"), "NS007"),
    ),
    Case("empty files", "", "", (A, 1, "NS003")),
    Case(
        "a byte order mark",
        b"\xef\xbb\xbf" + PROFILE.encode(),
        PEER,
        (P, 1, "NS001"),
        "byte order mark",
    ),
    Case(
        "invalid UTF-8 on line 3",
        PROFILE,
        b"# ok\n# ok\n# \xff\xfe\n" + PEER.encode(),
        (A, 3, "NS001"),
        "not UTF-8",
    ),
    Case(
        "a 10 MB profile", PROFILE + "# " + "x" * 10_000_000 + "\n", PEER, (P, 1, "NS001"), "bytes"
    ),
    Case("a 10 MB peer", PROFILE, PEER + "# " + "x" * 10_000_000 + "\n", (A, 1, "NS001"), "bytes"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_bad_file_is_a_finding_and_the_rest_is_still_checked(case: Case, in_tmp: Path) -> None:
    build(in_tmp, case.profile, case.peer)
    report = validate([Path("profiles")], now=NOW)
    assert CONTROL in found(report), "the other profile was not checked"
    assert [f for f in report.findings if f.code == "NS000"] == []
    if case.where is not None:
        assert case.where in found(report), sorted(found(report))
        assert case.words in message(report, case.where[0], case.where[2])


def _fifo(peers: Path) -> None:
    os.mkfifo(peers / "bob.toml")


def _loop(peers: Path) -> None:
    os.symlink("bob.toml", peers / "bob.toml")


def _broken(peers: Path) -> None:
    os.symlink("/nonexistent/bob.toml", peers / "bob.toml")


def _directory(peers: Path) -> None:
    (peers / "bob.toml").mkdir()
    (peers / "bob.toml" / "notes.txt").write_text("a folder that looks like a peer file\n")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_fifo, "a FIFO"),
        (_loop, "a symlink loop"),
        (_broken, "a broken symlink"),
        (_directory, "a directory"),
    ],
    ids=["fifo", "symlink-loop", "broken-symlink", "directory"],
)
def test_a_peer_file_that_is_not_a_file(
    make: Callable[[Path], None], words: str, in_tmp: Path
) -> None:
    profiles = build(in_tmp)
    make(profiles / "acme" / "peers")
    report = validate([Path("profiles")], now=NOW)  # a FIFO would block here before the fix
    assert ("profiles/acme/peers/bob.toml", 1, "NS001") in found(report)
    assert words in message(report, "profiles/acme/peers/bob.toml", "NS001")
    assert CONTROL in found(report)


@pytest.mark.parametrize("kind", ["fifo", "symlink-loop", "directory"])
def test_a_profile_file_that_is_not_a_file(kind: str, in_tmp: Path) -> None:
    profiles = build(in_tmp)
    odd = profiles / "odd"
    odd.mkdir()
    if kind == "fifo":
        os.mkfifo(odd / "profile.toml")
    elif kind == "symlink-loop":
        os.symlink("profile.toml", odd / "profile.toml")
    else:
        (odd / "profile.toml").mkdir()
    report = validate([Path("profiles")], now=NOW)
    assert ("profiles/odd/profile.toml", 1, "NS001") in found(report)
    assert CONTROL in found(report)


def test_a_fifo_beside_the_profiles_is_skipped_not_waited_on(in_tmp: Path) -> None:
    profiles = build(in_tmp)
    os.mkfifo(profiles / "acme" / "notes")
    report = validate([Path("profiles")], now=NOW)
    assert CONTROL in found(report)


def test_a_check_that_raises_costs_that_check_only(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net: a bug in one check is an NS000 on the profile, never a lost run."""
    secret_text = "K9gGyX8OAK8aH8Myj6djqSaXI8jbj6xPk69x2xhtbpA="

    def broken_check(entry: object, ctx: object) -> None:
        if "acme" in str(getattr(entry, "directory", "")):
            raise KeyError(secret_text)

    build(in_tmp)
    all_rules()  # registers every check before the list is extended
    monkeypatch.setattr(engine, "PROFILE_CHECKS", [*registry.PROFILE_CHECKS, broken_check])
    monkeypatch.delenv("NETSETUP_DEBUG", raising=False)
    report = validate([Path("profiles")], now=NOW)
    failed = [f for f in report.findings if f.code == "NS000"]
    assert [(f.path, f.line) for f in failed] == [(P, 1)]
    assert "KeyError" in failed[0].message and "broken_check" in failed[0].message
    assert secret_text not in failed[0].message
    assert CONTROL in found(report) and report.failed


def test_a_parser_that_raises_costs_that_file_only(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netsetup.validate import loader

    real = loader.parse_profile_data

    def parse(data: dict[str, object], directory: Path) -> object:
        if directory.name == "acme":
            raise IndexError("boom")
        return real(data, directory)  # type: ignore[arg-type]

    build(in_tmp)
    monkeypatch.setattr(loader, "parse_profile_data", parse)
    monkeypatch.delenv("NETSETUP_DEBUG", raising=False)
    report = validate([Path("profiles")], now=NOW)
    assert (P, 1, "NS000") in found(report)
    assert CONTROL in found(report)


# The fuzz test starts from a valid profile and peer and mutates them: a hostile value for an
# existing key (so the schema and the rules see it, not only the TOML parser), a line inserted or
# deleted, raw bytes spliced in; or it sends random bytes outright.
VALUES = [
    '""', "0", "-1", "9" * 40, "9" * 5000, "nan", "-inf", "1e999", "true", "[]", "{}",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "9999-12-31", "00:00:00", '"255.255.255.255/32"',
    '"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"', '"0.0.0.0/0"', '"::/0"',
    '["255.255.255.255/32 tcp/1-65535", "::/0"]', '"revoked"', '"agency"', '"x:0"',
    "[" * 600 + "]" * 600, "{a=" * 300 + "1" + "}" * 300, '"\\u0000"',
]  # fmt: skip
LINES = [
    "[network", "# comment", "", "\r", "\ufeff", "a = 1 = 2", "[gateway]", "[[portal]]",
    "[dns.records]", '"""', "x = [1,", 'status = "revoked"', "revoked = 9999-12-31T23:59:59Z",
    "expires = 0001-01-01T00:00:00+14:00",
]  # fmt: skip
MUTATION = st.tuples(
    st.sampled_from(["value", "insert", "delete", "bytes"]),
    st.integers(0, 80),
    st.sampled_from(VALUES),
    st.sampled_from(LINES),
    st.binary(max_size=6),
)


def mutate(text: str, mutations: list[tuple[str, int, str, str, bytes]]) -> bytes:
    lines = [line.encode() for line in text.split("\n")]
    for kind, index, value, line, raw in mutations:
        at = index % len(lines) if lines else 0
        if kind == "value" and lines and b" = " in lines[at]:
            lines[at] = lines[at].split(b" = ", 1)[0] + b" = " + value.encode()
        elif kind == "insert":
            lines.insert(at, line.encode())
        elif kind == "delete" and lines:
            del lines[at]
        elif kind == "bytes" and lines:
            lines[at] = lines[at][: index % 7] + raw + lines[at][index % 7 :]
    return b"\n".join(lines)


FUZZED = st.one_of(
    st.lists(MUTATION, min_size=1, max_size=5),
    st.binary(max_size=300),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(profile=FUZZED, peer=FUZZED)
def test_fuzz_validate_never_raises(
    profile: list[tuple[str, int, str, str, bytes]] | bytes,
    peer: list[tuple[str, int, str, str, bytes]] | bytes,
) -> None:
    profile_bytes = profile if isinstance(profile, bytes) else mutate(PROFILE, profile)
    peer_bytes = peer if isinstance(peer, bytes) else mutate(PEER, peer)
    before = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative paths, as in CI (no function-scoped fixture under hypothesis)
        try:
            build(Path(tmp), profile_bytes, peer_bytes)
            report = validate([Path("profiles")], now=NOW)
        finally:
            os.chdir(before)
    assert [f for f in report.findings if f.code == "NS000"] == []
    assert CONTROL in found(report)


def test_a_file_name_that_is_not_utf8_is_shown_in_every_format(in_tmp: Path) -> None:
    from netsetup.validate import FORMATS, render

    profiles = build(in_tmp)
    odd = os.fsencode(profiles / "acme" / "peers") + b"/\xff\xfe.toml"
    with open(odd, "w") as handle:
        handle.write('name = "x"\n')
    report = validate([Path("profiles")], now=NOW)
    shown = [f for f in report.findings if "\\xff\\xfe" in f.path]
    assert shown and all(f.path == "profiles/acme/peers/\\xff\\xfe.toml" for f in shown)
    for fmt in FORMATS:
        render(report, fmt).encode("utf-8")  # strict: a surrogate here would break the output


def test_the_command_reports_deep_nesting_as_a_finding(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `error: internal error (RecursionError)`, exit 2, and no other file reported."""
    from tests.validate.validate_support import run_cli

    build(in_tmp, DEEP + PROFILE)
    code, out, err = run_cli(["validate", "profiles", "--now", "2026-06-01T00:00:00Z"], capsys)
    assert code == 1, err
    assert "internal error" not in err
    # the line where the nesting starts
    assert f"{P}:1:1: NS001 [error] TOML syntax error: arrays or" in out
    assert f"{CONTROL[0]}:{CONTROL[1]}:" in out
