"""What every write of a user's data shares: the owner's lock and change numbers for delta
sync, idempotent creates, and tombstones for deletions."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.errors import (
    IdempotencyConflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    QuotaExceeded,
)
from taskapi.models import IdempotencyKey, TaskTombstone, User

IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Precondition:
    """An ``If-Match`` condition: versions that may be replaced (None: any), or required."""

    versions: frozenset[int] | None = None
    required: bool = False

    def check(self, version: int, what: str) -> None:
        """If-Match required but absent, or naming other versions than ``version``."""
        if self.required:
            raise PreconditionRequired()
        if self.versions is not None and version not in self.versions:
            raise PreconditionFailed(f"The {what} has changed; fetch it again.")


@dataclass(frozen=True)
class Created:
    """The answer to a create: the body to send, and whether it is a replay."""

    body: dict[str, Any]
    replayed: bool


def next_change_seq(
    db: DbSession, user_id: uuid.UUID, count: int = 1, *, added: int = 0, max_tasks: int = 0
) -> int:
    """Reserve ``count`` change numbers (and count ``added`` tasks), locking the owner's row.

    The lock orders this user's writes for delta sync, and every write of the user's tasks
    and lists takes it before any of their rows, as account deletion does (user row, then
    the rest by cascade): one lock order, so PostgreSQL never has to break a deadlock between
    them. Adding tasks past ``max_tasks`` is refused in the same statement, so concurrent
    creates cannot overshoot the quota.
    """
    statement = update(User).where(User.id == user_id)
    if added > 0:
        statement = statement.where(User.task_count + added <= max_tasks)
    seq: int | None = db.scalar(
        statement.values(
            change_seq=User.change_seq + count, task_count=User.task_count + added
        ).returning(User.change_seq)
    )
    if seq is None:
        if added > 0 and db.get(User, user_id) is not None:
            raise QuotaExceeded(f"An account holds at most {max_tasks} tasks.")
        raise NotFound()
    return seq - count + 1


def reserver(db: DbSession, user_id: uuid.UUID) -> Callable[[int], int]:
    """``next_change_seq`` for the rows a renumbering of positions rewrites."""
    return lambda count: next_change_seq(db, user_id, count)


def lock_owner(db: DbSession, user_id: uuid.UUID) -> None:
    """Take the owner's row lock before anything else (see ``next_change_seq``)."""
    locked = db.scalar(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    if locked is None:
        raise NotFound()


def request_hash(resource: str, fields: dict[str, Any]) -> bytes:
    """A digest of a validated create body (formatting differences do not matter), bound to
    the resource, so one key reused for a task and a list is a conflict, not a replay."""
    canonical = repr((resource, sorted((k, repr(v)) for k, v in fields.items())))
    return hashlib.sha256(canonical.encode()).digest()


def replay(
    db: DbSession, *, user_id: uuid.UUID, key: str, digest: bytes, now: datetime
) -> Created | None:
    """The remembered answer for this key, a 409 for another body, or None if unused."""
    row = db.get(IdempotencyKey, (user_id, key), populate_existing=True)
    if row is None:
        return None
    if row.created_at <= now - IDEMPOTENCY_TTL:
        db.delete(row)
        db.flush()
        return None
    if row.request_hash != digest:
        raise IdempotencyConflict()
    return Created(body=row.response, replayed=True)


def remember(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    key: str,
    digest: bytes,
    body: dict[str, Any],
    now: datetime,
) -> None:
    """Keep a create's answer under its idempotency key."""
    db.execute(
        insert(IdempotencyKey).values(
            owner_id=user_id, key=key, request_hash=digest, status=201, response=body,
            created_at=now,
        )
    )  # fmt: skip


def create_once(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    key: str | None,
    digest: bytes,
    now: datetime,
    make: Callable[[], dict[str, Any]],
) -> Created:
    """Run ``make`` (it inserts, and returns the answer's body) in one unit of work, once per
    idempotency key: a repeated key with the same body replays the first answer, and of two
    concurrent requests with one key the second finds the first's answer."""
    try:
        with write(db):
            if key is not None:
                lock_owner(db, user_id)
                replayed = replay(db, user_id=user_id, key=key, digest=digest, now=now)
                if replayed is not None:
                    return replayed
            body = make()
            if key is not None:
                remember(db, user_id=user_id, key=key, digest=digest, body=body, now=now)
    except IntegrityError:  # a concurrent request with the same key committed first
        if key is None:
            raise
        with write(db):
            replayed = replay(db, user_id=user_id, key=key, digest=digest, now=now)
        if replayed is None:
            raise
        return replayed
    return Created(body=body, replayed=False)


def bury(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    ids: list[uuid.UUID],
    first_seq: int,
    now: datetime,
    kind: str = "task",
) -> None:
    """Tombstones for deleted rows, numbered from ``first_seq`` in the order given."""
    if ids:
        db.execute(
            insert(TaskTombstone),
            [
                {"id": row_id, "owner_id": user_id, "deleted_at": now,
                 "change_seq": first_seq + i, "kind": kind}
                for i, row_id in enumerate(ids)
            ],
        )  # fmt: skip
