"""What `netsetup provision` loads: modules it has no use for stay out of its start-up.

Not a timing test (those live in benchmarks/): the modules below each cost milliseconds of every
provision, and a new top-level import elsewhere would bring them back unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.cli import _register, app, main
from netsetup.keys import fingerprint, generate_keypair, public_from_private
from netsetup.provision.journal import text_hash

NOT_ON_THE_PROVISION_PATH = (
    "hashlib",  # OpenSSL's libcrypto for one digest
    "cryptography.hazmat.backends.openssl.backend",  # cipher, RSA and EC modules
    "cryptography.hazmat.primitives.serialization",
    "rich",
    "segno",  # only with --qr
    "netsetup.cli.lab",
    "netsetup.cli.validate",
    "netsetup.validate",
    "netsetup.lab",
)

PROBE = """
import json, sys
from netsetup.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_provision_loads_only_what_it_uses(acme: Path, state_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "provision", str(acme), "maria", "--mode", "dedicated"],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] in (None, 0), result.stderr
    assert (acme / "peers" / "maria.toml").exists()
    loaded = set(report["modules"])
    assert not loaded.intersection(NOT_ON_THE_PROVISION_PATH)
    assert "cryptography.hazmat.bindings._rust" in loaded  # the probe saw a real key being made


def test_fingerprints_and_keys_are_what_hashlib_and_x25519_say() -> None:
    pair = generate_keypair()
    assert public_from_private(pair.private) == pair.public  # through the public X25519 API
    digest = hashlib.sha256(base64.b64decode(pair.public)).hexdigest()
    assert fingerprint(pair.public) == f"SHA256:{digest[:16]}"
    assert text_hash('name = "maria"\n') == hashlib.sha256(b'name = "maria"\n').hexdigest()


def test_the_app_keeps_every_command_after_one_ran(acme: Path, state_dir: Path) -> None:
    """Only the command that runs is built, and the app is whole again afterwards (tests and
    other callers run several commands in one process)."""
    _register()
    before = [c.callback for c in app.registered_commands]
    root = app.registered_callback
    with pytest.raises(SystemExit) as done:
        main(["provision", str(acme), "maria", "--mode", "dedicated"])
    assert done.value.code in (None, 0)
    assert [c.callback for c in app.registered_commands] == before
    assert app.registered_callback is root
    with pytest.raises(SystemExit) as listed:
        main(["list", str(acme), "--json"])
    assert listed.value.code in (None, 0)
