"""Housekeeping that keeps tables small; never needed for correctness."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.models import IdempotencyKey
from taskapi.services.auth import prune_sessions
from taskapi.services.sync import prune_tombstones
from taskapi.services.tasks import IDEMPOTENCY_TTL


def prune_all(db: DbSession, *, now: datetime, tombstone_days: int) -> dict[str, int]:
    """Delete dead sessions, expired idempotency keys and tombstones past retention."""
    with write(db):
        keys = db.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - IDEMPOTENCY_TTL)
        )
    return {
        "sessions": prune_sessions(db, now=now),
        "idempotency_keys": keys.rowcount,  # type: ignore[attr-defined]
        "tombstones": prune_tombstones(db, now=now, retention=timedelta(days=tombstone_days)),
    }
