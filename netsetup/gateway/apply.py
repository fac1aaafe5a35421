"""`netsetup apply`: bring each gateway to what the profile says, over SSH, without dropping
anyone and without ever locking the admin out.

Per gateway (several at once, `parallel` at most):
1. connect (the pinned host key; nothing is sent to a gateway that offers another key), `read`;
2. plan (`netsetup.gateway.plan`); refuse on drift unless `adopt` or `prune`, refuse unkeyed
   peers; a gateway in sync gets nothing;
3. upload the config, the ruleset and the profile's public files by SFTP (each to a temporary
   file renamed into place) into the login's stage folder;
4. `commit`: the agent backs everything up, applies (`wg syncconf`, `nft -f`) and arms a revert
   that restores the backup at the deadline unless it is confirmed;
5. over a FRESH connection (the new ruleset must still let the admin in): `read` and check that
   the gateway runs exactly what was planned, then `confirm`; a mismatch is rolled back now. If
   no connection can be made, the gateway reverts itself at the deadline: apply waits for that
   and checks it over yet another connection.
Any failure is exit 3 with the gateway, the step and whether the gateway was restored. Staged
files are removed whatever happens. One line per gateway goes to the admin's audit log.

Nothing here prints: progress goes to an injected callback, results come back as dataclasses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from netsetup.errors import ExitCode, InputError, NetsetupError, RemoteError
from netsetup.gateway.plan import DesiredPeer, DriftPeer, GatewayPlan, make_plan
from netsetup.gateway.state import LivePeer, LiveState, normalise_listing, parse_read
from netsetup.keys import fingerprint
from netsetup.profile.model import Gateway, Peer, Profile
from netsetup.profile.values import format_time
from netsetup.state import StateDir, current_actor

if TYPE_CHECKING:
    from netsetup.gateway.remote import GatewaySession

APPLY_SCHEMA = "netsetup.apply/1"
DEFAULT_CONFIRM_WITHIN = 60
DEFAULT_PARALLEL = 4
# how long after the gateway's revert deadline apply looks again (the timer's own latency)
REVERT_MARGIN = 5.0
REVERT_CHECK_ATTEMPTS = 4
# how long apply waits for the commit's answer: a commit takes seconds even with a thousand peers;
# a new ruleset that silently drops our own connection must not keep apply waiting for minutes
# (the gateway reverts by itself; apply then waits for that instead)
COMMIT_TIMEOUT = 120.0

Progress = Callable[[str, str], None]  # (gateway name, what happens now)


def _quiet(gateway: str, message: str) -> None:
    return None


def overall_exit_code(codes: Iterable[int]) -> int:
    """One exit code for several gateways: 3 when any gateway failed (the report names it),
    else the highest (1: changes pending or refused; 0: all in sync)."""
    listed = list(codes)
    if int(ExitCode.REMOTE) in listed:
        return int(ExitCode.REMOTE)
    return max(listed, default=0)


@dataclass(frozen=True)
class ApplyOptions:
    """How `apply` runs (the CLI's options)."""

    identity: Path | None = None  # SSH key file; else ssh-agent or NETSETUP_SSH_KEY
    gateway: str | None = None  # one site only
    adopt: bool = False
    prune: bool = False
    mode: str | None = None  # the access mode of adopted peers (required with adopt)
    confirm_within: int = DEFAULT_CONFIRM_WITHIN
    parallel: int = DEFAULT_PARALLEL
    timeout: float = 15.0
    progress: Progress = field(default=_quiet, repr=False, compare=False)


Status = Literal["unchanged", "applied", "refused", "failed"]


@dataclass(frozen=True)
class GatewayResult:
    """What apply did on one gateway. `restored`: None when nothing had been changed there,
    True when the gateway is back to what it was, False when that could not be confirmed."""

    gateway: str
    target: str
    status: Status
    step: str | None = None
    error: str | None = None
    restored: bool | None = None
    plan: GatewayPlan | None = None
    adopted: tuple[str, ...] = ()
    backup: str | None = None
    exit_code: int = 0
    staged_left: bool = False  # staged files could not be removed (the next `read` does it)

    @property
    def outcome(self) -> str:
        """One sentence: what the gateway is like now."""
        if self.status == "applied":
            return "applied and confirmed"
        if self.status == "unchanged":
            return "in sync: nothing sent"
        if self.restored is None:
            return "nothing was changed on the gateway"
        if self.restored:
            return "the gateway was restored to what it was"
        return "the gateway may NOT be as it was: check it with `netsetup plan`"

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "ssh": self.target,
            "status": self.status,
            "step": self.step,
            "error": self.error,
            "restored": self.restored,
            "outcome": self.outcome,
            "adopted": list(self.adopted),
            "backup": self.backup,
            "exit_code": self.exit_code,
            "staged_files_left": self.staged_left,
            "plan": self.plan.as_dict() if self.plan else None,
        }


@dataclass(frozen=True)
class ApplyReport:
    """One result per gateway, in the profile's order."""

    profile: str
    results: tuple[GatewayResult, ...]

    @property
    def exit_code(self) -> int:
        return overall_exit_code(r.exit_code for r in self.results)

    @property
    def failed(self) -> tuple[GatewayResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "exit_code": self.exit_code,
            "failed": [r.gateway for r in self.failed],
            "gateways": [r.as_dict() for r in self.results],
        }


class _Failed(Exception):
    """A step failed: carries what the result says (never a secret: agent errors and our own
    words only)."""

    def __init__(self, step: str, error: str, restored: bool | None) -> None:
        super().__init__(error)
        self.step = step
        self.error = error
        self.restored = restored


class _Refused(Exception):
    def __init__(self, reason: str, code: ExitCode = ExitCode.FINDINGS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# -- what goes to the gateway -----------------------------------------------------------------


def profile_tar(profile: Profile) -> bytes:
    """profile.toml and the peer files (public facts only) as a tar the agent unpacks for the
    gateway witness. Deterministic: same files, same bytes."""
    import tarfile

    buffer = io.BytesIO()
    files = [("profile.toml", profile.profile_file)]
    if profile.peers_dir.is_dir():
        files += [
            (f"peers/{path.name}", path)
            for path in sorted(profile.peers_dir.glob("*.toml"))
            if not path.name.startswith(".") and path.is_file() and not path.is_symlink()
        ]
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class _Staged:
    directory: str
    names: tuple[str, ...]


def _stage_names(interface: str) -> tuple[str, str, str]:
    return f"{interface}.conf", f"{interface}.nft", "profile.tar"


def _upload(session: GatewaySession, plan: GatewayPlan, profile: Profile, staged: _Staged) -> None:
    assert plan.desired is not None
    conf_name, nft_name, tar_name = staged.names
    directory = staged.directory
    session.upload(plan.desired.conf.encode(), f"{directory}/{conf_name}", mode=0o600)
    session.upload(plan.desired.ruleset.encode(), f"{directory}/{nft_name}", mode=0o600)
    session.upload(profile_tar(profile), f"{directory}/{tar_name}", mode=0o600)


def _remove_staged(session: GatewaySession, staged: _Staged) -> None:
    """Remove our staged files and any temporary file an upload cut short left beside them."""
    ours = set(staged.names)
    for name in session.listdir(staged.directory):
        base = (
            name[1:].rsplit(".", 2)[0] if name.startswith(".") and name.endswith(".tmp") else name
        )
        if name in ours or base in ours:
            session.remove(f"{staged.directory}/{name}")


# -- verification -----------------------------------------------------------------------------


def verify(plan: GatewayPlan, live: LiveState) -> list[str]:
    """What differs between the planned gateway and the one the agent reads now (peers, their
    preshared keys, AllowedIPs, keepalive, port, key, the loaded ruleset). Never a key in it."""
    desired = plan.desired
    assert desired is not None
    problems: list[str] = []
    facts = live.interface_facts
    if facts is None:
        return [f"interface {plan.interface} is not up"]
    if facts.listen_port != desired.listen_port:
        problems.append(f"listen port {facts.listen_port}, not {desired.listen_port}")
    if facts.public_key != desired.public_key:
        problems.append("the interface runs another key pair")
    problems += _peer_problems(desired.peers, live.peers)
    if live.applied is None or live.applied.source_sha256 != desired.ruleset_sha256:
        problems.append("the loaded ruleset is not the one uploaded")
    elif live.listing is None:
        problems.append(f"the table inet {plan.table} is not loaded")
    elif live.normalised_listing != normalise_listing(live.applied.listing):
        # what the kernel holds now, not only the agent's record of what it loaded
        problems.append(f"the table inet {plan.table} is not what was loaded")
    return problems


def _peer_problems(desired: dict[str, DesiredPeer], running: dict[str, LivePeer]) -> list[str]:
    problems = []
    for key in sorted(set(desired) - set(running)):
        problems.append(f"peer {fingerprint(key)} is missing")
    for key in sorted(set(running) - set(desired)):
        problems.append(f"peer {fingerprint(key)} should not be there")
    for key, want in desired.items():
        have = running.get(key)
        if have is None:
            continue
        if have.networks != want.networks:
            problems.append(f"peer {fingerprint(key)} has other AllowedIPs")
        if have.preshared_key != want.preshared_key:
            problems.append(f"peer {fingerprint(key)} has another preshared key")
        if (have.keepalive or None) != want.keepalive:
            problems.append(f"peer {fingerprint(key)} has another keepalive")
    return problems


# -- adopting drift peers ---------------------------------------------------------------------


def _adopted_name(public_key: str) -> str:
    digest = hashlib.sha256(public_key.encode()).hexdigest()
    return f"adopted-{digest[:8]}"


def _adopted_addresses(site: Profile, drift: DriftPeer) -> tuple[Any, Any]:
    """The peer's tunnel addresses from its AllowedIPs: one /32 in the site's tunnel_v4 and at
    most one /128 in its tunnel_v6; anything else cannot be a netsetup peer."""
    import ipaddress

    v4, v6 = [], []
    for text in drift.peer.allowed_ips:
        network = ipaddress.ip_network(text, strict=False)
        single = network.num_addresses == 1
        if single and network.network_address in site.network.tunnel_v4:
            v4.append(network.network_address)
        elif (
            single
            and site.network.tunnel_v6 is not None
            and network.network_address in site.network.tunnel_v6
        ):
            v6.append(network.network_address)
        else:
            v4, v6 = [], []
            break
    if len(v4) != 1 or len(v6) > 1:
        raise InputError(
            f"peer {drift.fingerprint} on the gateway has AllowedIPs "
            f"{', '.join(drift.peer.allowed_ips) or '(none)'}: a netsetup peer has one address "
            f"in {site.network.tunnel_v4} (and at most one in the IPv6 tunnel subnet); adopt "
            "cannot take it: remove it with --prune, or fix it on the gateway",
            where=f"gateway {site.gateway.name}",
        )
    return v4[0], (v6[0] if v6 else None)


def _importer() -> Any:
    """`netsetup.gateway.importer` (`netsetup import`'s naming and adoption) when this netsetup
    has it; None otherwise."""
    import importlib

    try:
        return importlib.import_module("netsetup.gateway.importer")
    except ImportError:
        return None


def adopt_drift(
    profile: Profile,
    site: Profile,
    drift: Sequence[DriftPeer],
    *,
    mode: str,
    state: StateDir,
    now: datetime,
) -> list[str]:
    """Write a peer file for each drift peer (its key and addresses as the gateway has them, no
    re-keying) and keep its preshared key in this admin's state folder. Returns the names.

    Names come from `netsetup import`'s reading of the comments above the peer (wg-easy, PiVPN,
    wg-quick habits) when that module is there, else `adopted-<8 hex of the key's hash>`."""
    importer = _importer()
    if importer is not None:
        imported = [
            importer.imported_peer(
                d.public_key,
                d.peer.preshared_key,
                d.peer.allowed_ips,
                d.comments,
                keepalive=d.peer.keepalive,
            )
            for d in drift
        ]
        paths = importer.adopt_peers(
            site, imported, mode=mode, now=now, state=state, action="adopt"
        )
        return [Path(path).stem for path in paths]
    return _adopt_by_hash(profile, site, drift, mode=mode, state=state, now=now)


def _adopt_by_hash(
    profile: Profile,
    site: Profile,
    drift: Sequence[DriftPeer],
    *,
    mode: str,
    state: StateDir,
    now: datetime,
) -> list[str]:
    from netsetup.fsutil import ensure_dir, locked
    from netsetup.profile.store import load_peers, write_peer
    from netsetup.profile.values import PeerName, ProfileId

    ensure_dir(profile.peers_dir)
    written: list[str] = []
    with locked(profile.peers_dir / ".lock"):
        existing = load_peers(profile)
        known = {p.public_key for p in existing}
        taken = {p.address_v4 for p in existing} | {p.address_v6 for p in existing}
        for entry in drift:
            if entry.public_key in known:
                continue  # adopted meanwhile (by another gateway's apply)
            v4, v6 = _adopted_addresses(site, entry)
            if v4 in taken or (v6 is not None and v6 in taken):
                raise InputError(
                    f"peer {entry.fingerprint} on the gateway uses an address a peer file of "
                    "the profile holds: adopt cannot take it; remove it with --prune",
                    where=f"gateway {site.gateway.name}",
                )
            name = PeerName(_adopted_name(entry.public_key))
            peer = Peer(
                name=name,
                mode=mode,
                public_key=entry.public_key,
                address_v4=v4,
                address_v6=v6,
                created=now,
                key_origin="client",  # the assistant holds the private key; we never had it
                gateway=site.gateway.name if profile.multi_site else None,
            )
            if entry.peer.preshared_key is not None:
                state.save_psk(
                    ProfileId(profile.id), name, entry.public_key, entry.peer.preshared_key
                )
            write_peer(profile, peer)
            written.append(name)
            taken |= {v4, v6}
    return written


# -- one gateway ------------------------------------------------------------------------------


@dataclass
class _Run:
    """One gateway's apply in progress."""

    profile: Profile
    gateway: Gateway
    state: StateDir
    options: ApplyOptions
    now: datetime
    plan: GatewayPlan | None = None
    adopted: list[str] = field(default_factory=list)
    backup: str | None = None
    staged: _Staged | None = None
    staged_left: bool = False
    step: str = "connect"  # where a failure happened

    @property
    def name(self) -> str:
        return self.gateway.name

    @property
    def where(self) -> str:
        return f"gateway {self.name}, {self.gateway.ssh}"

    def say(self, message: str, *, step: str | None = None) -> None:
        if step is not None:
            self.step = step
        self.options.progress(self.name, message)

    def session(self) -> GatewaySession:
        from netsetup.gateway.remote import GatewaySession

        if self.gateway.ssh is None:
            raise _Refused(
                f'gateway {self.name!r} has no `ssh = "user@host:port"` in the profile',
                ExitCode.USAGE,
            )
        identity = self.options.identity
        if identity is None and os.environ.get("NETSETUP_SSH_KEY"):
            identity = Path(os.environ["NETSETUP_SSH_KEY"])
        return GatewaySession(
            self.gateway.ssh,
            host_key=self.gateway.host_key,
            identity=identity,
            timeout=self.options.timeout,
        )

    def read(self, session: GatewaySession) -> LiveState:
        from netsetup.gateway.firewall import table_name

        answer = session.agent(
            "read",
            "--interface",
            self.gateway.interface,
            "--table",
            table_name(self.gateway.interface),
        )
        return parse_read(answer, where=self.where)


def _site_plan(run: _Run, live: LiveState, peers: Sequence[Peer]) -> GatewayPlan:
    site = run.profile.site(run.name)
    return make_plan(site, peers, live, run.state, run.now, prune=run.options.prune)


def _decide(run: _Run, live: LiveState) -> GatewayPlan:
    """The plan to apply, after adopting drift peers if asked; refuses what must not go on."""
    from netsetup.profile.store import load_peers

    plan = _site_plan(run, live, load_peers(run.profile))
    if live.pending:
        raise _Failed(
            "read",
            "another apply awaits its confirmation on this gateway (a revert is armed until "
            f"{live.pending.get('deadline')}); try again after that",
            None,
        )
    run.plan = plan
    if plan.rules_drift and not run.options.prune:  # before adopting: nothing changes then
        raise _Refused(
            f"drift: the live table inet {plan.table} was changed by hand since netsetup loaded "
            "it; nothing was sent. --prune overwrites those rules (put lasting rules in the "
            "profile; see `netsetup plan` for the diff)"
        )
    if plan.drift_peers and run.options.adopt:
        assert run.options.mode is not None
        run.say(f"adopting {len(plan.drift_peers)} drift peer(s) into the profile")
        site = run.profile.site(run.name)
        run.adopted = adopt_drift(
            run.profile,
            site,
            plan.drift_peers,
            mode=run.options.mode,
            state=run.state,
            now=run.now,
        )
        plan = run.plan = _site_plan(run, live, load_peers(run.profile))
    if plan.drift_peers and run.options.prune:
        for drift in plan.drift_peers:
            ips = ", ".join(drift.peer.allowed_ips) or "(none)"
            run.say(f"--prune: drift peer {drift.fingerprint} {ips} will be removed")
    if plan.drift_peers and not run.options.prune:
        names = ", ".join(d.fingerprint for d in plan.drift_peers)
        raise _Refused(
            f"drift: peer(s) {names} on the gateway are unknown to the profile; nothing was "
            "sent. Take them into the profile with --adopt --mode MODE, or remove them with "
            "--prune (see `netsetup plan`)"
        )
    if plan.unkeyed:
        fixes = "; ".join(f"{u.name}: {u.fix}" for u in plan.unkeyed)
        raise _Refused(f"peer(s) without a preshared key, nothing was sent: {fixes}")
    return plan


def _commit(run: _Run, session: GatewaySession, plan: GatewayPlan) -> tuple[str, float]:
    """Upload and commit; returns the revert token and when (monotonic) the revert fires at
    the latest."""
    from netsetup.gateway.firewall import table_name

    run.say(f"uploading to {session.stage_dir}", step="upload")
    # known before the first byte goes: an upload cut short leaves files (with secrets) that the
    # cleanup must find, with a fresh connection if this one is gone
    run.staged = _Staged(session.stage_dir, _stage_names(plan.interface))
    try:
        _upload(session, plan, run.profile, run.staged)
    except RemoteError as exc:
        raise _Failed("upload", exc.message, None) from None
    run.say(
        f"commit (the gateway reverts by itself unless confirmed within "
        f"{run.options.confirm_within} s)",
        step="commit",
    )
    try:
        answer = session.agent(
            "commit",
            "--interface",
            plan.interface,
            "--table",
            table_name(plan.interface),
            "--profile-id",
            run.profile.id,
            "--stage",
            run.staged.directory,
            "--confirm-within",
            str(run.options.confirm_within),
            timeout=COMMIT_TIMEOUT,
        )
    except RemoteError as exc:
        # the agent may have committed and armed its revert before the connection broke
        raise _Unconfirmed("commit", exc.message) from None
    deadline = time.monotonic() + run.options.confirm_within + REVERT_MARGIN
    run.staged = None  # the agent removes staged files after a commit, whatever its outcome
    if answer.get("ok") is not True:
        raise _Failed(
            str(answer.get("step") or "commit"),
            str(answer.get("error") or "the agent refused the commit"),
            bool(answer.get("restored")),
        )
    run.backup = str(answer.get("backup") or "") or None
    return str(answer.get("token") or ""), deadline


class _Unconfirmed(Exception):
    """The gateway may hold an armed revert we cannot confirm: wait for it."""

    def __init__(self, step: str, error: str) -> None:
        super().__init__(error)
        self.step = step
        self.error = error


def _confirm(run: _Run, plan: GatewayPlan, token: str) -> None:
    """Over a fresh connection: check the gateway runs the plan, then confirm (or roll back)."""
    run.say("confirming over a fresh SSH connection", step="confirm")
    try:
        fresh = run.session()
        fresh.connect()
    except RemoteError as exc:
        error = f"no fresh SSH connection after the commit: {exc.message}"
        raise _Unconfirmed("confirm", error) from None
    with fresh:
        try:
            live = run.read(fresh)
        except RemoteError as exc:
            raise _Unconfirmed("verify", exc.message) from None
        problems = verify(plan, live)
        if problems:
            _roll_back(run, fresh, plan, token, problems)
        try:
            answer = fresh.agent("confirm", "--interface", plan.interface, "--token", token)
        except RemoteError as exc:
            raise _Unconfirmed("confirm", exc.message) from None
        if answer.get("ok") is not True:
            raise _Failed(
                "confirm",
                str(answer.get("error") or "the agent refused the confirmation"),
                bool(answer.get("reverted")) and answer.get("restored") is True,
            )


def _roll_back(
    run: _Run, session: GatewaySession, plan: GatewayPlan, token: str, problems: list[str]
) -> None:
    run.say("the gateway does not run what was planned: rolling back", step="verify")
    error = "the gateway does not run what was planned: " + "; ".join(problems)
    try:
        answer = session.agent("rollback", "--interface", plan.interface, "--token", token)
    except RemoteError as exc:
        raise _Unconfirmed("verify", f"{error}; the rollback failed too ({exc.message})") from None
    if answer.get("ok") is not True:
        error += f"; the rollback failed: {answer.get('error')}"
    raise _Failed("verify", error, answer.get("ok") is True and answer.get("restored") is True)


class _Confirmed:
    """After all: the gateway runs the plan and holds no revert."""


def _await_revert(run: _Run, deadline: float, why: _Unconfirmed) -> _Failed | _Confirmed:
    """No confirmation was possible: the gateway restores its backup at its deadline. Wait past
    it, then check over another connection that it did."""
    wait = max(0.0, deadline - time.monotonic())
    run.say(
        f"{why.error}; the gateway reverts by itself at its deadline: checking again in "
        f"{wait:.0f} s"
    )
    time.sleep(wait)
    last = ""
    for attempt in range(REVERT_CHECK_ATTEMPTS):
        try:
            with run.session() as session:
                live = run.read(session)
        except RemoteError as exc:
            last = exc.message
            time.sleep(REVERT_MARGIN * (attempt + 1))
            continue
        if live.pending:
            return _Failed(why.step, f"{why.error}; the gateway still holds its revert", False)
        if run.plan is not None and run.plan.desired is not None and not verify(run.plan, live):
            return _Confirmed()  # the confirmation went through before the connection broke
        if live.revert_restored is False:
            return _Failed(
                why.step,
                f"{why.error}; the gateway's own revert could not restore its backup: look at "
                "/var/log/netsetup/audit.jsonl on the gateway",
                False,
            )
        return _Failed(why.step, f"{why.error}; the gateway reverted by itself", True)
    return _Failed(
        why.step, f"{why.error}; the gateway could not be reached afterwards either ({last})", False
    )


def _cleanup(run: _Run, session: GatewaySession | None) -> None:
    """Remove staged files the agent did not take (an upload or commit cut short)."""
    staged = run.staged
    if staged is None:
        return
    for attempt in (session, None):
        try:
            if attempt is not None:
                _remove_staged(attempt, staged)
            else:
                with run.session() as fresh:
                    _remove_staged(fresh, staged)
            run.staged = None
            return
        except (RemoteError, _Refused):
            continue
    run.staged_left = True


def _apply_one(run: _Run) -> GatewayResult:
    session: GatewaySession | None = None
    try:
        session = run.session()  # refuses a gateway without `ssh` before anything is said
        run.say(f"connecting to {run.gateway.ssh}", step="connect")
        session.connect()
        run.say("reading the live state", step="read")
        live = run.read(session)
        run.step = "plan"
        plan = _decide(run, live)
        if plan.in_sync:
            run.say("in sync: nothing to do")
            return _result(run, "unchanged")
        token, deadline = _commit(run, session, plan)
        session.close()  # the new ruleset is proven by a fresh connection, not by this one
        try:
            _confirm(run, plan, token)
        except _Unconfirmed as why:
            return _after_wait(run, _await_revert(run, deadline, why))
        run.say("applied and confirmed")
        return _result(run, "applied")
    except _Unconfirmed as why:  # the commit itself broke off
        deadline = time.monotonic() + run.options.confirm_within + REVERT_MARGIN
        return _after_wait(run, _await_revert(run, deadline, why))
    except _Failed as failed:
        return _result(run, "failed", failed.step, failed.error, failed.restored)
    except _Refused as refused:
        return _result(run, "refused", run.step, refused.reason, None, int(refused.code))
    except NetsetupError as exc:
        code = int(exc.exit_code)
        status: Status = "failed" if code == int(ExitCode.REMOTE) else "refused"
        return _result(run, status, run.step, str(exc), None, code)
    finally:
        _cleanup(run, session)
        if session is not None:
            session.close()


def _after_wait(run: _Run, outcome: _Failed | _Confirmed) -> GatewayResult:
    if isinstance(outcome, _Confirmed):
        run.say("applied: the gateway runs the plan and holds no revert")
        return _result(run, "applied")
    return _result(run, "failed", outcome.step, outcome.error, outcome.restored)


def _result(
    run: _Run,
    status: Status,
    step: str | None = None,
    error: str | None = None,
    restored: bool | None = None,
    code: int | None = None,
) -> GatewayResult:
    if code is None:
        code = {"unchanged": 0, "applied": 0, "refused": 1, "failed": 3}[status]
    return GatewayResult(
        gateway=run.name,
        target=str(run.gateway.ssh or ""),
        status=status,
        step=step,
        error=error,
        restored=restored,
        plan=run.plan,
        adopted=tuple(run.adopted),
        backup=run.backup,
        exit_code=code,
        staged_left=run.staged_left,
    )


# -- the audit log ----------------------------------------------------------------------------


def audit_line(profile: Profile, result: GatewayResult, moment: datetime) -> str:
    """One JSON line per gateway apply: what changed (by fingerprint) and how it ended."""
    plan = result.plan
    record: dict[str, Any] = {
        "time": format_time(moment),
        "actor": current_actor(),
        "action": "apply",
        "profile": profile.id,
        "gateway": result.gateway,
        "ssh": result.target,
        "status": result.status,
        "step": result.step,
        "restored": result.restored,
        "error": result.error,
        "adopted": list(result.adopted),
        "backup": result.backup,
    }
    if plan is not None:
        record.update(
            added=[c.fingerprint for c in plan.add],
            removed=[c.fingerprint for c in plan.remove],
            changed=[c.fingerprint for c in plan.change],
            ruleset_sha256=plan.desired.ruleset_sha256 if plan.desired else None,
        )
    return json.dumps(record, sort_keys=True, default=str)


# -- the command ------------------------------------------------------------------------------


def check_options(profile: Profile, options: ApplyOptions) -> list[Gateway]:
    """The gateways to apply to; an InputError for options that do not fit."""
    if options.adopt and not options.mode:
        raise InputError(
            "--adopt needs --mode dedicated|agency: the access of the adopted peers",
            where="--mode",
        )
    if options.mode is not None and options.mode not in ("dedicated", "agency"):
        raise InputError(f"unknown mode {options.mode!r}", where="--mode")
    if options.confirm_within < 5 or options.confirm_within > 3600:
        raise InputError("the confirm window is 5 to 3600 seconds", where="--confirm-within")
    if options.parallel < 1:
        raise InputError("--parallel must be at least 1", where="--parallel")
    if options.gateway is None:
        return list(profile.gateways)
    try:
        return [profile.gateway_named(options.gateway)]
    except KeyError:
        names = ", ".join(g.name for g in profile.gateways)
        raise InputError(
            f"no gateway {options.gateway!r} in the profile (it has: {names})", where="--gateway"
        ) from None


_AUDIT_LOCK = threading.Lock()


def apply_profile(
    profile: Profile,
    state: StateDir,
    options: ApplyOptions,
    *,
    now: datetime | None = None,
) -> ApplyReport:
    """Apply the profile to its gateways (`options.parallel` at once); one result per gateway,
    one audit line per gateway."""
    from netsetup.clock import SYSTEM_CLOCK

    gateways = check_options(profile, options)
    moment = now or SYSTEM_CLOCK.now()

    def one(gateway: Gateway) -> GatewayResult:
        result = _apply_one(_Run(profile, gateway, state, options, moment))
        with _AUDIT_LOCK:
            state.append_audit(audit_line(profile, result, SYSTEM_CLOCK.now()))
        return result

    with ThreadPoolExecutor(max_workers=min(options.parallel, len(gateways))) as pool:
        results = list(pool.map(one, gateways))
    return ApplyReport(profile.id, tuple(results))


# -- plan over SSH ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayPlanResult:
    """The plan of one gateway, or why there is none (the gateway could not be read)."""

    gateway: str
    target: str
    plan: GatewayPlan | None
    error: str | None = None
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = {"gateway": self.gateway, "ssh": self.target}
        if self.plan is not None:
            base.update(self.plan.as_dict())
        return {**base, "error": self.error, "exit_code": self.exit_code}


@dataclass(frozen=True)
class PlanReport:
    """`netsetup plan`: one result per gateway. Exit 0 in sync, 1 changes pending or drift,
    else the worst failure (3: a gateway could not be read)."""

    profile: str
    results: tuple[GatewayPlanResult, ...]

    @property
    def exit_code(self) -> int:
        return overall_exit_code(r.exit_code for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "exit_code": self.exit_code,
            "in_sync": all(r.plan is not None and r.plan.in_sync for r in self.results),
            "gateways": [r.as_dict() for r in self.results],
        }


def _plan_one(run: _Run) -> GatewayPlanResult:
    from netsetup.profile.store import load_peers

    target = str(run.gateway.ssh or "")
    try:
        run.say(f"reading {run.gateway.ssh}", step="read")
        with run.session() as session:
            live = run.read(session)
        plan = _site_plan(run, live, load_peers(run.profile))
    except _Refused as refused:
        return GatewayPlanResult(run.name, target, None, refused.reason, int(refused.code))
    except NetsetupError as exc:
        return GatewayPlanResult(run.name, target, None, str(exc), int(exc.exit_code))
    pending = not plan.in_sync or plan.has_drift
    return GatewayPlanResult(run.name, target, plan, None, int(pending))


def plan_profile(
    profile: Profile, state: StateDir, options: ApplyOptions, *, now: datetime | None = None
) -> PlanReport:
    """Read every gateway (`options.parallel` at once) and plan it; nothing is changed."""
    from netsetup.clock import SYSTEM_CLOCK

    gateways = check_options(profile, options)
    moment = now or SYSTEM_CLOCK.now()
    with ThreadPoolExecutor(max_workers=min(options.parallel, len(gateways))) as pool:
        results = pool.map(lambda g: _plan_one(_Run(profile, g, state, options, moment)), gateways)
        return PlanReport(profile.id, tuple(results))
