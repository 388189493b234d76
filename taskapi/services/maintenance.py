"""Housekeeping that keeps tables small; never needed for correctness."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.models import AccountToken, IdempotencyKey, OutboxMessage
from taskapi.services.auth import prune_sessions
from taskapi.services.journal import IDEMPOTENCY_TTL
from taskapi.services.sync import prune_tombstones

# Sent (or refused) mail is kept this long, for questions like "did my reset mail go out?".
MAIL_RETENTION = timedelta(days=7)


def prune_all(db: DbSession, *, now: datetime, tombstone_days: int) -> dict[str, int]:
    """Delete dead sessions, expired idempotency keys, tombstones past retention, old mail
    and spent account tokens."""
    with write(db):
        keys = db.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - IDEMPOTENCY_TTL)
        )
    return {
        "sessions": prune_sessions(db, now=now),
        "idempotency_keys": keys.rowcount,  # type: ignore[attr-defined]
        "tombstones": prune_tombstones(db, now=now, retention=timedelta(days=tombstone_days)),
        "outbox": prune_outbox(db, now=now),
        "account_tokens": prune_account_tokens(db, now=now),
    }


def prune_outbox(db: DbSession, *, now: datetime) -> int:
    """Delete mail sent or refused more than ``MAIL_RETENTION`` ago; waiting mail stays.

    Two deletes, each a range of the (sent_at, next_attempt_at) index: sent rows by
    ``sent_at``, refused ones among the unsent (``sent_at IS NULL``), which are few.
    """
    cutoff = now - MAIL_RETENTION
    with write(db):
        sent = db.execute(delete(OutboxMessage).where(OutboxMessage.sent_at <= cutoff))
        refused = db.execute(
            delete(OutboxMessage).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at <= cutoff
            )
        )
    return sent.rowcount + refused.rowcount  # type: ignore[attr-defined,no-any-return]


def prune_account_tokens(db: DbSession, *, now: datetime) -> int:
    """Delete emailed tokens that can no longer be used: spent or expired."""
    with write(db):
        result = db.execute(
            delete(AccountToken).where(
                or_(AccountToken.used_at.is_not(None), AccountToken.expires_at <= now)
            )
        )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
