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
        Path,
        typer.Argument(
            metavar="PROFILE",
            help="The new profile's folder (profiles/acme-dental); its name is the profile id.",
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
    from netsetup.profile.init import InitRequest, init_profile
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
    result = init_profile(profile, request, StateDir(), SystemClock().now())
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
