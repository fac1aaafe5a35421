"""The gateway witness as a service on the gateway: the entry point of the zipapp `gateway
bootstrap` installs (`/usr/local/lib/netsetup/netsetup-witness.pyz`), run by the unit
`netsetup-witness@<profile id>.service` with the gateway's own python3.

It needs neither Typer nor the rest of the admin's command line: only the profile files the
gateway agent installs (`/etc/netsetup/profiles/<id>`), the witness and `cryptography` (Debian's
python3-cryptography). `--check` imports everything the witness uses and derives a public key
once: bootstrap runs it to know the service can start on this gateway.
"""

from __future__ import annotations

import argparse
import sys
import threading

# `--check`'s exit status when only the cryptography package is missing (apt can fix that)
NO_CRYPTOGRAPHY = 3


def check() -> str:
    """Import what the witness uses and derive one X25519 public key: raises if it cannot."""
    import base64
    import os

    from netsetup.keys import SecretKey, public_from_private
    from netsetup.responder import witness  # noqa: F401  (the import is the check)

    public_from_private(SecretKey(base64.b64encode(os.urandom(32)).decode("ascii")))
    import cryptography

    return f"python {sys.version.split()[0]}, cryptography {cryptography.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="netsetup-witness", description="netsetup's gateway witness (a service)."
    )
    parser.add_argument("--profile", help="the profile folder the gateway agent installed")
    parser.add_argument("--check", action="store_true", help="check the runtime and exit")
    args = parser.parse_args(argv)
    if args.check:
        try:
            print(f"ok: {check()}")
        except ModuleNotFoundError as exc:
            print(f"error: the witness cannot run here: no module {exc.name!r}")
            missing = (exc.name or "").partition(".")[0]
            return NO_CRYPTOGRAPHY if missing == "cryptography" else 1
        except Exception as exc:  # the runtime is what is being checked: say what is missing
            print(f"error: the witness cannot run here: {type(exc).__name__}: {exc}")
            return 1
        return 0
    if not args.profile:
        parser.error("--profile is required")
    return _serve(args.profile)


def _serve(profile_dir: str) -> int:
    import signal

    from netsetup.errors import NetsetupError
    from netsetup.profile.store import load_profile
    from netsetup.responder.witness import Serving, run_gateway_witness

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def ready(serving: Serving) -> None:
        where = ", ".join(serving.addresses)
        print(
            f"witness of {serving.profile_id} on udp {serving.port} ({where}), key: {serving.key}"
        )
        sys.stdout.flush()

    def failed(exc: BaseException) -> None:
        print(f"warning: a packet was dropped: {type(exc).__name__}", file=sys.stderr)

    try:
        run_gateway_witness(load_profile(profile_dir), stop=stop, on_ready=ready, on_error=failed)
    except NetsetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
