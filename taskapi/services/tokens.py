"""Personal access tokens: long-lived, scoped, revocable API tokens for scripts and curl.

A token is ``tapi_`` + 40 random base-62 characters + a 6-character CRC-32 checksum of them.
The fixed prefix lets secret scanners find leaked tokens; the checksum rejects a mistyped one
without a database lookup. Only the SHA-256 of the token and a short display prefix are
stored, so a copy of the database cannot be used to call the API.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.errors import NotFound, QuotaExceeded
from taskapi.models import PersonalToken, User
from taskapi.services.outbox import Message, enqueue

PREFIX = "tapi_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
BODY_LENGTH = 40  # 62^40 is about 2^238
CHECKSUM_LENGTH = 6
SHAPE = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}$")
SCOPES = ("lists:read", "lists:write", "tasks:read", "tasks:write")
DISPLAY_LENGTH = len(PREFIX) + 6
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


def _base62(number: int, width: int) -> str:
    """``number`` in base 62, left-padded to ``width`` digits."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    """The CRC-32 of the random part, in base 62."""
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def mint() -> str:
    """A new token."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return f"{PREFIX}{body}{_checksum(body)}"


def is_personal(token: str) -> bool:
    """Whether a bearer token claims to be a personal token (by its prefix)."""
    return token.startswith(PREFIX)


def well_formed(token: str) -> bool:
    """The shape and checksum hold: worth a database lookup."""
    if not SHAPE.fullmatch(token):
        return False
    body = token[len(PREFIX) : len(PREFIX) + BODY_LENGTH]
    return secrets.compare_digest(token[-CHECKSUM_LENGTH:], _checksum(body))


def token_hash(token: str) -> bytes:
    """What is stored: the SHA-256 (the token has ~238 bits of entropy: no salt or slow hash)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenCheck:
    """What one indexed lookup of a presented token learned."""

    token_id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]
    expired: bool
    disabled: bool
    email_verified: bool
    needs_touch: bool


# Built once with a bound parameter, as the session check is: building ``.where(...)`` on
# every request cost about 0.1 ms of SQLAlchemy's statement and cache-key work.
_LOOKUP = (
    select(
        PersonalToken.id,
        PersonalToken.user_id,
        PersonalToken.scopes,
        PersonalToken.expires_at,
        PersonalToken.last_used_at,
        User.email_verified,
        User.disabled_at,
    )
    .join(User, User.id == PersonalToken.user_id)
    .where(PersonalToken.token_hash == bindparam("token_hash"))
    .limit(1)
)


def check(db: DbSession, *, token: str, now: datetime) -> TokenCheck | None:
    """The token's owner and scopes (None: unknown or revoked), in one indexed lookup."""
    row = db.execute(_LOOKUP, {"token_hash": token_hash(token)}).first()
    if row is None:
        return None
    token_id, user_id, scopes, expires_at, last_used_at, verified, disabled_at = row
    return TokenCheck(
        token_id=token_id,
        user_id=user_id,
        scopes=frozenset(scopes.split()),
        expired=expires_at is not None and expires_at <= now,
        disabled=disabled_at is not None,
        email_verified=bool(verified),
        needs_touch=last_used_at is None or last_used_at <= now - TOUCH_EVERY,
    )


def touch(db: DbSession, *, token_id: uuid.UUID, now: datetime) -> None:
    """Record a use, at most once a minute per token (the condition keeps concurrent
    requests of one minute from writing twice)."""
    with write(db):
        db.execute(
            update(PersonalToken)
            .where(
                PersonalToken.id == token_id,
                (PersonalToken.last_used_at.is_(None))
                | (PersonalToken.last_used_at <= now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )


def create(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_in_days: int | None,
    now: datetime,
    max_tokens: int,
    notice: Message | None,
) -> tuple[PersonalToken, str]:
    """A new token for the user, and its secret (shown once, never stored)."""
    secret = mint()
    with write(db):
        db.scalar(select(User.id).where(User.id == user_id).with_for_update())  # one at a time
        count = db.scalar(select(func.count()).where(PersonalToken.user_id == user_id)) or 0
        if count >= max_tokens:
            raise QuotaExceeded(f"An account holds at most {max_tokens} personal tokens.")
        row = PersonalToken(
            user_id=user_id,
            name=name,
            scopes=" ".join(sorted(set(scopes))),
            token_hash=token_hash(secret),
            prefix=secret[:DISPLAY_LENGTH],
            created_at=now,
            expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
        )
        db.add(row)
        if notice is not None:
            enqueue(db, notice, now=now)
    return row, secret


def list_for(db: DbSession, *, user_id: uuid.UUID) -> list[PersonalToken]:
    """The user's tokens, oldest first (at most the per-user bound)."""
    return list(
        db.scalars(
            select(PersonalToken)
            .where(PersonalToken.user_id == user_id)
            .order_by(PersonalToken.created_at, PersonalToken.id)
        )
    )


def revoke(db: DbSession, *, user_id: uuid.UUID, token_id: uuid.UUID) -> None:
    """Delete one of the user's tokens: the next request with it fails, on every instance."""
    with write(db):
        gone = db.execute(
            delete(PersonalToken)
            .where(PersonalToken.id == token_id, PersonalToken.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise NotFound()


def revoke_all(db: DbSession, *, user_id: uuid.UUID) -> None:
    """Every token of the user (password change or reset, disabled account)."""
    with write(db):
        db.execute(
            delete(PersonalToken)
            .where(PersonalToken.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
