"""Faults the lab injects and clears, so diagnose can be shown to find each one.

- drop: a UDP or TCP port is dropped on the path (default: in the gateway), with nftables;
- loss: N % of the packets through the internet are lost at random (nft `numgen random`);
- mtu: the home's internet link gets a small MTU and ICMP "fragmentation needed" is dropped,
  an MTU black hole;
- stop: a service (kamailio, sshd, dnsmasq, files, gateway-sshd) is stopped;
- wrong-key: the gateway runs with a private key that is not the profile's (`wg set`);
- home-subnet: the home LAN is moved into the company's subnet, then the tunnel is brought up
  again (as after a reboot) and meets the LAN's route.

Each fault lives in its own nftables table (or is undone from what was recorded), so faults stack
and clear independently.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsetup.errors import InputError
from netsetup.lab import wireguard
from netsetup.lab.proc import LabError, ns_run, run
from netsetup.lab.topology import nft_load

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

KINDS = ("drop", "loss", "mtu", "stop", "wrong-key", "home-subnet")


@dataclass
class Fault:
    id: str
    kind: str
    params: dict[str, Any]
    undo: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        p = self.params
        if self.kind == "drop":
            return f"{p['proto']} port {p['port']} dropped in {p['host']}"
        if self.kind == "loss":
            return f"{p['percent']}% random loss in the internet ({p['direction']})"
        if self.kind == "mtu":
            return f"home link MTU {p['mtu']}, ICMP fragmentation-needed dropped"
        if self.kind == "stop":
            return f"service {p['service']} stopped"
        if self.kind == "wrong-key":
            return "the gateway runs with a key that is not the profile's"
        return f"home LAN moved into the company subnet {p.get('subnet', '')}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params, "undo": self.undo}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(data["id"], data["kind"], dict(data["params"]), dict(data.get("undo", {})))


def _table(fault_id: str) -> str:
    return "netsetup_fault_" + fault_id.replace("-", "_")


def _filter_table(table: str, rules: list[str], hooks: tuple[str, ...]) -> str:
    lines = [f"table inet {table} {{"]
    for hook in hooks:
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype filter hook {hook} priority -10; policy accept;",
            *[f"\t\t{r}" for r in rules],
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _target(kind: str, params: dict[str, Any]) -> tuple[object, ...] | None:
    """What a fault acts on. Two faults of one kind on one target would undo each other (the
    first one cleared restores the service, the MTU, the key ...), so a second is refused.
    Random loss stacks (each lives in its own table and is removed alone): no target."""
    if kind == "drop":
        return (kind, params.get("host", "gateway"), params.get("proto", "udp"), params.get("port"))
    if kind == "stop":
        return (kind, params.get("service"))
    if kind == "loss":
        return None
    return (kind,)  # mtu, wrong-key, home-subnet: one home link, one gateway key, one home LAN


def inject(lab: Lab, kind: str, **params: Any) -> Fault:
    """Inject one fault into a running lab; returns the record that `clear` needs.

    The fault is recorded before it is applied, so a crash half-way leaves something
    `fault clear` can undo; when applying fails, what was done is undone and the record dropped
    (it stays, for `fault clear`, only if that undo fails too)."""
    if kind not in KINDS:
        raise InputError(f"unknown fault {kind!r}; one of: {', '.join(KINDS)}")
    target = _target(kind, params)
    if target is not None:
        for other in lab.record.faults:
            if other.kind == kind and _target(other.kind, other.params) == target:
                raise InputError(
                    f"fault {other.id} already does this ({other.describe()}): "
                    f"clear it first (netsetup lab fault clear {other.id})"
                )
    fault_id = f"{kind}-{len(lab.record.faults) + 1}-{lab.record.fault_serial}"
    lab.record.fault_serial += 1
    fault = Fault(fault_id, kind, dict(params))
    lab.record.faults.append(fault)
    lab.save()
    try:
        _INJECT[kind](lab, fault)
    except BaseException:
        try:
            _CLEAR[kind](lab, fault)
        except Exception:
            fault.params["state"] = "partly applied: undo failed, run `fault clear`"
        else:
            lab.record.faults.remove(fault)
        lab.save()
        raise
    lab.save()
    return fault


def clear(lab: Lab, fault_id: str | None = None) -> list[Fault]:
    """Clear one fault (by id or kind) or, with None, all of them, newest first."""
    chosen = [f for f in lab.record.faults if fault_id is None or fault_id in (f.id, f.kind)]
    if fault_id is not None and not chosen:
        raise InputError(f"no fault {fault_id!r} in lab {lab.prefix}")
    for fault in reversed(chosen):
        _CLEAR[fault.kind](lab, fault)
        lab.record.faults.remove(fault)
        lab.save()
    return chosen


# -- drop a port ---------------------------------------------------------------------------


def _drop(lab: Lab, fault: Fault) -> None:
    proto = fault.params.setdefault("proto", "udp")
    if proto not in ("udp", "tcp"):
        raise InputError(f"drop: proto must be udp or tcp, not {proto!r}")
    port = int(fault.params["port"])
    host = fault.params.setdefault("host", "gateway")
    rule = f"meta l4proto {proto} th dport {port} drop"
    nft_load(lab.ns(host), _filter_table(_table(fault.id), [rule], ("forward", "input", "output")))


def _drop_table(lab: Lab, fault: Fault, host: str) -> None:
    """Delete the fault's table in `host` if it is there (also after a half-done injection)."""
    namespace = lab.ns(host)
    listed = ns_run(namespace, ["nft", "list", "tables", "inet"], check=False).stdout.split()
    if _table(fault.id) in listed:
        ns_run(namespace, ["nft", "delete", "table", "inet", _table(fault.id)])


# -- random loss ---------------------------------------------------------------------------


def _loss(lab: Lab, fault: Fault) -> None:
    percent = int(fault.params["percent"])
    if not 0 < percent <= 100:
        raise InputError("loss: percent must be 1-100")
    direction = fault.params.setdefault("direction", "both")
    toward_home = lab.plan.internet_router.ifname
    match = {"both": "", "up": f'iifname "{toward_home}" ', "down": f'oifname "{toward_home}" '}
    if direction not in match:
        raise InputError("loss: direction must be both, up or down")
    # `numgen random mod 100` gives 0-99, and nft refuses `< 100` as out of range: all is a drop
    chance = "" if percent == 100 else f"numgen random mod 100 < {percent} "
    rule = f"{match[direction]}{chance}drop"
    nft_load(lab.ns("internet"), _filter_table(_table(fault.id), [rule], ("forward",)))


# -- MTU black hole ------------------------------------------------------------------------


def _mtu(lab: Lab, fault: Fault) -> None:
    mtu = int(fault.params["mtu"])
    if not 576 <= mtu <= 1500:
        raise InputError("mtu: must be 576-1500")
    rules = [
        "icmp type destination-unreachable icmp code frag-needed drop",
        "icmpv6 type packet-too-big drop",
    ]
    ends = _mtu_ends(lab)
    # what the links had before, so clearing restores exactly that (not an assumed 1500)
    fault.undo = {"mtu": {host: _link_mtu(lab.ns(host), ifname) for host, ifname in ends}}
    table = _filter_table(_table(fault.id), rules, ("forward", "output"))
    for host in ("internet", "router"):
        nft_load(lab.ns(host), table)
    for host, ifname in ends:
        run(["ip", "-n", lab.ns(host), "link", "set", ifname, "mtu", str(mtu)])


def _mtu_ends(lab: Lab) -> list[tuple[str, str]]:
    return [("internet", lab.plan.internet_router.ifname), ("router", lab.plan.router_wan.ifname)]


def _link_mtu(namespace: str, ifname: str) -> int:
    shown = run(["ip", "-n", namespace, "-j", "link", "show", "dev", ifname]).stdout
    return int(json.loads(shown)[0]["mtu"])


def _clear_mtu(lab: Lab, fault: Fault) -> None:
    recorded = fault.undo.get("mtu", {})
    for host, ifname in _mtu_ends(lab):
        previous = recorded.get(host) if isinstance(recorded, dict) else recorded
        if previous:
            run(["ip", "-n", lab.ns(host), "link", "set", ifname, "mtu", str(previous)])
        _drop_table(lab, fault, host)


# -- a stopped service ---------------------------------------------------------------------


def _stop(lab: Lab, fault: Fault) -> None:
    name = fault.params["service"]
    if name not in lab.record.services:
        names = ", ".join(sorted(lab.record.services))
        raise InputError(f"stop: no service {name!r} (services: {names})")
    lab.stop_service(name)


def _clear_stop(lab: Lab, fault: Fault) -> None:
    if fault.params["service"] in lab.record.services:
        lab.start_service(fault.params["service"])


# -- a wrong gateway key -------------------------------------------------------------------


def _wrong_key(lab: Lab, fault: Fault) -> None:
    from netsetup.fsutil import write_secret
    from netsetup.keys import generate_keypair

    wrong = generate_keypair()
    path = lab.run_dir / "gateway" / "wrong.key"
    write_secret(path, wrong.private.reveal() + "\n")  # 0600 from the first byte
    lab.set_gateway_key(path)


def _clear_wrong_key(lab: Lab, fault: Fault) -> None:
    lab.set_gateway_key(lab.gateway_key_file)
    (lab.run_dir / "gateway" / "wrong.key").unlink(missing_ok=True)


# -- the home LAN in the company's subnet --------------------------------------------------


def _home_subnet(lab: Lab, fault: Fault) -> None:
    plan = lab.plan
    v4_hosts = [h for h in plan.office_hosts if h.version == 4]
    nets = [n for n in plan.company_networks if n.version == 4 and n.prefixlen <= 24]
    if nets:
        subnet = nets[0]
    elif v4_hosts:
        subnet = ipaddress.IPv4Network(f"{v4_hosts[0]}/24", strict=False)
    else:
        raise InputError("home-subnet: the profile names no IPv4 company network")
    taken = set(plan.office_hosts)
    free = [h for h in subnet.hosts() if h not in taken]
    router_ip, home_ip = free[0], free[min(99, len(free) - 1)]
    fault.params["subnet"] = str(subnet)
    fault.undo = {"router": str(plan.router_lan.v4), "home": str(plan.home_lan.v4)}
    client = lab.record.clients.get("home")
    config = Path(client.config) if client is not None and client.config else None
    if config is not None:
        wireguard.down(lab.ns("home"), config)
    _readdress(lab, f"{router_ip}/{subnet.prefixlen}", f"{home_ip}/{subnet.prefixlen}")
    if config is not None:
        # the tunnel comes up after the LAN, as after a reboot: wg-quick now meets the LAN's route
        fault.undo["config"] = str(config)
        try:
            wireguard.up(lab.ns("home"), config)
            fault.params["tunnel"] = "up"
        except LabError as exc:
            fault.params["tunnel"] = f"failed: {exc}"


def _clear_home_subnet(lab: Lab, fault: Fault) -> None:
    if "router" not in fault.undo:
        return  # refused before anything was changed
    config = fault.undo.get("config")
    if config:
        wireguard.down(lab.ns("home"), Path(config))
    _readdress(lab, fault.undo["router"], fault.undo["home"])
    if config:
        wireguard.up(lab.ns("home"), Path(config))


def _readdress(lab: Lab, router_cidr: str, home_cidr: str) -> None:
    router, home = lab.ns("router"), lab.ns("home")
    run(["ip", "-n", router, "-4", "addr", "flush", "dev", lab.plan.router_lan.ifname])
    run(["ip", "-n", home, "-4", "addr", "flush", "dev", lab.plan.home_lan.ifname])
    run(["ip", "-n", router, "addr", "add", router_cidr, "dev", lab.plan.router_lan.ifname])
    run(["ip", "-n", home, "addr", "add", home_cidr, "dev", lab.plan.home_lan.ifname])
    gateway = router_cidr.split("/")[0]
    run(["ip", "-n", home, "-4", "route", "replace", "default", "via", gateway])
    ns_run(home, ["ip", "-4", "neigh", "flush", "all"], check=False)


def _no_undo(lab: Lab, fault: Fault) -> None:
    host = fault.params.get("host", "internet")
    _drop_table(lab, fault, host)


_INJECT = {
    "drop": _drop,
    "loss": _loss,
    "mtu": _mtu,
    "stop": _stop,
    "wrong-key": _wrong_key,
    "home-subnet": _home_subnet,
}
_CLEAR = {
    "drop": _no_undo,
    "loss": _no_undo,
    "mtu": _clear_mtu,
    "stop": _clear_stop,
    "wrong-key": _clear_wrong_key,
    "home-subnet": _clear_home_subnet,
}
