"""Building a lab, in the order `down` can undo from any point: the run directory and its record
first, then namespaces and links, the profile copy with a fresh gateway key, the gateway's
WireGuard and firewall, the office's services, the witness and the office responder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netsetup.lab import admin, cleanup, services, topology, tunnels, wireguard
from netsetup.lab.labprofile import (
    host_key_fingerprint,
    pin_gateway_ssh,
    pin_ssh_host_keys,
    write_lab_profile,
)
from netsetup.lab.proc import LabError, require_kamailio_tls, require_programs
from netsetup.lab.record import ClientHost, run_base

if TYPE_CHECKING:
    from netsetup.lab.lab import Lab


def check_prerequisites(source_profile: Path, *, empty_gateway: bool = False) -> None:
    """Every program and module a lab of `source_profile` uses is installed, or one error naming
    the missing Debian packages, before anything is built."""
    from netsetup.profile.store import load_profile

    require_programs()
    voip = load_profile(source_profile).voip
    if voip is not None and "tls" in voip.transports:
        require_kamailio_tls()
    if empty_gateway:
        require_gateway_python()


# what `gateway bootstrap` finds on the lab's gateway; else it would install it with apt, and
# /usr is the host's own (the gateway's sshd has overlays on /etc, /usr/local, /var/lib only)
GATEWAY_PYTHON = "/usr/bin/python3"
GATEWAY_PYTHON_PACKAGES = "python3 python3-cryptography"


def require_gateway_python() -> None:
    """The system's python3 imports cryptography: the witness bootstrap installs runs with it."""
    from netsetup.lab.proc import run

    imports = Path(GATEWAY_PYTHON).is_file() and (
        run([GATEWAY_PYTHON, "-I", "-c", "import cryptography"], check=False).ok
    )
    if not imports:
        raise LabError(
            "a lab with an empty gateway needs the system's python3 with cryptography (what "
            f"`gateway bootstrap` would otherwise install there with apt, on this host): install "
            f"the Debian packages {GATEWAY_PYTHON_PACKAGES} (see .ci/lab-setup.sh)"
        )


def build(lab: Lab) -> None:
    """Everything of `lab`; the caller removes what was built when this fails."""
    lab.run_dir.mkdir(parents=True, mode=0o700)
    # host directories the lab's tools need; the ones that did not exist go again at `down`
    lab.record.created_dirs = [str(d) for d in cleanup.HOST_DIRS if not d.exists()]
    cleanup.note_created_dirs(run_base(), [Path(d) for d in lab.record.created_dirs])
    lab.save()  # from here on, `down` finds this lab even if we die
    topology.build(lab.names, lab.plan, lab.run_dir)
    prepare_profile(lab)
    if lab.record.empty_gateway:
        empty_gateway(lab)
    else:
        start_gateway(lab)
    start_services(lab)
    if not lab.record.empty_gateway:
        start_witness(lab)
    start_office_responder(lab)
    lab.record.clients["home"] = ClientHost("home", lab.names.client_wg(0), index=0)
    tunnels.check_interface_names(lab)
    lab.record.ready = True
    lab.save()


def prepare_profile(lab: Lab) -> None:
    """The lab's gateway key (0600), its state directory, and its copy of the profile."""
    from netsetup.fsutil import write_secret
    from netsetup.keys import generate_keypair
    from netsetup.profile.store import load_profile

    keypair = generate_keypair()
    write_secret(lab.gateway_key_file, keypair.private.reveal() + "\n")
    lab.state_dir.mkdir(mode=0o700)
    source = load_profile(lab.record.source_profile)
    write_lab_profile(source, lab.profile_dir.parent, keypair.public, lab.gateway_interface)
    if lab.profile().gateway.public_key != keypair.public:
        raise LabError("the lab's profile copy did not take the lab's gateway key")


def empty_gateway(lab: Lab) -> None:
    """The gateway as a fresh Debian machine is: forwarding off, no WireGuard, no ruleset. The
    gateway's private key goes where `netsetup init` puts it (the admin's state folder), so
    `plan` and `apply` can render the gateway's config before any interface holds it."""
    from netsetup.keys import SecretKey
    from netsetup.lab.proc import ns_run
    from netsetup.state import StateDir

    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        ns_run(lab.ns("gateway"), ["sysctl", "-q", "-w", f"{key}=0"])
    private = SecretKey(lab.gateway_key_file.read_text().strip())
    StateDir(lab.state_dir).save_gateway_key(lab.profile().id, private)


def start_gateway(lab: Lab) -> None:
    admin.render_gateway(lab)
    wireguard.up(lab.ns("gateway"), lab.gateway_config)
    admin.load_firewall(lab)


def start_services(lab: Lab) -> None:
    services.ensure_client_key(lab.run_dir / "ssh-client")
    hosts = services.ServiceHosts(
        office=lab.ns("office"),
        gateway=lab.ns("gateway"),
        directory=lab.run_dir / "services",
        authorized_keys=lab.run_dir / "ssh-client" / "authorized_keys",
        gateway_root=lab.gateway_root,
    )
    for service in services.lab_services(lab.profile(), lab.plan, hosts, lab.clock.now()):
        lab.record.add_service(service)
        lab.save()  # recorded before it starts: `down` stops it even if we die meanwhile
        services.start(service)
        lab.save()
    office_key = hosts.directory / "sshd-office" / "ssh_host_ed25519_key.pub"
    pin_ssh_host_keys(lab.profile_dir, host_key_fingerprint(office_key))
    gateway_key = hosts.directory / "sshd-gateway" / "ssh_host_ed25519_key.pub"
    pin_gateway_ssh(
        lab.profile_dir,
        ssh=f"root@{lab.plan.gateway_lan.v4.ip}:22",
        host_key=host_key_fingerprint(gateway_key),
        admin_from=[str(lab.plan.office_lan.v4.network)],
    )
    # the ruleset loaded before named the source profile's admin_from (documentation addresses):
    # load it again with the lab's, or the office could not reach the gateway's SSH (an empty
    # gateway has none: `gateway bootstrap` brings it)
    if not lab.record.empty_gateway:
        admin.load_firewall(lab)
    services.trust_portal_certificate(lab.ns("home"), hosts.directory / "portal")


def start_witness(lab: Lab) -> None:
    """The witness on the gateway, once its WireGuard and firewall are up (none when the profile
    turns it off)."""
    port = lab.profile().gateway.witness_port
    if not port:
        return
    service = services.witness_service(
        lab.ns("gateway"),
        lab.profile_dir,
        lab.state_dir,
        lab.gateway_key_file,
        port,
        lab.run_dir / "services" / "witness",
    )
    lab.record.add_service(service)
    lab.save()
    services.start(service)
    lab.save()


def start_office_responder(lab: Lab) -> None:
    """The office responder in the office, on `[diagnose] responder` (none without one, or when
    that is a name), with the lab state's token (made here: the lab provisions nobody yet)."""
    import ipaddress

    from netsetup.state import StateDir

    profile = lab.profile()
    responder = profile.diagnose.responder
    if responder is None:
        return
    try:
        address = str(ipaddress.ip_address(responder[0]))
    except ValueError:
        return
    StateDir(lab.state_dir).responder_token(profile.id)
    service = services.office_responder_service(
        lab.ns("office"),
        lab.profile_dir,
        lab.state_dir,
        address,
        responder[1],
        lab.run_dir / "services" / "office-responder",
    )
    lab.record.add_service(service)
    lab.save()
    services.start(service)
    lab.save()
