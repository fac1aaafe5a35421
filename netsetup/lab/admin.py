"""netsetup driven against a lab exactly as an admin drives it: `python -m netsetup provision|
revoke|render ...` as subprocesses, on the lab's profile copy and state directory; then the
gateway gets what was rendered (`wg syncconf`, `nft -f`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.errors import InputError
from netsetup.lab import labprofile, wireguard
from netsetup.lab.proc import Result, nft_load, run
from netsetup.profile.values import PeerName

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab


def peer_name(name: str) -> PeerName:
    """`name` checked before it goes into a path or a command line."""
    try:
        return PeerName(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def netsetup(lab: Lab, *args: str, check: bool = True) -> Result:
    env = {"NETSETUP_STATE_DIR": str(lab.state_dir)}
    return run([sys.executable, "-m", "netsetup", *args], check=check, env=env, timeout=60)


def netsetup_as_admin(
    lab: Lab,
    *args: str,
    check: bool = True,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> Result:
    """netsetup run by the company's admin from the office LAN (the lab's `office` namespace),
    where `[gateway] ssh` and `admin_from` of the lab profile point: `plan`, `apply`,
    `gateway bootstrap`, `import --from-gateway` log in to the gateway's real sshd from there."""
    from netsetup.lab.proc import in_ns

    environment = {"NETSETUP_STATE_DIR": str(lab.state_dir), "NETSETUP_SSH_KEY": str(lab.ssh_key)}
    environment.update(env or {})
    argv = in_ns(lab.ns("office"), [sys.executable, "-m", "netsetup", *args])
    return run(argv, check=check, env=environment, timeout=timeout)


def render_gateway(lab: Lab) -> None:
    netsetup(
        lab,
        "render",
        str(lab.profile_dir),
        "--out",
        str(lab.gateway_config),
        "--gateway-key",
        str(lab.gateway_key_file),
    )


def load_firewall(lab: Lab) -> None:
    ruleset = netsetup(lab, "render", str(lab.profile_dir), "--firewall").stdout
    (lab.run_dir / "gateway" / "firewall.nft").write_text(ruleset)
    nft_load(lab.ns("gateway"), ruleset)


def sync_gateway(lab: Lab) -> None:
    """Re-render the gateway's config and firewall and apply both (as after a revoke)."""
    render_gateway(lab)
    wireguard.syncconf(lab.ns("gateway"), lab.gateway_interface, lab.gateway_config)
    load_firewall(lab)


def provision(lab: Lab, name: str, mode: str, expires: str | None, sync: bool) -> Path:
    """`netsetup provision` a peer; returns the client config it wrote."""
    out = lab.run_dir / "clients" / peer_name(name)
    args = ["provision", str(lab.profile_dir), name, "--mode", mode, "--out", str(out), "--json"]
    if expires:
        args += ["--expires", expires]
    document = json.loads(netsetup(lab, *args).stdout)
    if sync:
        sync_gateway(lab)
    return Path(document["config"])


def revoke(lab: Lab, name: str, sync: bool) -> None:
    netsetup(lab, "revoke", str(lab.profile_dir), peer_name(name))
    if sync:
        sync_gateway(lab)


def expire(lab: Lab, name: str, sync: bool) -> None:
    """Make a peer's expiry lie in the past (by the lab's clock), as time would."""
    labprofile.expire_peer(lab.profile(), peer_name(name), lab.clock.now())
    if sync:
        sync_gateway(lab)
