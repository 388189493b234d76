"""Signed, opaque tokens for keyset cursors and sync positions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from taskapi.errors import ApiError


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Inverse of ``_b64``; raises ``ValueError`` on garbage."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict[str, Any], *, key: bytes, purpose: str) -> str:
    """Serialize and sign ``payload`` for one purpose (a cursor is not a sync token)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, purpose.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(mac)}"


def verify(token: str, *, key: bytes, purpose: str, field: str) -> dict[str, Any]:
    """The payload of a token this server signed; anything else is a 400 on ``field``."""
    try:
        body_text, mac_text = token.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
        expected = hmac.new(key, purpose.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise ValueError("bad signature")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError):
        raise bad_token(field) from None
    return payload


def bad_token(field: str) -> ApiError:
    """The 400 for a forged, corrupted or mismatched token."""
    return ApiError(
        400,
        "validation_error",
        "The request is not valid.",
        details=[{"field": field, "message": f"is not a valid {field} from this server"}],
    )
