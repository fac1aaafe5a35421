"""WireGuard keys: X25519 from `cryptography`, strict base64 parsing, secrets that never print.

`cryptography` (OpenSSL) is constant time and about two orders of magnitude faster than the pure
Python Curve25519 in the `wireguard-tools` package, which is why keys are made here.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

KEY_BYTES = 32
_B64_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")


def is_valid_key(text: str) -> bool:
    """True when `text` is standard base64 of exactly 32 bytes, as `wg` writes keys."""
    if not _B64_KEY.fullmatch(text):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == KEY_BYTES
    except binascii.Error:
        return False


def key_error(text: str) -> str | None:
    """Why `text` is not a WireGuard key, or None when it is one."""
    if is_valid_key(text):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return "not base64"
    if len(raw) == KEY_BYTES:
        return "not canonical base64: its last character before '=' is not what wg writes"
    return f"decodes to {len(raw)} bytes, a WireGuard key is {KEY_BYTES}"


def fingerprint(public_key: str) -> str:
    """A short, stable, non-secret name for a public key (as shown by `list` and the audit log)."""
    digest = sha256(base64.b64decode(public_key)).hexdigest()
    return f"SHA256:{digest[:16]}"


def sha256(data: bytes) -> Any:
    """hashlib.sha256, without loading the system's OpenSSL for one small digest.

    `import hashlib` loads libcrypto (~5 ms, a twentieth of a `provision`); the interpreter's
    own SHA-256 module gives the same digest. hashlib remains the fallback."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.12: _sha2
    except ImportError:
        from hashlib import sha256
    return sha256(data)


class SecretKey:
    """A private or preshared key. Its repr and str never show the value; use `.reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not is_valid_key(value):
            raise ValueError("not a WireGuard key (base64 of 32 bytes)")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:  # never pickle a secret by accident
        raise TypeError("secret keys cannot be pickled")


class KeyPair:
    __slots__ = ("private", "public")

    def __init__(self, private: SecretKey, public: str) -> None:
        self.private = private
        self.public = public

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r}, private=<redacted>)"


def generate_keypair() -> KeyPair:
    # The *_raw() methods avoid importing cryptography's serialization package (~15 ms).
    private = _new_x25519_key()
    return KeyPair(
        SecretKey(base64.b64encode(private.private_bytes_raw()).decode("ascii")),
        base64.b64encode(private.public_key().public_bytes_raw()).decode("ascii"),
    )


def _new_x25519_key() -> Any:
    """`X25519PrivateKey.generate()`, without importing cryptography's OpenSSL backend.

    `generate()` imports that backend (its cipher, RSA and EC modules: a tenth of a whole
    `provision`) only to ask whether FIPS mode is off, then calls the Rust binding below. The
    same question is asked of the binding directly; should that private module move, the public
    API is the fallback."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        if not rust_openssl.is_fips_enabled():
            return rust_openssl.x25519.generate_key()
    except (ImportError, AttributeError):
        pass
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.generate()


def public_from_private(private: SecretKey) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private.reveal())).public_key()
    try:
        raw = key.public_bytes_raw()
    except AttributeError:  # cryptography < 40 (Debian 12's python3-cryptography: the witness)
        from cryptography.hazmat.primitives import serialization

        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def generate_preshared_key() -> SecretKey:
    # os.urandom is what secrets.token_bytes calls, without importing hmac and hashlib
    return SecretKey(base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii"))
