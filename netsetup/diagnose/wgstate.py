"""WireGuard's own view of the tunnel, where this machine lets us read it.

Reading WireGuard's state needs privileges on every system (CAP_NET_ADMIN or root on Linux, an
admin-only pipe on Windows, nothing at all from the macOS App Store client), so "not readable" is
a normal answer here, never an error: the checks judge the tunnel by traffic first and use this
only to say more.

Two readers, tried in order: the `wg` tool (`wg show all dump`) where it is installed and works,
then the wireguard-tools package's device access (userspace UAPI sockets, Linux netlink). The
interface is found by the config's public key (derived from its private key), never by the file
name: the assistant may have imported the config under any name.

Private keys pass through the readers (`wg show all dump` prints them) and are dropped on the spot:
nothing here keeps, logs or shows one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PeerState:
    """One peer of an interface as WireGuard reports it (no keys but the public one)."""

    public_key: str
    endpoint: str | None  # "203.0.113.10:51820" or "[2001:db8::1]:51820"; None: not known yet
    latest_handshake: int  # Unix time; 0 = never
    rx_bytes: int
    tx_bytes: int
    keepalive: int | None


@dataclass(frozen=True)
class InterfaceState:
    """The interface whose key is the config's, and its peers."""

    name: str
    public_key: str
    listen_port: int | None
    peers: tuple[PeerState, ...]
    source: str  # which reader found it: "wg" or "wireguard-tools"

    def peer(self, public_key: str | None) -> PeerState | None:
        """The peer with `public_key`, else the only peer (a netsetup config has one)."""
        for p in self.peers:
            if p.public_key == public_key:
                return p
        return self.peers[0] if len(self.peers) == 1 and public_key is None else None


@dataclass(frozen=True)
class Unreadable:
    """Why the state could not be read (in words for the assistant); a normal outcome."""

    reason: str


State = InterfaceState | Unreadable
NEEDS_ADMIN = "reading WireGuard's state needs administrator rights"


def read_state(public_key: str, timeout: float = 2.0) -> State:
    """The live interface whose public key is `public_key`, or why it could not be read."""
    reasons: list[str] = []
    for reader in (_read_with_wg, _read_with_package):
        found = reader(public_key, timeout)
        if isinstance(found, InterfaceState):
            return found
        if found.reason == NEEDS_ADMIN:
            return found  # the other reader needs the same rights: no need to wait for it
        if found.reason not in reasons:
            reasons.append(found.reason)
    return Unreadable("; ".join(reasons))


# -- `wg show all dump` ------------------------------------------------------------------------


def _read_with_wg(public_key: str, timeout: float) -> State:
    wg = shutil.which("wg")
    if wg is None:
        return Unreadable("the `wg` tool is not installed")
    try:
        done = subprocess.run(
            [wg, "show", "all", "dump"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Unreadable(f"`wg show` did not run ({type(exc).__name__})")
    found = find_in_dump(done.stdout, public_key)
    if found is not None:
        return found
    if "ermission denied" in done.stderr or "not permitted" in done.stderr:
        return Unreadable(NEEDS_ADMIN)
    return Unreadable("no readable WireGuard interface has this config's key (`wg show`)")


def find_in_dump(dump: str, public_key: str) -> InterfaceState | None:
    """The interface with `public_key` in `wg show all dump` output. Each line starts with the
    interface; an interface line has 5 fields (private key, public key, port, fwmark), a peer
    line 9 (public key, preshared key, endpoint, allowed ips, handshake, rx, tx, keepalive)."""
    interface: tuple[str, int | None] | None = None
    peers: list[PeerState] = []
    for line in dump.splitlines():
        fields = line.split("\t")
        if len(fields) == 5 and fields[2] == public_key:
            interface = (fields[0], _int_or_none(fields[3]))
        elif len(fields) == 9 and interface is not None and fields[0] == interface[0]:
            peers.append(_peer_from_dump(fields))
        # any other line (another interface, a private key) is passed over and not kept
    if interface is None:
        return None
    return InterfaceState(interface[0], public_key, interface[1], tuple(peers), "wg")


def _peer_from_dump(fields: list[str]) -> PeerState:
    endpoint = None if fields[3] == "(none)" else fields[3]
    return PeerState(
        public_key=fields[1],
        endpoint=endpoint,
        latest_handshake=_int_or_none(fields[5]) or 0,
        rx_bytes=_int_or_none(fields[6]) or 0,
        tx_bytes=_int_or_none(fields[7]) or 0,
        keepalive=_int_or_none(fields[8]),
    )


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


# -- the wireguard-tools package --------------------------------------------------------------


def _read_with_package(public_key: str, timeout: float) -> State:
    try:
        from wireguard_tools import WireguardDevice
    except ImportError:
        return Unreadable("the wireguard-tools package is not installed")
    denied = False
    try:
        devices: Iterable[object] = list(WireguardDevice.list())
    except PermissionError:
        return Unreadable(NEEDS_ADMIN)
    except Exception as exc:  # the package's netlink part may be missing or fail here
        return Unreadable(f"WireGuard's devices could not be listed ({type(exc).__name__})")
    for device in devices:
        try:
            found = _device_state(device, public_key)
        except PermissionError:
            denied = True
            continue
        except Exception:  # one unreadable device does not stop the search
            continue
        finally:
            _close(device)
        if found is not None:
            return found
    if denied:
        return Unreadable(NEEDS_ADMIN)
    return Unreadable("no readable WireGuard interface has this config's key")


def _device_state(device: object, public_key: str) -> InterfaceState | None:
    config = device.get_config()  # type: ignore[attr-defined]
    private = config.private_key
    own = str(private.public_key()) if private is not None else None
    del private  # the private key is not kept
    if own != public_key:
        return None
    peers = tuple(_peer_from_package(p) for p in config.peers.values())
    name = str(device.interface)  # type: ignore[attr-defined]
    return InterfaceState(name, public_key, config.listen_port, peers, "wireguard-tools")


def _peer_from_package(peer: object) -> PeerState:
    p: object = peer
    host = getattr(p, "endpoint_host", None)
    port = getattr(p, "endpoint_port", None)
    endpoint = None
    if host is not None and port:
        shown = f"[{host}]" if ":" in str(host) else str(host)
        endpoint = f"{shown}:{port}"
    handshake = getattr(p, "last_handshake", None)
    return PeerState(
        public_key=str(getattr(p, "public_key", "")),
        endpoint=endpoint,
        latest_handshake=int(handshake or 0),
        rx_bytes=int(getattr(p, "rx_bytes", None) or 0),
        tx_bytes=int(getattr(p, "tx_bytes", None) or 0),
        keepalive=getattr(p, "persistent_keepalive", None),
    )


def _close(device: object) -> None:
    try:
        device.close()  # type: ignore[attr-defined]
    except Exception:  # closing a half-opened device may fail; nothing to do about it
        return
