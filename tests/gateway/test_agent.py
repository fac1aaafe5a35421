"""The gateway agent's checks, without a gateway: arguments, the stage folder, staged files, the
JSON it answers. What it does to wg and nft is tested in the lab (tests/lab/test_gateway_agent.py)
against the real tools, not against fakes."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.gateway import agent
from netsetup.gateway.agent import AgentError, Invoker

AGENT = Path(agent.__file__)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files owned by root)")


@pytest.fixture(autouse=True)
def _agent_process_state_put_back() -> Iterator[None]:
    """`agent.main()` sets umask 0o077 and ignores SIGHUP for its own process, as the program
    should; these tests call it in-process, so both are put back after each test."""
    import signal

    umask = os.umask(0o022)
    os.umask(umask)
    hangup = signal.getsignal(signal.SIGHUP)
    yield
    os.umask(umask)
    signal.signal(signal.SIGHUP, hangup)


def run_agent(*args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-I", str(AGENT), *args], capture_output=True, text=True, timeout=30
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # exactly one JSON object, nothing else
    assert done.stderr == ""
    answer = json.loads(lines[0])
    assert isinstance(answer, dict)
    return done.returncode, answer


def test_the_agent_is_standalone_stdlib_python() -> None:
    source = AGENT.read_text()
    assert source.splitlines()[0] == "#!/usr/bin/python3 -I"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "no imports found: the check would prove nothing"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # the agent's tools run without a shell
    assert "shell=True" not in source and "os.system" not in source


def test_version_answers_json() -> None:
    assert run_agent("version") == (0, {"ok": True, "version": 1})


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "netsetup-gateway version|read"),
        (("format-disk",), "netsetup-gateway version|read"),
        (("read", "--interface", "wg0"), "missing --table"),
        (("read", "--interface", "wg0", "--interface", "wg1", "--table", "t"), "given twice"),
        (("read", "--interface", "wg0", "--table", "t", "--shell", "x"), "unknown argument"),
        (("read", "--interface", "../../etc/passwd", "--table", "t"), "invalid interface"),
        (("read", "--interface", "wg0; reboot", "--table", "t"), "invalid interface"),
        (("read", "--interface", "..", "--table", "t"), "invalid interface"),
        (("read", "--interface", "a-very-long-interface", "--table", "t"), "invalid interface"),
        (("read", "--interface", "wg0", "--table", "t; flush ruleset"), "invalid table"),
        (("confirm", "--interface", "wg0", "--token", "../x"), "invalid token"),
        (("rollback", "--interface", "wg0", "--token", "ABC"), "invalid token"),
    ],
)
def test_hostile_arguments_are_refused_before_anything_runs(
    args: tuple[str, ...], said: str
) -> None:
    code, answer = run_agent(*args)
    assert code == 1
    assert answer["ok"] is False and answer["step"] == "usage" and answer["restored"] is True
    assert said in str(answer["error"])


def commit_args(**changed: str) -> list[str]:
    options = {
        "interface": "wg0",
        "table": "netsetup_wg0",
        "profile-id": "acme-dental",
        "stage": "/var/lib/netsetup/stage/nobody-here",
        "confirm-within": "60",
    }
    options.update(changed)
    return ["commit", *(x for name, value in options.items() for x in (f"--{name}", value))]


@pytest.mark.parametrize(
    ("changed", "said"),
    [
        ({"profile-id": "../../etc"}, "invalid profile id"),
        ({"profile-id": "Acme"}, "invalid profile id"),
        ({"confirm-within": "0"}, "--confirm-within"),
        ({"confirm-within": "1e9"}, "--confirm-within"),
        # any user: the stage folder must be exactly /var/lib/netsetup/stage/<that user>
        ({"stage": "/var/lib/netsetup/stage/../../../etc"}, ""),
    ],
)
def test_commit_arguments_are_checked(changed: dict[str, str], said: str) -> None:
    code, answer = run_agent(*commit_args(**changed))
    assert code == 1 and answer["ok"] is False and answer["step"] == "usage", answer
    assert said in str(answer["error"])


# -- the stage folder and what is staged in it --------------------------------------------------


def me() -> Invoker:
    import pwd

    return Invoker(os.getuid(), pwd.getpwuid(os.getuid()).pw_name)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    root = tmp_path / "stage"
    root.mkdir(mode=0o755)
    folder = root / me().name
    folder.mkdir(mode=0o700)
    return folder


@as_root
def test_the_stage_folder_must_be_the_invokers_own(stage: Path) -> None:
    root = str(stage.parent)
    assert agent.check_stage_dir(str(stage), me(), root) == str(stage)
    for wrong in (f"{root}/../{stage.name}", f"{root}/other", f"{stage}/"):
        with pytest.raises(AgentError, match="must be"):
            agent.check_stage_dir(wrong, me(), root)
    stage.chmod(0o755)
    with pytest.raises(AgentError, match="0700"):
        agent.check_stage_dir(str(stage), me(), root)


@as_root
def test_a_symlinked_stage_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    root.mkdir(mode=0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (root / me().name).symlink_to(elsewhere)
    with pytest.raises(AgentError, match="link"):
        agent.check_stage_dir(str(root / me().name), me(), str(root))


@as_root
def test_a_stage_root_others_may_write_is_refused(stage: Path) -> None:
    stage.parent.chmod(0o777)
    with pytest.raises(AgentError, match="writable only"):
        agent.check_stage_dir(str(stage), me(), str(stage.parent))


def test_staged_files_must_be_plain_files_of_the_invoker(stage: Path, tmp_path: Path) -> None:
    (stage / "wg0.conf").write_bytes(b"[Interface]\n")
    assert agent.read_staged(str(stage), "wg0.conf", me()) == b"[Interface]\n"
    assert agent.read_staged(str(stage), "absent.conf", me()) is None
    secret = tmp_path / "secret"
    secret.write_text("not for the admin")
    (stage / "link.conf").symlink_to(secret)
    with pytest.raises(AgentError, match="link"):
        agent.read_staged(str(stage), "link.conf", me())
    os.link(secret, stage / "hard.conf")
    with pytest.raises(AgentError, match="plain file"):
        agent.read_staged(str(stage), "hard.conf", me())
    os.mkfifo(stage / "fifo.conf")
    with pytest.raises(AgentError, match="plain file"):
        agent.read_staged(str(stage), "fifo.conf", me())
    someone_else = Invoker(me().uid + 1, "someone")
    with pytest.raises(AgentError, match="not owned"):
        agent.read_staged(str(stage), "wg0.conf", someone_else)


def test_stale_staged_files_are_removed_fresh_ones_kept(stage: Path) -> None:
    (stage / "old.tmp").write_text("x")
    (stage / "new.tmp").write_text("y")
    now = (stage / "new.tmp").stat().st_mtime
    os.utime(stage / "old.tmp", (now - 3600, now - 3600))
    assert agent.remove_stale_staged(str(stage), me(), now) == ["old.tmp"]
    assert sorted(p.name for p in stage.iterdir()) == ["new.tmp"]


def test_remove_staged_leaves_other_owners_files(stage: Path) -> None:
    (stage / "wg0.conf").write_text("x")
    agent.remove_staged(str(stage), ["wg0.conf"], Invoker(me().uid + 1, "someone"))
    assert (stage / "wg0.conf").exists()
    agent.remove_staged(str(stage), ["wg0.conf", "absent"], me())
    assert not (stage / "wg0.conf").exists()


# -- what a staged file may hold -----------------------------------------------------------------

RENDERED = """\
# netsetup: gateway of acme-dental
[Interface]
Address = 198.18.0.1/24, 2001:db8:18::1/64
ListenPort = 51820
PrivateKey = {key}

# maria (dedicated)
[Peer]
PublicKey = {key}
PresharedKey = {key}
AllowedIPs = 198.18.0.5/32
"""
KEY = base64.b64encode(bytes(range(32))).decode()  # shaped like a WireGuard key


def test_a_rendered_config_passes() -> None:
    agent.check_wg_conf(RENDERED.format(key=KEY))


@pytest.mark.parametrize(
    "line",
    ["PostUp = rm -rf /", "PreDown = sh -c id", "SaveConfig = true", "[Shell]", "garbage"],
)
def test_config_keys_that_run_commands_are_refused(line: str) -> None:
    with pytest.raises(AgentError, match="line 4"):
        agent.check_wg_conf(f"[Interface]\nListenPort = 51820\n\n{line}\n")


def test_a_rendered_ruleset_passes() -> None:
    from datetime import UTC, datetime

    from netsetup.gateway.firewall import render_firewall, table_name
    from netsetup.profile.store import load_peers, load_profile

    profile = load_profile(Path(__file__).parents[2] / "profiles" / "acme-dental")
    peers = load_peers(profile)
    text = render_firewall(profile, peers, datetime.now(UTC))
    assert "table inet" in text
    agent.check_ruleset(text, table_name(profile.gateway.interface))


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('table inet t {\n}\n  include "/etc/shadow"\n', "include"),
        ("flush ruleset\n", "'ruleset'"),
        ("table inet t {\n}\ntable ip nat {\n}\n", "only table inet t"),
        ("delete table inet filter\n", "only table inet t"),
        ("table inet other {\n}\n", "only table inet t"),
        # the audit's bypasses of the line-by-line check: a second statement after `;`, a
        # statement inside a block, a table name glued to its `{`
        ('table inet t { }; include "/etc/shadow"\n', "'include'"),
        ('table inet t { include "/x" }\n', "'include'"),
        ("table inet t { }; flush ruleset; add table ip evil; add table inet t\n", "'ruleset'"),
        ("table inet t { }; delete table inet filter\n", "only table inet t"),
        ("add table inet t; add table ip evil\n", "only table inet t"),
        ("table ip evil{ chain c { type filter hook input priority 0; } }\n", "only table inet t"),
        ("table inet t { }\ntable inet t { } table ip x { }\n", "only table inet t"),
        ('define x = "/etc/shadow"\n', "'define'"),
        ("table inet t { chain c { ip saddr $x drop } }\n", "'\\$'"),
        ("table inet t { chain c {\n}\n", "never closed"),
        ("table inet t { }\n}\n", "without its"),
        ('table inet t { chain c { comment "x }\n', "unterminated string"),
        ("# a comment\n\ndelete\\\n table ip filter\n", "line 3: only table inet t"),
    ],
)
def test_a_ruleset_may_touch_only_its_table(text: str, said: str) -> None:
    agent.check_ruleset("table inet t\ndelete table inet t\ntable inet t {\n}\n", "t")
    # the same words inside a string or a comment are only text
    agent.check_ruleset(
        'table inet t { # include "/x"; }\n chain c { comment "flush ruleset; $x }" }\n}\n'
        "flush table inet t; table inet t\n",
        "t",
    )
    with pytest.raises(AgentError, match=said):
        agent.check_ruleset(text, "t")


def tar_of(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/shadow"
            archive.addfile(info)
    return buffer.getvalue()


def test_profile_tar_gives_the_profile_files() -> None:
    files = agent.profile_files(tar_of({"profile.toml": b"a", "peers/maria.toml": b"b"}))
    assert files == {"profile.toml": b"a", "peers/maria.toml": b"b"}


@pytest.mark.parametrize(
    ("members", "symlink", "said"),
    [
        ({"profile.toml": b"", "../evil.toml": b""}, None, "holds"),
        ({"profile.toml": b"", "/etc/cron.d/x": b""}, None, "holds"),
        ({"profile.toml": b"", "peers/../../x.toml": b""}, None, "holds"),
        ({"profile.toml": b"", "state/psk.key": b""}, None, "holds"),
        ({"profile.toml": b""}, "peers/link.toml", "not a plain file"),
        ({"peers/maria.toml": b""}, None, "no profile.toml"),
    ],
)
def test_profile_tar_refuses_anything_else(
    members: dict[str, bytes], symlink: str | None, said: str
) -> None:
    with pytest.raises(AgentError, match=said):
        agent.profile_files(tar_of(members, symlink))
    with pytest.raises(AgentError, match="not a tar"):
        agent.profile_files(b"not a tar at all" * 100)


def test_a_sparse_profile_member_is_refused(tmp_path: Path) -> None:
    # the audit's case: an 8 GiB hole in a tar of a few KiB (GNU tar's sparse format)
    (tmp_path / "p").mkdir()
    with open(tmp_path / "p" / "profile.toml", "wb") as handle:
        handle.truncate(8 << 30)
    tar = tmp_path / "profile.tar"
    subprocess.run(
        ["tar", "-C", str(tmp_path / "p"), "--sparse", "-cf", str(tar), "profile.toml"],
        check=True,
    )
    assert tar.stat().st_size < 1 << 20
    with pytest.raises(AgentError, match="not a plain file"):
        agent.profile_files(tar.read_bytes())
    # the same in the PAX form (python's tarfile reads it as a regular member)
    info = tarfile.TarInfo("profile.toml")
    info.pax_headers = {"GNU.sparse.size": str(8 << 30), "GNU.sparse.map": "0,0"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(AgentError, match="not a plain file"):
        agent.profile_files(buffer.getvalue())


def test_profile_tar_is_bounded() -> None:
    limit = agent.MAX_PROFILE_FILE_BYTES
    assert agent.profile_files(tar_of({"profile.toml": b"x" * limit}))["profile.toml"]
    with pytest.raises(AgentError, match=r"'profile\.toml' is too large"):
        agent.profile_files(tar_of({"profile.toml": b"x" * (limit + 1)}))
    many = {f"peers/p{n}.toml": b"x" * limit for n in range(17)}
    with pytest.raises(AgentError, match="holds too much"):
        agent.profile_files(tar_of({"profile.toml": b"", **many}))


def test_a_staged_file_is_read_bounded(stage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "MAX_STAGED_BYTES", 10)
    (stage / "wg0.conf").write_bytes(b"x" * 10)
    assert agent.read_staged(str(stage), "wg0.conf", me()) == b"x" * 10
    (stage / "wg0.conf").write_bytes(b"x" * 11)
    with pytest.raises(AgentError, match="too large"):
        agent.read_staged(str(stage), "wg0.conf", me())


def test_keys_in_tool_messages_are_redacted() -> None:
    text = f"wg: unable to set peer {KEY}: bad"
    assert KEY not in agent.redact(text) and "(key)" in agent.redact(text)


def test_atomic_write_gives_the_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "wg0.conf"
    agent.atomic_write(str(target), b"secret", 0o600)
    agent.atomic_write(str(target), b"secret 2", 0o600)
    assert target.read_bytes() == b"secret 2"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["wg0.conf"]


def test_a_bug_answers_json_without_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: list[str]) -> dict[str, object]:
        raise ValueError(f"PrivateKey = {KEY}")

    monkeypatch.setitem(agent.VERBS, "version", broken)
    hangup = signal.getsignal(signal.SIGHUP)  # main ignores it (a cut connection): put it back
    try:
        assert agent.main(["version"]) == 1
    finally:
        signal.signal(signal.SIGHUP, hangup)
    out = capsys.readouterr().out
    assert json.loads(out) == {
        "ok": False,
        "error": "internal error in the gateway agent (ValueError)",
        "step": "internal",
        "restored": False,
    }
    assert KEY not in out


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not all(map(shutil.which, ("unshare", "nft"))),
    reason="needs root, unshare and nft (a network namespace of its own)",
)


def in_own_netns(script: str) -> subprocess.CompletedProcess[str]:
    """Python in a fresh network namespace: the real nft, touching no real table."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(AGENT.parents[2])}
    return subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@needs_netns
def test_nft_never_echoes_what_it_read(tmp_path: Path) -> None:
    secret_file = tmp_path / "shadow"
    secret_file.write_text("root:$y$j9T$not-a-real-hash-but-secret:19000:0:99999:7:::\n")
    ruleset = f'table inet t {{ }}\ninclude "{secret_file}"\n'
    done = in_own_netns(
        "from netsetup.gateway import agent\n"
        "try:\n"
        f"    agent.run('check', ['nft', '-c', '-f', '-'], data={ruleset.encode()!r})\n"
        "except agent.AgentError as exc:\n"
        "    print(exc.step, exc.message)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "check nft rejected the ruleset at line 1"
    assert "secret" not in done.stdout


@needs_netns
def test_a_load_that_touches_another_table_fails_and_removes_it() -> None:
    done = in_own_netns(
        "from netsetup.gateway import agent\n"
        "agent.run('nft', ['nft', 'add', 'table', 'inet', 'filter'])\n"
        "agent.load_ruleset('t', b'table inet t { }\\n')\n"  # its own table: fine
        "try:\n"
        "    agent.load_ruleset('t', b'table ip evil { }\\ndelete table inet filter\\n')\n"
        "except agent.AgentError as exc:\n"
        "    print(exc.step, exc.message)\n"
        "print(sorted(agent.nft_tables('read')))\n"
    )
    assert done.returncode == 0, done.stderr
    said, tables = done.stdout.splitlines()
    assert said == "nft the ruleset changed other tables than inet t: inet filter, ip evil"
    assert tables == "['inet t']"  # evil is gone again (filter's restore is the backup's job)


# -- which interfaces and tables it serves, where it keeps their state ---------------------------


@pytest.fixture
def gateway_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agent's folders under tmp_path (nothing on this machine's /etc or /var is touched)."""
    for name, sub in [
        ("STATE_ROOT", "var"),
        ("STAGE_ROOT", "var/stage"),
        ("WG_DIR", "etc/wireguard"),
        ("RULESET_DIR", "etc/netsetup/nftables"),
        ("PROFILES_DIR", "etc/netsetup/profiles"),
        ("AUDIT_LOG", "log/audit.jsonl"),
        ("ALLOW_FILE", "etc/netsetup/agent.allow"),
    ]:
        monkeypatch.setattr(agent, name, str(tmp_path / sub))
    monkeypatch.setenv("SUDO_UID", str(os.getuid()))
    monkeypatch.setenv("SUDO_USER", me().name)
    return tmp_path


@pytest.mark.parametrize("interface", ["wg0", "wg-0", "wg_0", "a.b=c+d", "WG9"])
def test_the_agent_names_tables_as_netsetup_does(interface: str) -> None:
    from netsetup.gateway.firewall import table_name

    assert agent.table_name(interface) == table_name(interface)
    assert agent.TABLE_RE.fullmatch(agent.table_name(interface))


def test_only_the_interfaces_own_table_is_served() -> None:
    assert agent.table_arg({"table": "netsetup_wg0"}, "wg0") == "netsetup_wg0"
    for other in ("filter", "netsetup_wg1", "netsetup_wg_2d0"):
        with pytest.raises(AgentError, match="the table of wg0 is netsetup_wg0"):
            agent.table_arg({"table": other}, "wg0")


@as_root
def test_the_allow_file_limits_every_verb(gateway_root: Path) -> None:
    allow = Path(agent.ALLOW_FILE)
    assert agent.allowed_interfaces(str(allow)) is None  # no file: every interface is served
    agent.check_allowed("wg7")
    allow.parent.mkdir(parents=True)
    allow.write_text("# sites of acme\nwg0\n  wg1  # the second site\n\n")
    allow.chmod(0o644)
    assert agent.allowed_interfaces(str(allow)) == {"wg0", "wg1"}
    agent.check_allowed("wg1")
    token = "ab" * 16
    for verb, args in [
        (agent.verb_read, ["--interface", "wg7", "--table", "netsetup_wg7"]),
        (agent.verb_confirm, ["--interface", "wg7", "--token", token]),
        (agent.verb_rollback, ["--interface", "wg7", "--token", token]),
    ]:
        with pytest.raises(AgentError, match="wg7 is not listed in"):
            verb(args)
    allow.chmod(0o664)  # a group could add its own interfaces: nothing is served
    with pytest.raises(AgentError, match="nothing is served"):
        agent.check_allowed("wg0")
    allow.chmod(0o644)
    os.chown(allow, 1, -1)
    with pytest.raises(AgentError, match="nothing is served"):
        agent.check_allowed("wg0")
    allow.unlink()
    allow.symlink_to(gateway_root / "elsewhere")
    with pytest.raises(AgentError, match="nothing is served"):
        agent.check_allowed("wg0")


def test_an_interface_named_stage_is_refused(gateway_root: Path) -> None:
    stage_root = Path(agent.STAGE_ROOT)
    stage_root.mkdir(parents=True, mode=0o755)
    stage_root.chmod(0o755)
    token = "ab" * 16
    for args in (
        ["read", "--interface", "stage", "--table", "netsetup_stage"],
        ["confirm", "--interface", "stage", "--token", token],
        ["rollback", "--interface", "stage", "--token", token],
        ["revert-timer", "--interface", "stage", "--backup", "20260101T000000.000000Z"],
    ):
        with pytest.raises(AgentError, match="kept for the agent"):
            agent.VERBS[args[0]](args[1:])
    with pytest.raises(AgentError, match="keeps for itself"):
        agent.Paths("stage").prepare()
    assert stat.S_IMODE(stage_root.stat().st_mode) == 0o755
    assert list(stage_root.iterdir()) == []
    paths = agent.Paths("stages")
    paths.prepare()
    assert Path(paths.state) == gateway_root / "var" / "stages"


def write_reverted(restored: bool) -> str:
    paths = agent.Paths("wg9")
    paths.prepare()
    token = "cd" * 16
    record = {"token": token, "backup": "x", "at": "now", "restored": restored}
    Path(paths.reverted).write_text(json.dumps(record))
    return token


@as_root
@pytest.mark.parametrize("restored", [True, False])
def test_confirm_and_rollback_tell_what_the_revert_did(gateway_root: Path, restored: bool) -> None:
    token = write_reverted(restored)
    answer = agent.verb_confirm(["--interface", "wg9", "--token", token])
    assert answer["ok"] is False and answer["reverted"] is True
    assert answer["restored"] is restored
    if restored:
        answer = agent.verb_rollback(["--interface", "wg9", "--token", token])
        assert answer == {"ok": True, "restored": True, "reverted": True}
    else:
        with pytest.raises(AgentError, match="restore failed") as caught:
            agent.verb_rollback(["--interface", "wg9", "--token", token])
        assert caught.value.restored is False


@needs_netns
def test_read_tells_the_last_revert_without_its_token(tmp_path: Path) -> None:
    done = in_own_netns(
        "import json, os\n"
        "from netsetup.gateway import agent\n"
        f"root = {str(tmp_path)!r}\n"
        "agent.STATE_ROOT = root + '/var'; agent.STAGE_ROOT = root + '/var/stage'\n"
        "agent.ALLOW_FILE = root + '/absent'\n"
        "os.environ.update(SUDO_UID='0', SUDO_USER='root')\n"
        "paths = agent.Paths('wg9'); paths.prepare()\n"
        "answer = agent.verb_read(['--interface', 'wg9', '--table', 'netsetup_wg9'])\n"
        "print(json.dumps(answer['reverted']))\n"
        "record = {'token': 'ef' * 16, 'backup': 'b', 'at': 'now', 'restored': False}\n"
        "open(paths.reverted, 'w').write(json.dumps(record))\n"
        "answer = agent.verb_read(['--interface', 'wg9', '--table', 'netsetup_wg9'])\n"
        "print(json.dumps(answer['reverted'], sort_keys=True))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "null",
        '{"at": "now", "backup": "b", "restored": false}',
    ]


# -- the revert timer ----------------------------------------------------------------------------

STAMP = "20260101T000000.000000Z"


def test_the_timer_argv_holds_no_token() -> None:
    argv = agent.timer_argv(agent.Paths("wg9"), STAMP)
    assert argv[-5:] == ["revert-timer", "--interface", "wg9", "--backup", STAMP]
    assert not any(agent.TOKEN_RE.fullmatch(word) for word in argv)


def test_timer_alive_knows_the_timer_by_its_backup() -> None:
    argv = agent.timer_argv(agent.Paths("wg9"), STAMP)[3:]
    # a stand-in with the timer's argv (the real one would act on this machine's /var/lib)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])
    try:
        for _ in range(100):  # until the stand-in's argv shows in /proc (it may lag the fork)
            if STAMP.encode() in Path(f"/proc/{child.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        assert agent.timer_alive({"pid": child.pid, "backup": STAMP})
        assert not agent.timer_alive({"pid": child.pid, "backup": "20260101T000000.000001Z"})
        assert not agent.timer_alive({"pid": child.pid, "backup": ""})
        assert not agent.timer_alive({"pid": None, "backup": STAMP})
    finally:
        child.kill()
        child.wait()
    assert not agent.timer_alive({"pid": child.pid, "backup": STAMP})


@as_root
def test_the_timer_takes_its_token_from_pending(gateway_root: Path) -> None:
    paths = agent.Paths("wg9")
    paths.prepare()
    token = "12" * 16
    pending = {"token": token, "backup": STAMP, "deadline": "2026-01-01T00:00:00Z", "pid": 1}
    Path(paths.pending).write_text(json.dumps(pending))
    # another backup: not this timer's apply, nothing is touched
    other = agent.verb_revert_timer(["--interface", "wg9", "--backup", "20260101T000000.000001Z"])
    assert other == {"ok": True, "reverted": False}
    assert Path(paths.pending).exists()
    # its own (deadline past): it reverts; the backup is gone, so the restore fails, and the
    # record says so under the token it read from pending.json
    answer = agent.verb_revert_timer(["--interface", "wg9", "--backup", STAMP])
    assert answer == {"ok": True, "reverted": True}
    record = json.loads(Path(paths.reverted).read_text())
    assert record["token"] == token and record["restored"] is False
    assert not Path(paths.pending).exists()
    assert stat.S_IMODE(os.stat(paths.reverted).st_mode) == 0o600
