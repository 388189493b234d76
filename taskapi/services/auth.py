"""Accounts and login sessions: register, login, refresh-token rotation, revocation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from taskapi.db import driver_rows, release_connection, write
from taskapi.errors import (
    AccountDisabled,
    BadToken,
    EmailTaken,
    InvalidCredentials,
    NotFound,
    SessionEnded,
    WrongPassword,
)
from taskapi.models import Session, User
from taskapi.passwords import dummy_hash, hash_password, verify_password
from taskapi.services.cursors import open_token, seal
from taskapi.services.lists import create_inbox
from taskapi.services.outbox import Message, enqueue
from taskapi.services.tokens import revoke_all as revoke_all_tokens

USER_AGENT_MAX = 255
SESSIONS_CURSOR = "sessions-cursor"


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


def register(
    db: DbSession,
    *,
    email: str,
    password: str,
    name: str,
    rounds: int,
    welcome: Callable[[User], None] | None = None,
) -> User:
    """Create an account; an email already in use is 409 ``email_taken``. ``welcome`` runs in
    the same unit of work (it queues the verification mail, so both commit or neither)."""
    password_hash = hash_password(password, rounds=rounds)  # slow: before any transaction
    try:
        with write(db):
            if db.scalar(select(User.id).where(User.email == email)) is not None:
                raise EmailTaken()
            user = User(email=email, name=name, password_hash=password_hash)
            db.add(user)
            db.flush()
            create_inbox(db, user_id=user.id, now=user.created_at)
            if welcome is not None:
                welcome(user)
    except IntegrityError:  # a concurrent registration won the race
        raise EmailTaken() from None
    return user


def authenticate(db: DbSession, *, email: str, password: str, rounds: int) -> User:
    """The user with these credentials; unknown emails cost one bcrypt check too. A disabled
    account is refused only after its password matched, so a guess learns nothing."""
    user = db.scalar(select(User).where(User.email == email))
    release_connection(db)  # bcrypt (and its queue in a login storm) must not hold it
    if user is None:
        verify_password(password, dummy_hash(rounds))
        raise InvalidCredentials()
    if not verify_password(password, user.password_hash):
        raise InvalidCredentials()
    if user.disabled_at is not None:
        raise AccountDisabled()
    return user


def open_session(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    user_agent: str,
    now: datetime,
    lifetime: timedelta,
    max_sessions: int,
) -> RefreshGrant:
    """Start a login session with its first refresh token; past ``max_sessions`` live ones,
    the oldest are revoked."""
    row = Session(
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        rotated_at=now,
        expires_at=now + lifetime,
        user_agent="".join(c for c in user_agent if c.isprintable())[:USER_AGENT_MAX],
        current_jti=str(uuid.uuid4()),
    )
    with write(db):
        _lock_user(db, user_id)
        db.add(row)
        db.flush()
        _revoke_oldest(db, user_id=user_id, now=now, keep=max_sessions)
    return _grant(row)


def _lock_user(db: DbSession, user_id: uuid.UUID) -> None:
    """Lock the user's row first, as every write of theirs does (one lock order)."""
    if db.scalar(select(User.id).where(User.id == user_id).with_for_update()) is None:
        raise NotFound()


def _live(user_id: uuid.UUID, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions of the user's live sessions."""
    return [Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now]


def _revoke_oldest(db: DbSession, *, user_id: uuid.UUID, now: datetime, keep: int) -> None:
    """Revoke the user's live sessions beyond the newest ``keep``."""
    surplus = select(Session.id).where(*_live(user_id, now))
    surplus = surplus.order_by(Session.created_at.desc(), Session.id.desc()).offset(keep)
    ids = list(db.scalars(surplus))
    if ids:
        db.execute(
            update(Session)
            .where(Session.id.in_(ids))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class SessionCheck:
    """What the per-request session check learned."""

    live: bool
    email_verified: bool = False
    disabled: bool = False  # only looked up once the session turned out not live


def session_is_live(
    db: DbSession, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> SessionCheck:
    """Is the session there, the user's, neither revoked nor expired; and is the address
    verified. One primary-key lookup (joined to its user by primary key), not an ORM entity:
    it runs on every authenticated request. A failed check asks once more whether an operator
    disabled the account, so that its tokens answer ``account_disabled``."""
    params = {"sid": session_id, "uid": user_id, "now": now}
    found = driver_rows(db, LIVE_SESSION, params)  # no ORM machinery
    if found:
        return SessionCheck(live=True, email_verified=bool(found[0][0]))
    disabled_at = db.scalar(select(User.disabled_at).where(User.id == user_id))
    return SessionCheck(live=False, disabled=disabled_at is not None)


# Also the first part of a folded read (``tasks.get_task_checking_session``).
LIVE_SESSION = (
    select(User.email_verified)
    .join(Session, Session.user_id == User.id)
    .where(
        Session.id == bindparam("sid"),
        Session.user_id == bindparam("uid"),
        User.id == bindparam("uid"),
        Session.revoked_at.is_(None),
        Session.expires_at > bindparam("now"),
    )
    .limit(1)
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
    with write(db):
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
    if advanced.rowcount == 1:  # type: ignore[attr-defined]
        # Built from what this call wrote, not re-read: a later rotation may already follow.
        return RefreshGrant(session_id, new_jti, now, now + lifetime)
    row = db.get(Session, session_id, populate_existing=True)
    if row is None or row.revoked_at is not None:
        raise SessionEnded()
    if grace and row.previous_jti == presented_jti and now - row.rotated_at <= grace:
        # Two tabs refreshing at once: answer the late one with the same successor.
        return _grant(row)
    revoke_session(db, session_id=session_id, user_id=row.user_id, now=now)
    raise SessionEnded()


def revoke_session(
    db: DbSession, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> bool:
    """End one of the user's sessions; False when it is not theirs or already ended."""
    with write(db):
        result = db.execute(
            update(Session)
            .where(
                Session.id == session_id, Session.user_id == user_id, Session.revoked_at.is_(None)
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def revoke_all_sessions(
    db: DbSession, *, user_id: uuid.UUID, now: datetime, keep: uuid.UUID | None = None
) -> None:
    """End every session of the user, except ``keep`` when given."""
    statement = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    if keep is not None:
        statement = statement.where(Session.id != keep)
    with write(db):
        db.execute(statement.values(revoked_at=now).execution_options(synchronize_session=False))


def get_user(db: DbSession, *, user_id: uuid.UUID) -> User:
    """The user, or ``NotFound`` if the account is gone."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound()
    return user


def update_name(db: DbSession, *, user_id: uuid.UUID, name: str) -> User:
    """Change the user's display name."""
    with write(db):
        user = get_user(db, user_id=user_id)
        user.name = name
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
    notice: Message | None = None,
) -> None:
    """Verify the current password, store the new one, end every other session, and queue
    ``notice`` (the security mail) with the change."""
    check_password(db, user_id=user_id, password=current_password)
    new_hash = hash_password(new_password, rounds=rounds)  # slow: before the write transaction
    with write(db):
        db.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))
        revoke_all_sessions(db, user_id=user_id, now=now, keep=session_id)
        revoke_all_tokens(db, user_id=user_id)
        if notice is not None:
            enqueue(db, notice, now=now)


def check_password(db: DbSession, *, user_id: uuid.UUID, password: str) -> None:
    """A signed-in user's password re-check; ``WrongPassword`` when it does not match."""
    user = get_user(db, user_id=user_id)
    release_connection(db)  # bcrypt must not hold a pooled connection
    if not verify_password(password, user.password_hash):
        raise WrongPassword()


def email_of(db: DbSession, *, user_id: uuid.UUID) -> str:
    """The user's email (failure budgets are kept per email)."""
    return get_user(db, user_id=user_id).email


def delete_account(db: DbSession, *, user_id: uuid.UUID, password: str) -> None:
    """Delete the user; tasks and sessions go with it in the same transaction."""
    check_password(db, user_id=user_id, password=password)
    with write(db):
        db.execute(delete(User).where(User.id == user_id))


@dataclass(frozen=True)
class SessionPageResult:
    """One page of sessions and the cursor of the next, if any."""

    items: list[Session]
    next_cursor: str | None


def list_sessions(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    now: datetime,
    limit: int,
    cursor: str | None,
    key: bytes,
) -> SessionPageResult:
    """One page of the user's live sessions, newest first, in keyset order."""
    statement = select(Session).where(*_live(user_id, now))
    if cursor is not None:
        position = _session_position(cursor, key=key, user_id=user_id)
        statement = statement.where(tuple_(Session.created_at, Session.id) < tuple_(*position))
    statement = statement.order_by(Session.created_at.desc(), Session.id.desc())
    rows = list(db.scalars(statement.limit(limit + 1)))
    items, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        last = items[-1]
        payload = {"c": last.created_at.isoformat(), "i": str(last.id), "u": str(user_id)}
        next_cursor = seal(payload, key=key, purpose=SESSIONS_CURSOR)
    return SessionPageResult(items, next_cursor)


def _session_position(cursor: str, *, key: bytes, user_id: uuid.UUID) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a sessions cursor of this user continues after."""
    payload = open_token(cursor, key=key, purpose=SESSIONS_CURSOR, field="cursor")
    if payload.get("u") != str(user_id):
        raise BadToken("cursor")
    try:
        return datetime.fromisoformat(payload["c"]), uuid.UUID(payload["i"])
    except (KeyError, TypeError, ValueError):
        raise BadToken("cursor") from None


def prune_sessions(db: DbSession, *, now: datetime) -> int:
    """Delete expired and revoked sessions; they are never needed for correctness."""
    with write(db):
        result = db.execute(
            delete(Session).where((Session.expires_at <= now) | Session.revoked_at.is_not(None))
        )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
