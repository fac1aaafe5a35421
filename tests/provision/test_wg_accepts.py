"""The real `wg-quick` and `wg` accept what provision and render write.

`wg setconf` runs against a real userspace WireGuard device (wireguard-go) inside a network
namespace this test makes and removes; no packet leaves it. Like the lab's tests, these need root
(marked `lab`): without it they skip, and under NETSETUP_REQUIRE_LAB=1 they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.keys import generate_keypair
from netsetup.profile.store import load_peer, load_profile
from netsetup.provision import service
from netsetup.state import StateDir
from tests.lab.prereq import require_lab

pytestmark = pytest.mark.lab

WG_PROGRAMS = ("wg", "wg-quick", "wireguard-go", "ip")


def strip(config: Path) -> str:
    result = subprocess.run(["wg-quick", "strip", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def wg_device() -> Iterator[tuple[str, str]]:
    require_lab(WG_PROGRAMS)  # a WireGuard device in a network namespace needs root
    tag = uuid.uuid4().hex[:6]
    namespace, device = f"ns-test-{tag}", f"wgt{tag}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    # `wg` resolves the endpoint name: answer it from this namespace's own hosts file and send
    # any other lookup to loopback, so nothing ever asks the host's resolver.
    etc = Path("/etc/netns") / namespace
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text("127.0.0.1 localhost\n203.0.113.10 vpn.acme-dental.example\n")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "wireguard-go", device],
            check=True,
            env=env,
            capture_output=True,
        )
        yield namespace, device
    finally:
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "del", device], check=False)
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        shutil.rmtree(etc, ignore_errors=True)
        Path(f"/var/run/wireguard/{device}.sock").unlink(missing_ok=True)


def setconf(namespace: str, device: str, text: str, tmp_path: Path) -> str:
    conf = tmp_path / "setconf.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    exec_ = ["ip", "netns", "exec", namespace]
    result = subprocess.run(
        [*exec_, "wg", "setconf", device, str(conf)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    shown = subprocess.run([*exec_, "wg", "showconf", device], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_wg_quick_strip_accepts_client_and_gateway_configs(
    acme: Path, state_dir: Path, tmp_path: Path
) -> None:
    require_lab(WG_PROGRAMS)  # wg-quick strip re-executes itself with sudo without root
    profile = load_profile(acme)
    result = service.provision(profile, "maria", "dedicated", state=StateDir())
    stripped = strip(result.config)
    assert "Address" not in stripped and "DNS" not in stripped and "PrivateKey" in stripped
    assert "AllowedIPs = 192.0.2.0/24, 198.18.10.1/32" in stripped
    gateway = tmp_path / "wg0.conf"
    key = tmp_path / "gw.key"
    key.write_text(generate_keypair().private.reveal())
    from netsetup.cli import main

    with pytest.raises(SystemExit) as done:
        main(["render", str(acme), "--out", str(gateway), "--gateway-key", str(key)])
    assert done.value.code == 0
    stripped = strip(gateway)
    assert stripped.count("[Peer]") == 1 and "ListenPort = 51820" in stripped


def test_wg_setconf_loads_client_and_gateway_configs(
    acme: Path, state_dir: Path, tmp_path: Path, wg_device: tuple[str, str]
) -> None:
    namespace, device = wg_device
    profile = load_profile(acme)
    state = StateDir()
    result = service.provision(profile, "maria", "dedicated", state=state)
    service.provision(profile, "temp", "agency", state=state)
    shown = setconf(namespace, device, strip(result.config), tmp_path)
    assert f"PublicKey = {profile.gateway.public_key}" in shown
    assert "Endpoint" in shown and "PersistentKeepalive = 25" in shown

    gateway = tmp_path / "wg0.conf"
    from netsetup.cli import main

    with pytest.raises(SystemExit) as done:
        main(["render", str(acme), "--out", str(gateway)])
    assert done.value.code == 0
    shown = setconf(namespace, device, strip(gateway), tmp_path)
    for name in ("maria", "temp"):
        peer = load_peer(profile, name)
        assert f"PublicKey = {peer.public_key}" in shown
        assert f"{peer.address_v4}/32" in shown
    assert shown.count("PresharedKey") == 2
