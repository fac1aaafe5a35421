"""`netsetup init` (a new company's profile) and `netsetup gateway bootstrap` (a fresh gateway
prepared over SSH)."""

# No `from __future__ import annotations` here: Typer reads every command's parameter types when
# it builds the command, and string annotations would cost an eval() each, on every run.
from pathlib import Path
from typing import Annotated

import typer

from netsetup.cli.app import app, emit_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document.")]


@app.command()
def init(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE",
            help="The new profile's folder (profiles/acme-dental; a bare id goes under "
            "./profiles when there is one); its name is the profile id.",
        ),
    ],
    company: Annotated[str, typer.Option("--company", help="The company's name.")],
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            metavar="HOST:PORT",
            help="Where assistants' WireGuard connects: the gateway's public name or address "
            "and UDP port (vpn.company.example:51820).",
        ),
    ],
    tunnel: Annotated[
        str,
        typer.Option("--tunnel", metavar="CIDR", help="The tunnel's IPv4 subnet (198.18.10.0/24)."),
    ],
    office: Annotated[
        list[str],
        typer.Option(
            "--office",
            metavar="CIDR",
            help="An office network dedicated assistants reach (repeatable).",
        ),
    ],
    dns: Annotated[
        list[str],
        typer.Option("--dns", metavar="IP", help="A DNS server of the company (repeatable)."),
    ],
    tunnel6: Annotated[
        str | None,
        typer.Option("--tunnel6", metavar="CIDR", help="The tunnel's IPv6 subnet (a /64)."),
    ] = None,
    sip: Annotated[
        str | None,
        typer.Option(
            "--sip", metavar="HOST", help="The phone system's SIP server address: adds [voip]."
        ),
    ] = None,
    ssh: Annotated[
        str | None,
        typer.Option(
            "--ssh",
            metavar="USER@HOST:PORT",
            help="How netsetup logs in to the gateway over SSH (plan, apply, bootstrap).",
        ),
    ] = None,
    admin_from: Annotated[
        list[str] | None,
        typer.Option(
            "--admin-from",
            metavar="CIDR",
            help="The only sources the gateway's firewall lets reach its SSH (repeatable).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start a company's profile: a commented profile.toml that validates clean, and a fresh
    gateway key pair (the private key only in the state folder, never under profiles/).

    Refuses when the folder already holds a profile.toml.

    Example:

        netsetup init profiles/acme-dental --company "Acme Dental" --endpoint
        vpn.acme-dental.example:51820 --tunnel 198.18.10.0/24 --office 192.0.2.0/24 --dns
        192.0.2.53 --sip 192.0.2.40 --ssh admin@192.0.2.1:22 --admin-from 192.0.2.0/24
    """
    from netsetup.clock import SystemClock
    from netsetup.profile.init import InitRequest, init_profile, profile_folder
    from netsetup.state import StateDir

    request = InitRequest(
        company=company,
        endpoint=endpoint,
        tunnel=tunnel,
        tunnel6=tunnel6,
        office=tuple(office),
        dns=tuple(dns),
        sip=sip,
        ssh=ssh,
        admin_from=tuple(admin_from or ()),
    )
    result = init_profile(profile_folder(profile), request, StateDir(), SystemClock().now())
    if json_out:
        emit_json("netsetup.init/1", result.as_dict())
        return
    details = result.as_dict()
    typer.echo(f"wrote {result.profile_file} (profile {result.profile_id})")
    typer.echo(f"  gateway public key  {result.public_key}")
    typer.echo(f"  gateway private key {result.key_file}  (0600, the state folder only)")
    typer.echo(f"  key fingerprint     {details['gateway_key_fingerprint']}")
    typer.echo(f"next: netsetup validate {profile}")
    if ssh is None:
        typer.echo(f'      add ssh = "admin@HOST:22" to [gateway] in {result.profile_file}')
    typer.echo(f"      netsetup gateway trust {profile}")
    typer.echo(f"      netsetup gateway bootstrap {profile}")
    typer.echo(f"      netsetup provision {profile} NAME --mode dedicated")


def _gateway_group() -> typer.Typer:
    """The `gateway` command group: cli/gateway.py's (plan, apply, trust) when this build has
    it, else one of its own."""
    import importlib.util

    if importlib.util.find_spec("netsetup.cli.gateway") is not None:
        from netsetup.cli import gateway

        group: typer.Typer = gateway.gateway_app
        return group
    group = typer.Typer(
        help="Set up and reach the company's WireGuard gateways over SSH.", no_args_is_help=True
    )
    app.add_typer(group, name="gateway")
    return group


gateway_app = _gateway_group()


@gateway_app.command()
def bootstrap(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE", help="Profile folder (profiles/acme-dental) or id under ./profiles."
        ),
    ],
    gateway: Annotated[
        str | None,
        typer.Option("--gateway", metavar="NAME", help="Only this gateway (site) of the profile."),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            metavar="FILE",
            envvar="NETSETUP_SSH_KEY",
            help="The SSH private key to log in with (default: ssh-agent and ~/.ssh keys).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Prepare a fresh Debian or Ubuntu gateway over SSH, then apply the profile to it.

    Installs wireguard-tools and nftables when missing, turns on forwarding, installs the
    gateway agent (/usr/local/sbin/netsetup-gateway) and, for a non-root login, its sudoers
    line; loads the ruleset at boot (nftables.conf includes /etc/netsetup/nftables/*.nft),
    installs the witness service and enables wg-quick@IFACE, nftables and the witness; then
    does what `netsetup apply` does (the interface comes up, the ruleset is loaded). Each step
    says ok, changed or skipped; running it again changes nothing.

    The SSH login (`[gateway] ssh`, its host key pinned by `netsetup gateway trust`) must be
    root or have full sudo for this command; plan and apply afterwards need only the sudoers
    line it writes.

    Example:

        netsetup gateway bootstrap profiles/acme-dental --identity ~/.ssh/netsetup
    """
    from netsetup.gateway.bootstrap import apply_step, bootstrap_gateway, sites_to_bootstrap
    from netsetup.profile.store import load_profile
    from netsetup.state import StateDir

    loaded = load_profile(profile)
    results = []
    for site in sites_to_bootstrap(loaded, gateway):
        results.append(
            bootstrap_gateway(
                loaded,
                site,
                identity=identity,
                apply=apply_step(identity, StateDir(), _apply_message),
                progress=_progress,
            )
        )
    if json_out:
        emit_json("netsetup.bootstrap/1", {"gateways": [r.as_dict() for r in results]})
        return
    for result in results:
        verdict = "changed" if result.changed else "nothing to change"
        typer.echo(f"gateway {result.gateway} ({result.target}): {verdict}")
        for step in result.steps:
            typer.echo(f"  {step.name:<14} {step}")
    typer.echo(f"next: netsetup plan {profile}   (says in sync)")
    typer.echo(f"      netsetup provision {profile} NAME --mode dedicated, then netsetup apply")


def _progress(gateway: str, step: object) -> None:
    typer.echo(f"{gateway}: {getattr(step, 'name', '')} {step}", err=True)


def _apply_message(gateway: str, message: str) -> None:
    typer.echo(f"{gateway}: apply: {message}", err=True)
