"""Secrets of the web console that are not card keys: password hashes, session tokens, CSRF tokens,
citizens' one-time codes.

- Passwords: scrypt (RFC 7914) from :mod:`hashlib`, N=2**14, r=8, p=1, a 16-byte random salt, stored as
  ``scrypt$N$r$p$<salt hex>$<hash hex>`` and compared in constant time.
- Session tokens: 32 random bytes (``secrets``), URL-safe base64 in the cookie; the database keeps only their
  SHA-256, so a copy of the table opens no session.
- CSRF tokens: 32 random bytes per session, in every form and in the ``X-CSRF-Token`` header of API calls.
- One-time codes: 6 random digits; the database keeps their SHA-256 beside the key they are for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "hash_password",
    "new_one_time_code",
    "new_token",
    "same",
    "token_hash",
    "verify_password",
]

_N, _R, _P = 2**14, 8, 1
_MAX_PASSWORD = 256


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """The stored form of ``password`` (8 to 256 characters; ``ValueError`` otherwise)."""
    if not 8 <= len(password) <= _MAX_PASSWORD:
        raise ValueError("a password is 8 to 256 characters")
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${_scrypt(password, salt, _N, _R, _P).hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (False for a malformed ``stored``)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or len(password) > _MAX_PASSWORD:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_one_time_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"
