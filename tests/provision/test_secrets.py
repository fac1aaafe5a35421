"""No private or preshared key in stdout, stderr, the audit log, a traceback or under profiles/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from netsetup.keys import SecretKey, generate_keypair, generate_preshared_key

KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def collect_secrets(state_dir: Path, extra: list[Path]) -> set[str]:
    secrets: set[str] = set()
    for path in [*state_dir.rglob("*.psk"), *state_dir.rglob("*.conf"), *extra]:
        for line in path.read_text().splitlines():
            if line.startswith(("PrivateKey", "PresharedKey")) and "redacted" not in line:
                secrets.add(line.split(" = ", 1)[1].strip())
            elif path.suffix == ".psk":
                secrets.add(line.strip())
    return secrets


def test_whole_lifecycle_never_shows_a_secret(acme: Path, state_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "NETSETUP_STATE_DIR": str(state_dir)}
    outputs: list[str] = []
    secrets: set[str] = set()

    def run(*args: str, expect: int = 0) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "netsetup", *args], env=env, capture_output=True, text=True
        )
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == expect, (args, result.stderr)
        secrets.update(collect_secrets(state_dir, []))

    gateway_key = tmp_path / "gw.key"
    gateway_key.write_text(generate_keypair().private.reveal())
    secrets.add(gateway_key.read_text())
    run("provision", str(acme), "maria", "--mode", "dedicated", "--qr")
    run("provision", str(acme), "temp", "--mode", "agency", "--json", "--out", str(tmp_path / "h"))
    secrets.update(collect_secrets(tmp_path / "h", []))
    run("rotate", str(acme), "maria", "--json")
    run("renew", str(acme), "temp", "--expires", "3d")
    run("list", str(acme))
    run("list", str(acme), "--json")
    run("render", str(acme), expect=2)  # stdout is a pipe here: refused, points to --out
    run("render", str(acme), "--gateway-key", str(gateway_key), expect=2)
    run("render", str(acme), "--gateway-key", str(gateway_key), "--out", str(tmp_path / "wg0.conf"))
    secrets.update(collect_secrets(tmp_path, [tmp_path / "wg0.conf"]))
    run("revoke", str(acme), "temp")
    # errors, including one where a secret file is damaged, must not leak either
    psk_file = next((state_dir / "acme-dental" / "psk").glob("maria.*.psk"))
    psk_file.write_text(psk_file.read_text().strip()[:-3] + "!!\n")
    run("render", str(acme), "--out", str(tmp_path / "wg-damaged.conf"), expect=2)
    run("provision", str(acme), "maria", "--mode", "dedicated", expect=2)

    assert len(secrets) >= 6, secrets  # keys were really collected
    haystacks = {"output": "\n".join(outputs)}
    haystacks["audit"] = (state_dir / "audit.jsonl").read_text()
    for path in acme.parent.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_text(errors="replace")
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
        if where != "output":
            # nothing under profiles/ or in the audit log even looks like a secret assignment
            assert not re.search(r"(?i)(private|preshared)_?key\s*=", text), where


def test_repr_and_exceptions_never_show_a_key() -> None:
    pair = generate_keypair()
    psk = generate_preshared_key()
    for text in (repr(pair), str(pair.private), repr(psk), f"{psk}", repr([psk])):
        assert pair.private.reveal() not in text and psk.reveal() not in text
    try:
        SecretKey(psk.reveal()[:-2])
    except ValueError as exc:
        assert psk.reveal()[:-2] not in str(exc)
    else:
        raise AssertionError("a damaged key was accepted")
    import pickle

    try:
        pickle.dumps(psk)
    except TypeError:
        pass
    else:
        raise AssertionError("a secret was pickled")
