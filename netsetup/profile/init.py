"""`netsetup init`: a new company's profile from a few answers, with a fresh gateway key pair.

The profile.toml it writes is commented like the shipped profiles (what each table means, what
to do next) and is parsed back in memory before anything is written, so it validates clean or
nothing is written at all. The gateway's private key goes only into the admin's state folder
(`StateDir.gateway_key_path`, 0600 in 0700 folders), never under profiles/; its public key goes
into `[gateway] public_key`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from netsetup.errors import ConflictError, InputError
from netsetup.profile import values as v
from netsetup.profile.model import DEFAULTS, Profile
from netsetup.state import StateDir

PROFILE_FILE = "profile.toml"
T = TypeVar("T")


@dataclass(frozen=True)
class InitRequest:
    """What the admin answered (`netsetup init` options), as given: checked by `init_profile`."""

    company: str
    endpoint: str
    tunnel: str
    office: tuple[str, ...]
    dns: tuple[str, ...]
    tunnel6: str | None = None
    sip: str | None = None
    ssh: str | None = None
    admin_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class InitResult:
    """What `init` wrote: never a secret (the key file's path and the public key only)."""

    profile_id: str
    profile_file: Path
    public_key: str
    key_file: Path

    def as_dict(self) -> dict[str, Any]:
        from netsetup.keys import fingerprint

        return {
            "profile": self.profile_id,
            "profile_file": str(self.profile_file),
            "gateway_public_key": self.public_key,
            "gateway_key_fingerprint": fingerprint(self.public_key),
            "gateway_key_file": str(self.key_file),
        }


@dataclass(frozen=True)
class _Answers:
    """The request, every value parsed."""

    company: str
    endpoint: str
    tunnel: v.IPNetwork
    tunnel6: v.IPNetwork | None
    office: tuple[v.IPNetwork, ...]
    dns: tuple[v.IPAddress, ...]
    sip: v.IPAddress | None
    ssh: str | None
    admin_from: tuple[v.IPNetwork, ...]


def _parsed(option: str, text: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise InputError(str(exc), where=option) from None


def _family(option: str, network: v.IPNetwork, version: int) -> v.IPNetwork:
    if network.version != version:
        raise InputError(f"{network} is not an IPv{version} subnet", where=option)
    return network


def _company(text: str) -> str:
    name = v.check_text(text, "company name").strip()
    if not name:
        raise ValueError("the company name is empty")
    return name


def parse_answers(request: InitRequest) -> _Answers:
    """Every answer checked with the parsers the profile schema uses; a bad one is an
    InputError naming its option."""
    if not request.office:
        raise InputError("give at least one office network (--office CIDR)", where="--office")
    if not request.dns:
        raise InputError("give at least one DNS server (--dns IP)", where="--dns")
    host, port = _parsed("--endpoint", request.endpoint, v.parse_endpoint)
    tunnel = _family("--tunnel", _parsed("--tunnel", request.tunnel, v.parse_tunnel), 4)
    tunnel6 = None
    if request.tunnel6 is not None:
        tunnel6 = _family("--tunnel6", _parsed("--tunnel6", request.tunnel6, v.parse_tunnel), 6)
    ssh = None
    if request.ssh is not None:
        user, ssh_host, ssh_port = _parsed("--ssh", request.ssh, v.parse_ssh_target)
        ssh = _ssh_text(user, ssh_host, ssh_port)
    return _Answers(
        company=_parsed("--company", request.company, _company),
        endpoint=f"[{host}]:{port}"
        if isinstance(host, ipaddress.IPv6Address)
        else f"{host}:{port}",
        tunnel=tunnel,
        tunnel6=tunnel6,
        office=tuple(_parsed("--office", o, v.parse_destination) for o in request.office),
        dns=tuple(_parsed("--dns", d, v.parse_service_address) for d in request.dns),
        sip=_parsed("--sip", request.sip, v.parse_service_address) if request.sip else None,
        ssh=ssh,
        admin_from=tuple(_parsed("--admin-from", a, v.parse_network) for a in request.admin_from),
    )


def _ssh_text(user: str, host: str | v.IPAddress, port: int) -> str:
    from netsetup.profile.model import SshTarget

    return str(SshTarget(user, host, port))


def _string(value: str) -> str:
    """A TOML basic string (what the store writes peer files with)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def _array(items: Sequence[object]) -> str:
    return "[" + ", ".join(_string(str(item)) for item in items) + "]"


def render_profile(answers: _Answers, profile_id: str, public_key: str, today: str) -> str:
    """The commented profile.toml of a new company."""
    lines = [
        f"# {answers.company}: written by `netsetup init` on {today}.",
        "# Each table says what it is for; `netsetup validate` checks the whole file and",
        "# `netsetup rule NSxxx` explains a finding.",
        "#",
        "# Next steps:",
        f"#   netsetup gateway trust profiles/{profile_id}       pin the gateway's SSH host key",
        f"#   netsetup gateway bootstrap profiles/{profile_id}   WireGuard, firewall and witness",
        f"#   netsetup provision profiles/{profile_id} NAME --mode dedicated",
        f"#   netsetup apply profiles/{profile_id}               the new peer onto the gateway",
        "",
        "[company]",
        f"name = {_string(answers.company)}",
        '# contact = "it@company.example"   (who assistants ask: shown in diagnose\'s answers)',
        "",
        "# The WireGuard gateway: where assistants connect, and how netsetup reaches it over SSH.",
        "# Its private key is in the admin's state folder only, never in this folder.",
        "[gateway]",
        f"endpoint = {_string(answers.endpoint)}",
        f"public_key = {_string(public_key)}",
    ]
    if answers.ssh is not None:
        lines += [
            "# plan/apply/bootstrap log in here with an SSH key (no passwords); the host key is",
            "# pinned by `netsetup gateway trust`",
            f"ssh = {_string(answers.ssh)}",
        ]
    else:
        lines.append('# ssh = "admin@gateway.example:22"   (how plan/apply/bootstrap log in)')
    if answers.admin_from:
        lines += [
            "# the only sources the gateway's firewall lets reach its SSH",
            f"admin_from = {_array(answers.admin_from)}",
        ]
    lines += [
        "",
        "# The tunnel's own subnets: the gateway takes the first address, assistants the rest.",
        "[network]",
        f"tunnel_v4 = {_string(str(answers.tunnel))}",
    ]
    if answers.tunnel6 is not None:
        lines.append(f"tunnel_v6 = {_string(str(answers.tunnel6))}")
    lines += [
        "# seconds between keepalives: keeps assistants behind a home router's NAT reachable",
        f"keepalive = {DEFAULTS.keepalive}",
    ]
    lines += [
        "",
        "# The company's DNS servers, handed to every assistant's tunnel.",
        "[dns]",
        f"servers = {_array(answers.dns)}",
        "",
        "# What each access mode reaches. dedicated: the office networks. agency: add the",
        "# portals ([[portal]] tables) an agency assistant may use, or leave agency out.",
        "[access]",
        f"dedicated = {_array(answers.office)}",
    ]
    if answers.sip is not None:
        lines += [
            "",
            "# The phone system: every mode reaches its SIP and RTP ports.",
            "[voip]",
            f"sip_server = {_string(str(answers.sip))}",
        ]
    return "\n".join(lines) + "\n"


def _checked_profile(text: str, directory: Path) -> Profile:
    """`text` parsed as the schema reads profile.toml: what is written must load."""
    from netsetup.profile.schema import parse_profile_data, parse_toml

    data, syntax = parse_toml(text)
    issue = syntax
    profile = None
    if data is not None:
        profile, issues = parse_profile_data(data, directory)
        issue = issues[0] if issues else None
    if issue is not None or profile is None:
        message = issue.message if issue is not None else "the profile did not parse"
        raise InputError(f"these answers do not make a valid profile: {message}")
    return profile


def profile_folder(ref: str) -> Path:
    """PROFILE as `init` takes it: a folder path, or a bare id, which goes under
    $NETSETUP_PROFILES or ./profiles when there is one (where the other commands look for it)."""
    import os

    path = Path(ref)
    if len(path.parts) == 1 and ref not in (".", ".."):
        base = os.environ.get("NETSETUP_PROFILES")
        if base or Path("profiles").is_dir():
            return Path(base or "profiles") / ref
    return path


def _profile_id(directory: Path) -> v.ProfileId:
    try:
        return v.ProfileId(directory.name, "profile folder name")
    except ValueError as exc:
        raise InputError(str(exc), where=str(directory)) from None


def init_profile(
    directory: Path, request: InitRequest, state: StateDir, now: datetime
) -> InitResult:
    """Write `directory`/profile.toml for a new company and its gateway key into `state`.

    Refused, with nothing written: a profile.toml already there, a state folder inside the
    profiles folder, a gateway key already stored for this profile id (it may be in use)."""
    from netsetup.fsutil import atomic_write, remove_file
    from netsetup.keys import generate_keypair
    from netsetup.provision.service import refuse_inside_profiles

    directory = directory.resolve() if directory.name in ("", ".", "..") else directory
    profile_id = _profile_id(directory)
    answers = parse_answers(request)
    target = directory / PROFILE_FILE
    if target.exists() or target.is_symlink():
        raise ConflictError(
            "a profile is already there; init never overwrites one (edit it, or choose "
            "another folder)",
            where=str(target),
        )
    if directory.exists() and not directory.is_dir():
        raise InputError("not a folder: a file is in the way", where=str(directory))
    key_path = state.gateway_key_path(profile_id)
    if key_path.exists() or key_path.is_symlink():
        raise ConflictError(
            f"the state folder already holds a gateway key for profile {profile_id!r}; it may "
            "be in use: move it away first if it is not",
            where=str(key_path),
        )
    keypair = generate_keypair()
    text = render_profile(answers, profile_id, keypair.public, now.date().isoformat())
    profile = _checked_profile(text, directory)
    refuse_inside_profiles(state.root, profile, what="the state folder ($NETSETUP_STATE_DIR)")
    stored = state.save_gateway_key(profile_id, keypair.private)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text, mode=0o644)
    except BaseException:
        remove_file(stored)  # the key of a profile that was never written would mislead later
        raise
    return InitResult(profile_id, target, keypair.public, stored)
