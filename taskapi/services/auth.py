"""Accounts and login sessions: register, login, refresh-token rotation, revocation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from taskapi.db import begin_write
from taskapi.errors import ApiError, not_found
from taskapi.models import Session, User
from taskapi.passwords import dummy_hash, hash_password, verify_password

USER_AGENT_MAX = 255


@dataclass(frozen=True)
class RefreshGrant:
    """Everything a refresh token is encoded from; equal grants give equal tokens."""

    session_id: uuid.UUID
    jti: str
    issued_at: datetime
    expires_at: datetime


def _grant(row: Session) -> RefreshGrant:
    """The grant of a session's current refresh token."""
    return RefreshGrant(row.id, row.current_jti, row.rotated_at, row.expires_at)


def invalid_credentials() -> ApiError:
    """One answer for unknown emails and wrong passwords alike."""
    return ApiError(401, "invalid_credentials", "The email or password is incorrect.")


def token_revoked() -> ApiError:
    """The presented token's session has ended."""
    return ApiError(401, "token_revoked", "The token's session has ended.")


def _email_taken() -> ApiError:
    """409 for an email that already has an account."""
    return ApiError(409, "email_taken", "An account with this email already exists.")


def register(db: DbSession, *, email: str, password: str, name: str, rounds: int) -> User:
    """Create an account; an email already in use is 409 ``email_taken``."""
    password_hash = hash_password(password, rounds=rounds)  # slow: before any transaction
    begin_write(db)
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise _email_taken()
    user = User(email=email, name=name, password_hash=password_hash)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:  # a concurrent registration won the race
        db.rollback()
        raise _email_taken() from None
    return user


def authenticate(db: DbSession, *, email: str, password: str, rounds: int) -> User:
    """The user with these credentials; unknown emails cost one bcrypt check too."""
    user = db.scalar(select(User).where(User.email == email))
    if user is None:
        verify_password(password, dummy_hash(rounds))
        raise invalid_credentials()
    if not verify_password(password, user.password_hash):
        raise invalid_credentials()
    return user


def open_session(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    user_agent: str,
    now: datetime,
    lifetime: timedelta,
) -> RefreshGrant:
    """Start a login session with its first refresh token."""
    row = Session(
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        rotated_at=now,
        expires_at=now + lifetime,
        user_agent="".join(c for c in user_agent if c.isprintable())[:USER_AGENT_MAX],
        current_jti=str(uuid.uuid4()),
    )
    begin_write(db)
    db.add(row)
    db.commit()
    return _grant(row)


def session_is_live(
    db: DbSession, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> bool:
    """True when the session exists, belongs to the user, and is neither revoked nor expired."""
    row = db.get(Session, session_id)
    return (
        row is not None
        and row.user_id == user_id
        and row.revoked_at is None
        and row.expires_at > now
    )


def rotate_refresh_token(
    db: DbSession,
    *,
    session_id: uuid.UUID,
    presented_jti: str,
    now: datetime,
    lifetime: timedelta,
    grace: timedelta,
) -> RefreshGrant:
    """Exchange a refresh token for its successor; a reused one revokes the session."""
    new_jti = str(uuid.uuid4())
    begin_write(db)
    advanced = db.execute(
        update(Session)
        .where(
            Session.id == session_id,
            Session.current_jti == presented_jti,
            Session.revoked_at.is_(None),
        )
        .values(
            previous_jti=presented_jti,
            current_jti=new_jti,
            rotated_at=now,
            last_used_at=now,
            expires_at=now + lifetime,
        )
        .execution_options(synchronize_session=False)
    )
    db.commit()
    if advanced.rowcount == 1:  # type: ignore[attr-defined]
        # Built from what this call wrote, not re-read: a later rotation may already follow.
        return RefreshGrant(session_id, new_jti, now, now + lifetime)
    row = db.get(Session, session_id, populate_existing=True)
    if row is None or row.revoked_at is not None:
        raise token_revoked()
    if grace and row.previous_jti == presented_jti and now - row.rotated_at <= grace:
        # Two tabs refreshing at once: answer the late one with the same successor.
        return _grant(row)
    revoke_session(db, session_id=session_id, user_id=row.user_id, now=now)
    raise token_revoked()


def revoke_session(
    db: DbSession, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> bool:
    """End one of the user's sessions; False when it is not theirs or already ended."""
    begin_write(db)
    result = db.execute(
        update(Session)
        .where(Session.id == session_id, Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def revoke_all_sessions(
    db: DbSession, *, user_id: uuid.UUID, now: datetime, keep: uuid.UUID | None = None
) -> None:
    """End every session of the user, except ``keep`` when given."""
    begin_write(db)
    statement = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    if keep is not None:
        statement = statement.where(Session.id != keep)
    db.execute(statement.values(revoked_at=now).execution_options(synchronize_session=False))
    db.commit()


def get_user(db: DbSession, *, user_id: uuid.UUID) -> User:
    """The user, or 404 if the account is gone."""
    user = db.get(User, user_id)
    if user is None:
        raise not_found()
    return user


def update_name(db: DbSession, *, user_id: uuid.UUID, name: str) -> User:
    """Change the user's display name."""
    begin_write(db)
    user = get_user(db, user_id=user_id)
    user.name = name
    db.commit()
    return user


def change_password(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    current_password: str,
    new_password: str,
    rounds: int,
    now: datetime,
) -> None:
    """Verify the current password, store the new one, end every other session."""
    user = get_user(db, user_id=user_id)
    if not verify_password(current_password, user.password_hash):
        raise invalid_credentials()
    new_hash = hash_password(new_password, rounds=rounds)  # slow: before the write transaction
    begin_write(db)
    db.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))
    revoke_all_sessions(db, user_id=user_id, now=now, keep=session_id)


def delete_account(db: DbSession, *, user_id: uuid.UUID, password: str) -> None:
    """Delete the user; tasks and sessions go with it in the same transaction."""
    user = get_user(db, user_id=user_id)
    if not verify_password(password, user.password_hash):
        raise invalid_credentials()
    begin_write(db)
    db.execute(delete(User).where(User.id == user_id))
    db.commit()


def list_sessions(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> list[Session]:
    """The user's live sessions, newest first."""
    statement = (
        select(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now)
        .order_by(Session.created_at.desc(), Session.id.desc())
    )
    return list(db.scalars(statement))


def prune_sessions(db: DbSession, *, now: datetime) -> int:
    """Delete expired and revoked sessions; they are never needed for correctness."""
    begin_write(db)
    result = db.execute(
        delete(Session).where((Session.expires_at <= now) | Session.revoked_at.is_not(None))
    )
    db.commit()
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
