"""The account lifecycle by email: password reset, verification, change of email, devices,
and the operator's enable/disable.

Emailed tokens are random (not JWTs), single-use, and stored only as their SHA-256. Every
message is queued in the same transaction as the change that causes it (``outbox.enqueue``).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.errors import EmailTaken, InvalidToken, NotFound
from taskapi.models import AccountToken, KnownDevice, User
from taskapi.services import notices
from taskapi.services.auth import revoke_all_sessions
from taskapi.services.notices import MailContext
from taskapi.services.outbox import enqueue
from taskapi.services.tokens import revoke_all as revoke_all_tokens

RESET, VERIFY, EMAIL = "reset", "verify", "email"
MAX_KNOWN_DEVICES = 20  # per user; the least recently seen are forgotten first
TOKEN_BYTES = 32


def token_hash(token: str) -> bytes:
    """What is stored of a token: its SHA-256 (the token has 256 bits of entropy, no salt)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _issue(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    purpose: str,
    now: datetime,
    lifetime: timedelta,
    new_email: str | None = None,
) -> str:
    """A new token for ``purpose``; the user's older ones for it stop working."""
    db.execute(
        delete(AccountToken).where(AccountToken.user_id == user_id, AccountToken.purpose == purpose)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.add(
        AccountToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash(token),
            new_email=new_email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def _usable(
    db: DbSession, token: str, purposes: Iterable[str], now: datetime, *, lock: bool = False
) -> AccountToken:
    """The token's row if it is known, unused and unexpired; else ``InvalidToken`` (one
    answer for all three, so that a guess learns nothing)."""
    query = select(AccountToken).where(
        AccountToken.token_hash == token_hash(token), AccountToken.purpose.in_(tuple(purposes))
    )
    row = db.scalar(query.with_for_update() if lock else query)
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise InvalidToken()
    return row


def _locked_user(db: DbSession, user_id: uuid.UUID) -> User:
    """The user's row, locked for this unit of work."""
    user = db.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound()
    return user


# --- verification ----------------------------------------------------------------------------


def start_verification(
    db: DbSession, *, user: User, ctx: MailContext, now: datetime, lifetime: timedelta
) -> None:
    """Queue a verification link for the user's current address (inside the caller's work)."""
    with write(db):
        token = _issue(
            db, user_id=user.id, purpose=VERIFY, now=now, lifetime=lifetime, new_email=user.email
        )
        hours = int(lifetime.total_seconds() // 3600)
        enqueue(db, notices.verify_email(ctx, user.email, token, hours), now=now)


def resend_verification(
    db: DbSession, *, user_id: uuid.UUID, ctx: MailContext, now: datetime, lifetime: timedelta
) -> bool:
    """Send a fresh verification link; False (nothing sent) when already verified."""
    with write(db):
        user = _locked_user(db, user_id)
        if user.email_verified:
            return False
        start_verification(db, user=user, ctx=ctx, now=now, lifetime=lifetime)
    return True


def verify_email(db: DbSession, *, token: str, ctx: MailContext, now: datetime) -> None:
    """Apply a verification link: the address is verified, or (change of email) becomes the
    account's address. ``EmailTaken`` if someone registered the new address meanwhile."""
    try:
        with write(db):
            row = _usable(db, token, (VERIFY, EMAIL), now, lock=True)
            user = _locked_user(db, row.user_id)
            row.used_at = now
            if row.purpose == VERIFY:
                if row.new_email != user.email:  # issued for an address the user left since
                    raise InvalidToken()
                user.email_verified = True
                return
            _move_to_new_email(db, user, str(row.new_email), ctx=ctx, now=now)
    except IntegrityError:  # the unique email index: a registration won the race
        raise EmailTaken() from None


def _move_to_new_email(
    db: DbSession, user: User, new_email: str, *, ctx: MailContext, now: datetime
) -> None:
    """Switch the account to its confirmed new address and tell the old one."""
    taken = db.scalar(select(User.id).where(User.email == new_email, User.id != user.id))
    if taken is not None:
        raise EmailTaken()
    old_email = user.email
    user.email, user.email_verified = new_email, True
    db.execute(
        delete(AccountToken).where(
            AccountToken.user_id == user.id, AccountToken.purpose.in_((VERIFY, EMAIL, RESET))
        )
    )
    enqueue(db, notices.email_changed(ctx, old_email, new_email), now=now)


def request_email_change(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    new_email: str,
    ctx: MailContext,
    now: datetime,
    lifetime: timedelta,
) -> None:
    """Send a confirmation to the new address and a notice to the old; nothing changes yet."""
    with write(db):
        user = _locked_user(db, user_id)
        if db.scalar(select(User.id).where(User.email == new_email)) is not None:
            raise EmailTaken()
        token = _issue(
            db, user_id=user.id, purpose=EMAIL, now=now, lifetime=lifetime, new_email=new_email
        )
        hours = int(lifetime.total_seconds() // 3600)
        enqueue(db, notices.confirm_new_email(ctx, new_email, token, hours), now=now)
        enqueue(db, notices.email_change_requested(ctx, user.email, new_email), now=now)


# --- password reset --------------------------------------------------------------------------


def request_password_reset(
    db: DbSession, *, email: str, ctx: MailContext, now: datetime, lifetime: timedelta
) -> None:
    """Queue a reset link when the address has an enabled account; otherwise do the same
    transaction with nothing in it, so both answers take about as long."""
    with write(db):
        user = db.scalar(select(User).where(User.email == email))
        if user is None or user.disabled_at is not None:
            return
        token = _issue(db, user_id=user.id, purpose=RESET, now=now, lifetime=lifetime)
        minutes = int(lifetime.total_seconds() // 60)
        enqueue(db, notices.password_reset(ctx, user.email, token, minutes), now=now)


def check_reset_token(db: DbSession, *, token: str, now: datetime) -> None:
    """``InvalidToken`` unless the token could reset a password (checked before hashing)."""
    _usable(db, token, (RESET,), now)


def reset_password(
    db: DbSession, *, token: str, password_hash: str, ctx: MailContext, now: datetime
) -> uuid.UUID:
    """Use the token: set the password, verify the address (the mail reached its owner),
    end every session, and send a notice. Returns the user's id."""
    with write(db):
        row = _usable(db, token, (RESET,), now, lock=True)
        user = _locked_user(db, row.user_id)
        if user.disabled_at is not None:
            raise InvalidToken()
        row.used_at = now
        user.password_hash, user.email_verified = password_hash, True
        revoke_all_sessions(db, user_id=user.id, now=now)
        revoke_all_tokens(db, user_id=user.id)
        enqueue(db, notices.password_changed(ctx, user.email), now=now)
        return user.id


# --- devices and notices ---------------------------------------------------------------------


def note_login(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    user_agent: str,
    network: str,
    ctx: MailContext,
    now: datetime,
) -> None:
    """Remember the (user agent, network) of a login; a new one, on an account that has
    logged in before, gets a security notice."""
    fingerprint = hashlib.sha256(f"{user_agent}\n{network}".encode("utf-8", "replace")).digest()
    with write(db):
        known = db.get(KnownDevice, (user_id, fingerprint))
        if known is not None:
            known.last_seen_at = now
            return
        seen_before = db.scalar(select(KnownDevice.user_id).where(KnownDevice.user_id == user_id))
        db.add(KnownDevice(user_id=user_id, fingerprint=fingerprint, last_seen_at=now))
        _forget_oldest_devices(db, user_id)
        if seen_before is not None:
            email = db.scalar(select(User.email).where(User.id == user_id))
            enqueue(db, notices.new_device(ctx, str(email), user_agent, network), now=now)


def _forget_oldest_devices(db: DbSession, user_id: uuid.UUID) -> None:
    """Keep the ``MAX_KNOWN_DEVICES`` most recently seen devices of the user."""
    db.flush()
    count = db.scalar(select(func.count()).where(KnownDevice.user_id == user_id)) or 0
    if count <= MAX_KNOWN_DEVICES:
        return
    oldest = (
        select(KnownDevice.fingerprint)
        .where(KnownDevice.user_id == user_id)
        .order_by(KnownDevice.last_seen_at, KnownDevice.fingerprint)
        .limit(count - MAX_KNOWN_DEVICES)
    )
    db.execute(
        delete(KnownDevice).where(
            KnownDevice.user_id == user_id, KnownDevice.fingerprint.in_(oldest.scalar_subquery())
        )
    )


# --- operators -------------------------------------------------------------------------------


def set_disabled(
    db: DbSession, *, user_id: uuid.UUID, disabled: bool, ctx: MailContext, now: datetime
) -> bool:
    """Disable (every session ends at once, a notice is sent) or enable an account.
    Returns whether anything changed."""
    with write(db):
        user = _locked_user(db, user_id)
        if (user.disabled_at is not None) == disabled:
            return False
        user.disabled_at = now if disabled else None
        if disabled:
            revoke_all_sessions(db, user_id=user_id, now=now)
            revoke_all_tokens(db, user_id=user_id)
            enqueue(db, notices.account_disabled(ctx, user.email), now=now)
    return True


def is_disabled(db: DbSession, *, user_id: uuid.UUID) -> bool:
    """Whether an operator disabled this account (asked only once a session check failed)."""
    disabled_at = db.scalar(select(User.disabled_at).where(User.id == user_id))
    return disabled_at is not None


def mark_verified(db: DbSession, *, user_id: uuid.UUID) -> None:
    """An operator vouches for the address."""
    with write(db):
        _locked_user(db, user_id).email_verified = True


def find_user(db: DbSession, *, ref: str) -> User:
    """The user an operator named by email or id; ``NotFound`` otherwise."""
    try:
        user = db.get(User, uuid.UUID(ref))
    except ValueError:
        user = db.scalar(select(User).where(User.email == ref.strip().lower()))
    if user is None:
        raise NotFound()
    return user


def list_users(db: DbSession, *, email_like: str | None, limit: int) -> list[User]:
    """Users by email (a ``*`` pattern), at most ``limit``."""
    query = select(User).order_by(User.email).limit(limit)
    if email_like:
        escaped = email_like.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(User.email.like(escaped.replace("*", "%"), escape="\\"))
    return list(db.scalars(query))


def set_password(
    db: DbSession, *, user_id: uuid.UUID, password_hash: str, ctx: MailContext, now: datetime
) -> None:
    """An operator sets the password: every session ends, and the owner gets a notice."""
    with write(db):
        user = _locked_user(db, user_id)
        user.password_hash = password_hash
        db.execute(delete(AccountToken).where(AccountToken.user_id == user_id))
        revoke_all_sessions(db, user_id=user_id, now=now)
        revoke_all_tokens(db, user_id=user_id)
        enqueue(db, notices.password_changed(ctx, user.email), now=now)


def delete_user(db: DbSession, *, user_id: uuid.UUID) -> None:
    """An operator deletes the account with everything it owns (the foreign keys cascade)."""
    with write(db):
        db.execute(delete(User).where(User.id == user_id))
