"""`netsetup lab ...`: a throw-away company network on this machine (root only)."""

from __future__ import annotations

import enum
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netsetup.cli.app import app, emit_json
from netsetup.errors import ChecksFailed, ExitCode
from netsetup.lab.faults import KINDS, FaultKind

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab

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


def _load(prefix: str | None) -> Lab:
    from netsetup.lab.lab import Lab

    return Lab.load(prefix)


@lab_app.command()
def up(
    profile: ProfileOpt = DEFAULT_PROFILE,
    empty_gateway: Annotated[
        bool,
        typer.Option(
            "--empty-gateway",
            help="Start the gateway as a fresh machine: no WireGuard interface, no ruleset, no "
            "witness, forwarding off (for `netsetup gateway bootstrap`).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a lab from a profile and leave it running.

    Example:

        sudo netsetup lab up --profile profiles/acme-dental

        sudo netsetup lab up --empty-gateway
    """
    _start()
    from netsetup.lab import Lab

    status = Lab.create(profile, empty_gateway=empty_gateway).up().status()
    if json_out:
        emit_json("netsetup.lab.up/1", status.to_dict())
        return
    prefix, gateway = status.prefix, status.gateway
    typer.echo(f"lab {prefix} is up ({status.run_dir})")
    typer.echo(f"  gateway   {gateway.endpoint} -> {gateway.address}")
    typer.echo(f"  services  {', '.join(status.services)}")
    typer.echo(f"  profile   {status.lab_profile} (state: {status.state_dir})")
    typer.echo(f"next: sudo netsetup lab connect maria --lab {prefix}")
    typer.echo(
        f"      sudo netsetup lab exec home --lab {prefix} -- ping -c1 {gateway.tunnel_address}"
    )
    typer.echo(f"      sudo netsetup lab down --lab {prefix}")


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
    from netsetup.lab.lab import down_all, down_lab

    result = down_all() if all_labs else down_lab(lab)
    if not result.ok:
        raise ChecksFailed("; ".join(result.problems))
    typer.echo(f"removed {', '.join(result.prefixes) or 'nothing (no lab)'}")


@lab_app.command()
def status(lab: LabOpt = None, json_out: JsonOpt = False) -> None:
    """Show a lab's hosts, services, tunnels and faults.

    Example:

        sudo netsetup lab status --json
    """
    _start()
    status = _load(lab).status()
    if json_out:
        emit_json("netsetup.lab.status/1", status.to_dict())
        return
    typer.echo(f"lab {status.prefix} ({'ready' if status.ready else 'not ready'})")
    hosts = ", ".join(f"{h}{'' if ok else ' (missing)'}" for h, ok in status.hosts.items())
    typer.echo(f"  hosts     {hosts}")
    gw = status.gateway
    typer.echo(f"  gateway   {gw.interface} {'up' if gw.up else 'DOWN'} at {gw.endpoint}")
    for name, service in status.services.items():
        state = "running" if service.running else "stopped"
        typer.echo(f"  service   {name} in {service.host}: {state}")
    for host, tunnel in status.tunnels.items():
        if tunnel.peer:
            typer.echo(
                f"  tunnel    {host}: {tunnel.peer} on {tunnel.interface} "
                f"(last handshake {tunnel.latest_handshake or 'never'})"
            )
    for fault in status.faults:
        typer.echo(f"  fault     {fault.id}: {fault.what}")


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
    json_out: JsonOpt = False,
) -> None:
    """Provision an assistant in the lab's profile copy and bring their tunnel up.

    Example:

        sudo netsetup lab connect maria --mode agency
    """
    from netsetup.lab.admin import peer_name

    peer_name(name)  # a bad name is a usage error before any lab is looked at or changed
    _start()
    result = _load(lab).connect(name, mode, host)
    if json_out:
        emit_json("netsetup.lab.connect/1", result.to_dict())
        if not result.ok:
            raise typer.Exit(int(ExitCode.FINDINGS))
        return
    if not result.ok:
        raise ChecksFailed(f"no handshake for {name} on {host} within {result.timeout:.0f} s")
    typer.echo(f"{name} connected from {host}: handshake after {result.handshake_s:.2f}s")


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


@lab_app.command(
    "diagnose", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def diagnose_command(
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Options for `netsetup diagnose` (--json, --report DIR, --only ...)."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Run as this unprivileged user (as an assistant would)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="The assistant's host.")] = "home",
    lab: LabOpt = None,
) -> None:
    """Run `netsetup diagnose` on the assistant's machine in the lab, against the running lab.

    Its output and exit status are diagnose's own. A --report folder is taken from here
    (the run itself starts elsewhere); with --user, that user must be able to write it.

    Example:

        sudo netsetup lab diagnose --report /tmp/diagnose-report

        sudo netsetup lab diagnose --user netsetup-lab -- --json
    """
    _start()
    from netsetup.lab.diagnose import run_diagnose

    extra: dict[str, Any] = {"user": user} if user else {}  # as root unless asked
    result = run_diagnose(_load(lab), _report_path_absolute(list(args or [])), host=host, **extra)
    typer.echo(result.stdout, nl=False)
    typer.echo(result.stderr, nl=False, err=True)
    raise typer.Exit(result.returncode)


def _report_path_absolute(args: list[str]) -> list[str]:
    """diagnose's --report folder as an absolute path: the lab runs it from another folder."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--report" and i + 1 < len(out):
            out[i + 1] = str(Path(out[i + 1]).absolute())
        elif arg.startswith("--report="):
            out[i] = "--report=" + str(Path(arg.partition("=")[2]).absolute())
    return out


def fault_add(kind: str, lab: str | None, json_out: bool, **given: object) -> None:
    """Inject a fault into a running lab.

    Example:

        sudo netsetup lab fault add loss --percent 20

        sudo netsetup lab fault add drop --proto udp --port 5060
    """
    _start()
    params = {name: value for name, value in given.items() if value is not None}
    fault = _load(lab).inject(str(kind), **params)
    if json_out:
        emit_json("netsetup.lab.fault/1", fault.to_dict())
    else:
        typer.echo(f"{fault.id}: {fault.describe()}")


def _fault_add_signature() -> inspect.Signature:
    """`fault add`'s arguments, from the fault registry: KIND, one option per parameter of any
    kind (the core checks which kind takes which, and fills in the defaults), --lab, --json."""
    kinds = list(KINDS.values())
    # Typer offers an Enum's values as the choices
    choices = enum.StrEnum("FaultKindName", [(k, k) for k in KINDS])  # type: ignore[misc]
    kind = typer.Argument(help="The fault: " + ", ".join(KINDS) + " (see below).", metavar="KIND")
    params = [
        _keyword("kind", Annotated[choices, kind]),
        _keyword("lab", LabOpt, None),
        _keyword("json_out", JsonOpt, False),
    ]
    for name, (type_, help_text) in _fault_options(kinds).items():
        option = typer.Option(f"--{name.replace('_', '-')}", help=help_text, show_default=False)
        params.append(_keyword(name, Annotated[type_ | None, option], None))
    return inspect.Signature(params, return_annotation=None)


def _fault_kinds_epilog() -> str:
    """The kinds, one paragraph each (Click rewraps a paragraph, not the list)."""
    return "Kinds:\n\n" + "\n\n".join(f"{k.id}: {k.summary}." for k in KINDS.values())


def _fault_options(kinds: list[FaultKind]) -> dict[str, tuple[type, str]]:
    """Each parameter name with its type and help (`kind: help [default]`, for every kind that
    takes it)."""
    options: dict[str, tuple[type, list[str]]] = {}
    for kind in kinds:
        for param in kind.params:
            default = "" if param.default is None else f" [default: {param.default}]"
            type_, helps = options.setdefault(param.name, (param.type, []))
            if type_ is not param.type:
                raise TypeError(f"fault parameter {param.name} has two types")
            helps.append(f"{kind.id}: {param.help}{default}")
    return {name: (type_, "; ".join(helps)) for name, (type_, helps) in options.items()}


def _keyword(name: str, annotation: object, default: object = inspect.Parameter.empty) -> Any:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


fault_add.__signature__ = _fault_add_signature()  # type: ignore[attr-defined]
fault_app.command("add", epilog=_fault_kinds_epilog())(fault_add)


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
