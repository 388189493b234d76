"""Password hashing: bcrypt over a SHA-256 pre-hash so that every character counts."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

import bcrypt


def _prehash(password: str) -> bytes:
    """SHA-256 then base64: 44 bytes, so bcrypt's 72-byte limit never drops a character."""
    digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)


def hash_password(password: str, *, rounds: int) -> str:
    """A bcrypt hash of the pre-hashed password."""
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Check a password; a malformed stored hash simply does not verify."""
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:
        return False


@cache
def dummy_hash(rounds: int) -> str:
    """A hash to check unknown emails against, so login timing reveals nothing."""
    return hash_password("not-a-real-password", rounds=rounds)
