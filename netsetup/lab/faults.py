"""Faults the lab injects and clears, so diagnose can be shown to find each one.

Every kind of fault is registered once, here, with `define(...)`: its id, its parameters, a
one-line summary, what it acts on, how it is described, and how it is applied and undone. The
CLI's `lab fault add KIND` builds its choices, options and help from this registry.

A fault goes through three steps, none of which writes the lab's record (the record module stores
what they return, see `Lab.inject`):
- `prepare` checks the parameters and reads what undoing will need (an MTU before the fault, the
  home LAN's addresses) into a `Fault`, before anything changes;
- `apply` changes the lab and returns its outcome (extra parameters to show, e.g. "tunnel: up");
- `undo` puts the lab back from what `prepare` recorded.

Each fault lives in its own nftables table (or is undone from what was recorded), so faults stack
and clear independently.

Heavy modules are imported inside the functions: the CLI imports this registry for `--help`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsetup.errors import InputError
from netsetup.lab import wireguard
from netsetup.lab.proc import LabError, nft_load, ns_run, run

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

ParamValue = int | str
Params = dict[str, Any]


@dataclass
class Fault:
    """One injected fault, as the lab's record keeps it."""

    id: str
    kind: str
    params: Params
    undo: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return KINDS[self.kind].describe(self.params)

    def with_outcome(self, outcome: Mapping[str, Any]) -> Fault:
        return replace(self, params={**self.params, **outcome})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params, "undo": self.undo}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(data["id"], data["kind"], dict(data["params"]), dict(data.get("undo", {})))


@dataclass(frozen=True)
class Param:
    """A parameter of a fault kind (the CLI offers it as `--<name>`)."""

    name: str
    type: type[int] | type[str]
    help: str
    default: ParamValue | None = None  # None: required
    choices: tuple[str, ...] = ()
    bounds: tuple[int, int] | None = None  # inclusive

    def value(self, kind: str, given: object) -> ParamValue:
        """`given` checked and converted, or an InputError naming the kind and parameter."""
        if given is None:
            if self.default is None:
                raise InputError(f"fault {kind} needs {self.name}")
            return self.default
        if self.type is int:
            return self._number(kind, given)
        value = str(given)
        if self.choices and value not in self.choices:
            one_of = ", ".join(self.choices)
            raise InputError(f"fault {kind}: {self.name} must be one of {one_of}, not {value!r}")
        return value

    def _number(self, kind: str, given: object) -> int:
        try:
            value = int(str(given))
        except (TypeError, ValueError):
            raise InputError(f"fault {kind}: {self.name} must be a number, not {given!r}") from None
        if self.bounds is not None and not self.bounds[0] <= value <= self.bounds[1]:
            low, high = self.bounds
            raise InputError(f"fault {kind}: {self.name} must be {low}-{high}, not {value}")
        return value


Prepare = Callable[["Lab", Fault], Fault]
Apply = Callable[["Lab", Fault], Mapping[str, Any]]
Undo = Callable[["Lab", Fault], None]


@dataclass(frozen=True)
class FaultKind:
    id: str
    summary: str  # one line: what the fault does to the lab
    params: tuple[Param, ...]
    describe: Callable[[Params], str]  # one injected fault, in words
    # what the fault acts on: two faults of one kind on one target would undo each other (the
    # first one cleared restores the service, the MTU, the key ...), so a second is refused.
    # None: faults of this kind stack.
    target: Callable[[Params], tuple[object, ...] | None]
    prepare: Prepare
    apply: Apply
    undo: Undo


KINDS: dict[str, FaultKind] = {}
_KIND_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _unchanged(lab: Lab, fault: Fault) -> Fault:
    return fault


def _one_per_lab(params: Params) -> tuple[object, ...]:
    return ()


def define(
    kind: str,
    summary: str,
    *,
    params: tuple[Param, ...] = (),
    describe: Callable[[Params], str],
    apply: Apply,
    undo: Undo,
    prepare: Prepare = _unchanged,
    target: Callable[[Params], tuple[object, ...] | None] = _one_per_lab,
) -> FaultKind:
    if not _KIND_ID.match(kind):
        raise ValueError(f"fault kind {kind!r}: use kebab-case (it is a CLI choice and an id)")
    if kind in KINDS:
        raise ValueError(f"fault kind {kind} is defined twice")
    fault_kind = FaultKind(kind, summary, params, describe, target, prepare, apply, undo)
    KINDS[kind] = fault_kind
    return fault_kind


def find_kind(kind: str) -> FaultKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise InputError(f"unknown fault {kind!r}; one of: {', '.join(KINDS)}") from None


def check_params(kind: FaultKind, given: Mapping[str, object]) -> Params:
    """Every parameter of `kind`, checked, with defaults filled in; unknown ones are refused."""
    names = [p.name for p in kind.params]
    unknown = sorted(set(given) - set(names))
    if unknown:
        takes = ", ".join(names) or "no parameters"
        raise InputError(f"fault {kind.id} takes {takes}, not {', '.join(unknown)}")
    return {p.name: p.value(kind.id, given.get(p.name)) for p in kind.params}


# -- the three steps, for `Lab.inject` and `Lab.clear` ------------------------------------------


def prepare(lab: Lab, kind_id: str, given: Mapping[str, object]) -> Fault:
    """The fault to record: parameters checked, what undoing needs read. Changes nothing."""
    kind = find_kind(kind_id)
    params = check_params(kind, given)
    target = kind.target(params)
    if target is not None:
        for other in lab.record.faults:
            if other.kind == kind.id and KINDS[other.kind].target(other.params) == target:
                raise InputError(
                    f"fault {other.id} already does this ({other.describe()}): "
                    f"clear it first (netsetup lab fault clear {other.id})"
                )
    fault = Fault(lab.record.next_fault_id(kind.id), kind.id, params)
    return kind.prepare(lab, fault)


def apply(lab: Lab, fault: Fault) -> Fault:
    """Inject the (recorded) fault; returns it with the outcome of applying it."""
    return fault.with_outcome(KINDS[fault.kind].apply(lab, fault))


def undo(lab: Lab, fault: Fault) -> None:
    KINDS[fault.kind].undo(lab, fault)


PARTLY_APPLIED = {"state": "partly applied: undo failed, run `fault clear`"}


# -- nftables tables of faults -----------------------------------------------------------------


def table_name(fault_id: str) -> str:
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


def _drop_table(lab: Lab, fault: Fault, host: str) -> None:
    """Delete the fault's table in `host` if it is there (also after a half-done injection)."""
    namespace = lab.ns(host)
    listed = ns_run(namespace, ["nft", "list", "tables", "inet"], check=False).stdout.split()
    if table_name(fault.id) in listed:
        ns_run(namespace, ["nft", "delete", "table", "inet", table_name(fault.id)])


# -- drop a port -------------------------------------------------------------------------------


def _prepare_drop(lab: Lab, fault: Fault) -> Fault:
    host = fault.params["host"]
    if host not in lab.hosts():
        raise InputError(f"fault drop: no host {host!r} (hosts: {', '.join(lab.hosts())})")
    return fault


def _drop(lab: Lab, fault: Fault) -> Params:
    p = fault.params
    rule = f"meta l4proto {p['proto']} th dport {p['port']} drop"
    table = _filter_table(table_name(fault.id), [rule], ("forward", "input", "output"))
    nft_load(lab.ns(p["host"]), table)
    return {}


define(
    "drop",
    "a UDP or TCP port is dropped on the path (default: in the gateway), with nftables",
    params=(
        Param("port", int, "the port", bounds=(1, 65535)),
        Param("proto", str, "udp or tcp", "udp", choices=("udp", "tcp")),
        Param("host", str, "where (gateway, internet ...)", "gateway"),
    ),
    describe=lambda p: f"{p['proto']} port {p['port']} dropped in {p['host']}",
    target=lambda p: (p["host"], p["proto"], p["port"]),
    prepare=_prepare_drop,
    apply=_drop,
    undo=lambda lab, fault: _drop_table(lab, fault, fault.params["host"]),
)


# -- random loss -------------------------------------------------------------------------------


def _loss(lab: Lab, fault: Fault) -> Params:
    percent, direction = fault.params["percent"], fault.params["direction"]
    toward_home = lab.plan.internet_router.ifname
    match = {"both": "", "up": f'iifname "{toward_home}" ', "down": f'oifname "{toward_home}" '}
    # `numgen random mod 100` gives 0-99, and nft refuses `< 100` as out of range: all is a drop
    chance = "" if percent == 100 else f"numgen random mod 100 < {percent} "
    rule = f"{match[direction]}{chance}drop"
    nft_load(lab.ns("internet"), _filter_table(table_name(fault.id), [rule], ("forward",)))
    return {}


define(
    "loss",
    "N % of the packets through the internet are lost at random (nft `numgen random`)",
    params=(
        Param("percent", int, "percent lost", bounds=(1, 100)),
        Param("direction", str, "both, up or down", "both", choices=("both", "up", "down")),
    ),
    describe=lambda p: f"{p['percent']}% random loss in the internet ({p['direction']})",
    # each loss lives in its own table and is removed alone: losses stack
    target=lambda p: None,
    apply=_loss,
    undo=lambda lab, fault: _drop_table(lab, fault, "internet"),
)


# -- MTU black hole ----------------------------------------------------------------------------


def _mtu_ends(lab: Lab) -> list[tuple[str, str]]:
    return [("internet", lab.plan.internet_router.ifname), ("router", lab.plan.router_wan.ifname)]


def _link_mtu(namespace: str, ifname: str) -> int:
    shown = run(["ip", "-n", namespace, "-j", "link", "show", "dev", ifname]).stdout
    return int(json.loads(shown)[0]["mtu"])


def _prepare_mtu(lab: Lab, fault: Fault) -> Fault:
    # what the links have now, so clearing restores exactly that (not an assumed 1500)
    before = {host: _link_mtu(lab.ns(host), ifname) for host, ifname in _mtu_ends(lab)}
    return replace(fault, undo={"mtu": before})


def _mtu(lab: Lab, fault: Fault) -> Params:
    rules = [
        "icmp type destination-unreachable icmp code frag-needed drop",
        "icmpv6 type packet-too-big drop",
    ]
    table = _filter_table(table_name(fault.id), rules, ("forward", "output"))
    for host in ("internet", "router"):
        nft_load(lab.ns(host), table)
    for host, ifname in _mtu_ends(lab):
        run(["ip", "-n", lab.ns(host), "link", "set", ifname, "mtu", str(fault.params["mtu"])])
    return {}


def _clear_mtu(lab: Lab, fault: Fault) -> None:
    recorded = fault.undo.get("mtu", {})
    for host, ifname in _mtu_ends(lab):
        previous = recorded.get(host) if isinstance(recorded, dict) else recorded
        if previous:
            run(["ip", "-n", lab.ns(host), "link", "set", ifname, "mtu", str(previous)])
        _drop_table(lab, fault, host)


define(
    "mtu",
    "the home's internet link gets a small MTU and ICMP 'fragmentation needed' is dropped: "
    "an MTU black hole",
    params=(Param("mtu", int, "the home link's MTU", bounds=(576, 1500)),),
    describe=lambda p: f"home link MTU {p['mtu']}, ICMP fragmentation-needed dropped",
    prepare=_prepare_mtu,
    apply=_mtu,
    undo=_clear_mtu,
)


# -- a stopped service -------------------------------------------------------------------------


def _prepare_stop(lab: Lab, fault: Fault) -> Fault:
    name = fault.params["service"]
    if name not in lab.record.services:
        names = ", ".join(sorted(lab.record.services))
        raise InputError(f"fault stop: no service {name!r} (services: {names})")
    return fault


def _stop(lab: Lab, fault: Fault) -> Params:
    lab.stop_service(fault.params["service"])
    return {}


def _clear_stop(lab: Lab, fault: Fault) -> None:
    if fault.params["service"] in lab.record.services:
        lab.start_service(fault.params["service"])


define(
    "stop",
    "a service (kamailio, sshd, dnsmasq, files, portal, xrdp, gateway-sshd, witness) is stopped",
    params=(Param("service", str, "the service name"),),
    describe=lambda p: f"service {p['service']} stopped",
    target=lambda p: (p["service"],),
    prepare=_prepare_stop,
    apply=_stop,
    undo=_clear_stop,
)


# -- a wrong gateway key -----------------------------------------------------------------------


def _wrong_key_file(lab: Lab) -> Path:
    return lab.run_dir / "gateway" / "wrong.key"


def _wrong_key(lab: Lab, fault: Fault) -> Params:
    from netsetup.fsutil import write_secret
    from netsetup.keys import generate_keypair

    wrong = generate_keypair()
    write_secret(_wrong_key_file(lab), wrong.private.reveal() + "\n")  # 0600 from the first byte
    lab.set_gateway_key(_wrong_key_file(lab))
    return {}


def _clear_wrong_key(lab: Lab, fault: Fault) -> None:
    lab.set_gateway_key(lab.gateway_key_file)
    _wrong_key_file(lab).unlink(missing_ok=True)


define(
    "wrong-key",
    "the gateway runs with a private key that is not the profile's (`wg set`)",
    describe=lambda p: "the gateway runs with a key that is not the profile's",
    apply=_wrong_key,
    undo=_clear_wrong_key,
)


# -- the home LAN in the company's subnet ------------------------------------------------------


def _company_v4_subnet(lab: Lab) -> ipaddress.IPv4Network:
    plan = lab.plan
    nets = [n for n in plan.company_networks if n.version == 4 and n.prefixlen <= 24]
    if nets:
        return nets[0]
    v4_hosts = [h for h in plan.office_hosts if h.version == 4]
    if v4_hosts:
        return ipaddress.IPv4Network(f"{v4_hosts[0]}/24", strict=False)
    raise InputError("fault home-subnet: the profile names no IPv4 company network")


def _prepare_home_subnet(lab: Lab, fault: Fault) -> Fault:
    plan = lab.plan
    subnet = _company_v4_subnet(lab)
    taken = set(plan.office_hosts)
    free = [h for h in subnet.hosts() if h not in taken]
    router_ip, home_ip = free[0], free[min(99, len(free) - 1)]
    undo: dict[str, Any] = {"router": str(plan.router_lan.v4), "home": str(plan.home_lan.v4)}
    client = lab.record.clients.get("home")
    if client is not None and client.config:
        undo["config"] = client.config  # the tunnel to bring back up afterwards
    params = {
        **fault.params,
        "subnet": str(subnet),
        "router_address": f"{router_ip}/{subnet.prefixlen}",
        "home_address": f"{home_ip}/{subnet.prefixlen}",
    }
    return replace(fault, params=params, undo=undo)


def _home_subnet(lab: Lab, fault: Fault) -> Params:
    config = fault.undo.get("config")
    if config:
        wireguard.down(lab.ns("home"), Path(config))
    _readdress(lab, fault.params["router_address"], fault.params["home_address"])
    if not config:
        return {}
    # the tunnel comes up after the LAN, as after a reboot: wg-quick now meets the LAN's route
    try:
        wireguard.up(lab.ns("home"), Path(config))
    except LabError as exc:
        return {"tunnel": f"failed: {exc}"}
    return {"tunnel": "up"}


def _clear_home_subnet(lab: Lab, fault: Fault) -> None:
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


define(
    "home-subnet",
    "the home LAN is moved into the company's subnet, then the tunnel is brought up again "
    "(as after a reboot) and meets the LAN's route",
    describe=lambda p: f"home LAN moved into the company subnet {p.get('subnet', '')}",
    prepare=_prepare_home_subnet,
    apply=_home_subnet,
    undo=_clear_home_subnet,
)


# -- a company name removed from DNS ------------------------------------------------------------


def _host_record(name: str) -> str:
    return f"--host-record={name},"


def _prepare_dns_remove(lab: Lab, fault: Fault) -> Fault:
    name = fault.params["name"]
    if "dnsmasq" not in lab.record.services:
        raise InputError("fault dns-remove: this lab runs no DNS server (dnsmasq)")
    argv = lab.record.service("dnsmasq").argv
    known = [a.split("=", 1)[1].split(",", 1)[0] for a in argv if a.startswith("--host-record=")]
    if name not in known:
        raise InputError(
            f"fault dns-remove: the lab's DNS has no {name!r} (names: {', '.join(known)})"
        )
    return replace(fault, undo={"argv": list(argv)})


def _restart_dnsmasq(lab: Lab, argv: list[str]) -> None:
    lab.stop_service("dnsmasq")
    lab.record.service("dnsmasq").argv = argv
    lab.save()
    lab.start_service("dnsmasq")


def _dns_remove(lab: Lab, fault: Fault) -> Params:
    argv = [a for a in fault.undo["argv"] if not a.startswith(_host_record(fault.params["name"]))]
    _restart_dnsmasq(lab, argv)
    return {}


define(
    "dns-remove",
    "a company name no longer answers: dnsmasq is restarted without its record (NXDOMAIN)",
    params=(Param("name", str, "the company DNS name to remove"),),
    describe=lambda p: f"DNS name {p['name']} removed from the company's DNS",
    target=lambda p: ("dnsmasq",),  # each restart rewrites dnsmasq's arguments: one at a time
    prepare=_prepare_dns_remove,
    apply=_dns_remove,
    undo=lambda lab, fault: _restart_dnsmasq(lab, list(fault.undo["argv"])),
)


# -- a TCP port in the office closed with RST -------------------------------------------------


ANY_ADDRESS = "any"


def _close_port(lab: Lab, fault: Fault) -> Params:
    p = fault.params
    match = ""
    if p["address"] != ANY_ADDRESS:
        family = "ip6" if ":" in p["address"] else "ip"
        match = f"{family} daddr {p['address']} "
    rule = f"{match}tcp dport {p['port']} reject with tcp reset"
    nft_load(lab.ns("office"), _filter_table(table_name(fault.id), [rule], ("input",)))
    return {}


def _prepare_close_port(lab: Lab, fault: Fault) -> Fault:
    address = fault.params["address"]
    if address != ANY_ADDRESS:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InputError(f"fault close-port: {address!r} is not an IP address") from None
    return fault


define(
    "close-port",
    "a TCP port in the office answers with RST (nft `reject with tcp reset`): a stopped service",
    params=(
        Param("port", int, "the TCP port", bounds=(1, 65535)),
        Param("address", str, "only on this office address", ANY_ADDRESS),
    ),
    describe=lambda p: (
        f"tcp port {p['port']} closed (RST) in the office"
        + (f" on {p['address']}" if p["address"] else "")
    ),
    target=lambda p: (p["address"], p["port"]),
    prepare=_prepare_close_port,
    apply=_close_port,
    undo=lambda lab, fault: _drop_table(lab, fault, "office"),
)


# -- the office sshd's host key changed -------------------------------------------------------


def _office_host_key(lab: Lab) -> Path:
    return Path(lab.record.service("sshd").log).parent / "ssh_host_ed25519_key"


def _ssh_hostkey(lab: Lab, fault: Fault) -> Params:
    key = _office_host_key(lab)
    lab.stop_service("sshd")
    for suffix in ("", ".pub"):  # the pinned key is kept beside it, for `clear`
        Path(f"{key}{suffix}").replace(f"{key}.pinned{suffix}")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    lab.start_service("sshd")
    return {}


def _clear_ssh_hostkey(lab: Lab, fault: Fault) -> None:
    key = _office_host_key(lab)
    if not Path(f"{key}.pinned").exists():
        return  # the key was never replaced
    lab.stop_service("sshd")
    for suffix in ("", ".pub"):
        Path(f"{key}.pinned{suffix}").replace(f"{key}{suffix}")
    lab.start_service("sshd")


define(
    "ssh-hostkey",
    "the office sshd gets a new host key and restarts (the profile still pins the old one)",
    describe=lambda p: "the office SSH server's host key was replaced",
    apply=_ssh_hostkey,
    undo=_clear_ssh_hostkey,
)


def _register_more_kinds() -> None:
    import importlib

    from netsetup.lab.faultkinds import MODULES

    for module in MODULES:
        importlib.import_module(f"netsetup.lab.faultkinds.{module}")


_register_more_kinds()
