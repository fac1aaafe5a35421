"""`netsetup lab ...`: a throw-away company network on this machine (root only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from netsetup.cli.app import app, emit_json
from netsetup.errors import ChecksFailed, ExitCode, InputError

lab_app = typer.Typer(
    help=(
        "A throw-away company network on this machine: namespaces for the internet, the "
        "company gateway and office and the assistant's home, real WireGuard, SIP, SSH and DNS. "
        "Needs root."
    ),
    no_args_is_help=True,
)
fault_app = typer.Typer(
    help="Inject and clear faults (port drops, loss, MTU black hole ...).", no_args_is_help=True
)
lab_app.add_typer(fault_app, name="fault")
app.add_typer(lab_app, name="lab")

LabOpt = Annotated[
    str | None, typer.Option("--lab", help="Lab prefix (default: the only running lab).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]
ProfileOpt = Annotated[
    Path,
    typer.Option("--profile", help="Profile folder the lab is built from (a copy is used)."),
]
DEFAULT_PROFILE = Path("profiles/acme-dental")


def _start() -> None:
    """First thing in every lab command: root or a clear error (before anything is printed or
    built), and SIGTERM unwinds like Ctrl-C for the whole command, so a lab the command builds
    (demo) is removed and a change it makes (connect, fault) is recorded consistently."""
    from netsetup.lab.proc import install_sigterm_interrupt, require_root

    require_root()
    install_sigterm_interrupt()


def _load(prefix: str | None) -> Any:
    from netsetup.lab import Lab

    return Lab.load(prefix)


@lab_app.command()
def up(profile: ProfileOpt = DEFAULT_PROFILE, json_out: JsonOpt = False) -> None:
    """Build a lab from a profile and leave it running.

    Example:

        sudo netsetup lab up --profile profiles/acme-dental
    """
    _start()
    from netsetup.lab import Lab

    lab = Lab.create(profile).up()
    status = lab.status()
    if json_out:
        emit_json("netsetup.lab.up/1", status)
        return
    typer.echo(f"lab {lab.prefix} is up ({lab.run_dir})")
    typer.echo(f"  gateway   {status['gateway']['endpoint']} -> {status['gateway']['address']}")
    typer.echo(f"  services  {', '.join(status['services'])}")
    typer.echo(f"  profile   {status['lab_profile']} (state: {status['state_dir']})")
    typer.echo(f"next: sudo netsetup lab connect maria --lab {lab.prefix}")
    typer.echo(
        f"      sudo netsetup lab exec home --lab {lab.prefix} -- ping -c1 "
        f"{lab.profile().network.gateway_address_v4}"
    )
    typer.echo(f"      sudo netsetup lab down --lab {lab.prefix}")


@lab_app.command()
def down(
    lab: LabOpt = None,
    all_labs: Annotated[
        bool, typer.Option("--all", help="Remove every lab on this machine.")
    ] = False,
) -> None:
    """Remove a lab: every namespace, process, socket and file it made.

    Example:

        sudo netsetup lab down --all
    """
    _start()
    from netsetup.lab import cleanup
    from netsetup.lab.lab import Lab, run_base
    from netsetup.lab.proc import signals_deferred

    if all_labs:
        prefixes = cleanup.all_prefixes(run_base())
        problems: list[str] = []
        with signals_deferred():
            for prefix in prefixes:
                problems += cleanup.teardown(prefix, run_base() / f"netsetup-lab-{prefix}")
            cleanup.remove_created_dirs(run_base())
    else:
        target = Lab.load(lab)
        prefixes = [target.prefix]
        problems = target.down()
    if problems:
        raise ChecksFailed("; ".join(problems))
    typer.echo(f"removed {', '.join(prefixes) or 'nothing (no lab)'}")


@lab_app.command()
def status(lab: LabOpt = None, json_out: JsonOpt = False) -> None:
    """Show a lab's hosts, services, tunnels and faults.

    Example:

        sudo netsetup lab status --json
    """
    _start()
    data = _load(lab).status()
    if json_out:
        emit_json("netsetup.lab.status/1", data)
        return
    typer.echo(f"lab {data['prefix']} ({'ready' if data['ready'] else 'not ready'})")
    hosts = ", ".join(f"{h}{'' if ok else ' (missing)'}" for h, ok in data["hosts"].items())
    typer.echo(f"  hosts     {hosts}")
    gw = data["gateway"]
    typer.echo(f"  gateway   {gw['interface']} {'up' if gw['up'] else 'DOWN'} at {gw['endpoint']}")
    for name, svc in data["services"].items():
        state = "running" if svc["running"] else "stopped"
        typer.echo(f"  service   {name} in {svc['host']}: {state}")
    for host, tunnel in data["tunnels"].items():
        if tunnel["peer"]:
            typer.echo(
                f"  tunnel    {host}: {tunnel['peer']} on {tunnel['interface']} "
                f"(last handshake {tunnel['latest_handshake'] or 'never'})"
            )
    for fault in data["faults"]:
        typer.echo(f"  fault     {fault['id']}: {fault['what']}")


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_command(
    host: Annotated[str, typer.Argument(help="internet, gateway, office, router or home.")],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    lab: LabOpt = None,
) -> None:
    """Run a command on one of the lab's hosts.

    Example:

        sudo netsetup lab exec home -- wg show
    """
    _start()
    result = _load(lab).exec(host, command, capture=False)
    raise typer.Exit(result.returncode)


@lab_app.command()
def connect(
    name: Annotated[str, typer.Argument(help="Peer name to provision (or reuse).")],
    mode: Annotated[str, typer.Option("--mode", help="dedicated or agency.")] = "dedicated",
    host: Annotated[str, typer.Option("--host", help="The client host.")] = "home",
    lab: LabOpt = None,
) -> None:
    """Provision an assistant in the lab's profile copy and bring their tunnel up.

    Example:

        sudo netsetup lab connect maria --mode agency
    """
    _start()
    target = _load(lab)
    if host not in target.record.clients:
        target.add_client_host(host)
    existing = target.run_dir / "clients" / name
    configs = sorted(existing.glob("*.conf")) if existing.is_dir() else []
    config = configs[0] if configs else target.provision(name, mode)
    target.tunnel_up(config, host)
    seconds = target.wait_handshake(host, timeout=15)
    if seconds is None:
        raise ChecksFailed(f"no handshake for {name} on {host} within 15 s")
    typer.echo(f"{name} connected from {host}: handshake after {seconds:.2f}s")


@lab_app.command()
def demo(profile: ProfileOpt = DEFAULT_PROFILE, json_out: JsonOpt = False) -> None:
    """Build a lab, provision an assistant, bring the tunnel up, show it working, remove it.

    Example:

        sudo netsetup lab demo
    """
    _start()
    from netsetup.lab.demo import run_demo

    result = run_demo(profile, (lambda _: None) if json_out else typer.echo)
    if json_out:
        emit_json("netsetup.lab.demo/1", result.as_dict())
    else:
        for check in result.checks:
            typer.echo(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        typer.echo("demo passed" if result.ok else "demo FAILED")
    if not result.ok:
        raise typer.Exit(int(ExitCode.FINDINGS))


@fault_app.command("add")
def fault_add(
    kind: Annotated[str, typer.Argument(help="drop, loss, mtu, stop, wrong-key or home-subnet.")],
    port: Annotated[int | None, typer.Option(help="drop: the port.")] = None,
    proto: Annotated[str, typer.Option(help="drop: udp or tcp.")] = "udp",
    host: Annotated[str, typer.Option(help="drop: where (gateway, internet ...).")] = "gateway",
    percent: Annotated[int | None, typer.Option(help="loss: percent lost.")] = None,
    direction: Annotated[str, typer.Option(help="loss: both, up or down.")] = "both",
    mtu: Annotated[int | None, typer.Option(help="mtu: the home link's MTU.")] = None,
    service: Annotated[str | None, typer.Option(help="stop: the service name.")] = None,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Inject a fault into a running lab.

    Example:

        sudo netsetup lab fault add loss --percent 20

        sudo netsetup lab fault add drop --proto udp --port 5060
    """
    _start()
    params: dict[str, Any] = {}
    if kind == "drop":
        if port is None:
            raise InputError("drop needs --port")
        params = {"proto": proto, "port": port, "host": host}
    elif kind == "loss":
        if percent is None:
            raise InputError("loss needs --percent")
        params = {"percent": percent, "direction": direction}
    elif kind == "mtu":
        if mtu is None:
            raise InputError("mtu needs --mtu")
        params = {"mtu": mtu}
    elif kind == "stop":
        if service is None:
            raise InputError("stop needs --service")
        params = {"service": service}
    fault = _load(lab).inject(kind, **params)
    if json_out:
        emit_json("netsetup.lab.fault/1", fault.to_dict())
    else:
        typer.echo(f"{fault.id}: {fault.describe()}")


@fault_app.command("clear")
def fault_clear(
    fault: Annotated[
        str | None, typer.Argument(help="Fault id or kind (default: all faults).")
    ] = None,
    lab: LabOpt = None,
) -> None:
    """Clear one fault, or all of them.

    Example:

        sudo netsetup lab fault clear
    """
    _start()
    cleared = _load(lab).clear(fault)
    typer.echo("cleared " + (", ".join(f.id for f in cleared) or "nothing"))
