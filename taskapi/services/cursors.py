"""Opaque tokens for keyset cursors and sync positions: authenticated encryption (Fernet).

A cursor holds the sort key of the last item it points after, and for ``sort=title`` that is
a task's title: encrypting it (not only signing it) keeps task content out of URLs, proxy
logs and browser histories. Each purpose has its own key derived from the secret, so a
cursor is never accepted as a sync token or the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from taskapi.errors import BadToken

# Fernet tokens are URL-safe base64; base64 decoding would silently skip other characters.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@lru_cache(maxsize=16)
def _fernet(key: bytes, purpose: str) -> Fernet:
    """The cipher of one purpose, keyed by HMAC-SHA256(secret, purpose)."""
    derived = hmac.new(key, f"taskapi token:{purpose}".encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(payload: dict[str, Any], *, key: bytes, purpose: str) -> str:
    """Serialize and encrypt ``payload`` for one purpose."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return _fernet(key, purpose).encrypt(body).decode("ascii")


def open_token(token: str, *, key: bytes, purpose: str, field: str) -> dict[str, Any]:
    """The payload of a token this server sealed for ``purpose``; else ``BadToken(field)``."""
    if not TOKEN_SHAPE.fullmatch(token):
        raise BadToken(field)
    try:
        payload = json.loads(_fernet(key, purpose).decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError, TypeError):  # UnicodeError is a ValueError
        raise BadToken(field) from None
    if not isinstance(payload, dict):
        raise BadToken(field)
    return payload
