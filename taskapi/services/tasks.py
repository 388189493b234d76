"""Task CRUD, every query scoped to its owner in one place."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm.exc import StaleDataError

from taskapi.db import write
from taskapi.errors import (
    IdempotencyConflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    QuotaExceeded,
)
from taskapi.models import IdempotencyKey, Task, TaskTombstone, User
from taskapi.schemas.tasks import PRIORITIES

IDEMPOTENCY_TTL = timedelta(hours=24)
# Completed tasks are cleared this many per transaction, so that one user's mass deletion
# never holds SQLite's single write lock (or PostgreSQL row locks) for long.
CLEAR_BATCH = 500


@dataclass(frozen=True)
class Precondition:
    """An ``If-Match`` condition: versions that may be replaced (None: any), or required."""

    versions: frozenset[int] | None = None
    required: bool = False


@dataclass(frozen=True)
class Created:
    """The answer to a create: the body to send, and whether it is a replay."""

    body: dict[str, Any]
    replayed: bool


def owned_task(
    db: DbSession, *, user_id: uuid.UUID, task_id: uuid.UUID, lock: bool = False
) -> Task:
    """The user's task, or the one 404 for missing and foreign tasks alike."""
    statement = select(Task).where(Task.id == task_id, Task.owner_id == user_id)
    if lock:
        statement = statement.with_for_update()
    task = db.scalar(statement)
    if task is None:
        raise NotFound()
    return task


def _next_change_seq(
    db: DbSession, user_id: uuid.UUID, count: int = 1, *, added: int = 0, max_tasks: int = 0
) -> int:
    """Reserve ``count`` change numbers (and count ``added`` tasks), locking the owner's row.

    The lock orders this user's writes for delta sync, and every task write takes it
    before any task row, as account deletion does (user row, then its tasks by cascade):
    one lock order, so PostgreSQL never has to break a deadlock between them. Adding tasks
    past ``max_tasks`` is refused in the same statement, so concurrent creates cannot
    overshoot the quota.
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


def _lock_owner(db: DbSession, user_id: uuid.UUID) -> None:
    """Take the owner's row lock before anything else (see ``_next_change_seq``)."""
    locked = db.scalar(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    if locked is None:
        raise NotFound()


def _apply(task: Task, fields: dict[str, Any], now: datetime) -> None:
    """Copy validated fields onto the task, keeping ``completed_at`` in step."""
    for name, value in fields.items():
        if name == "priority":
            value = PRIORITIES.index(value)
        if name == "completed" and value != task.completed:
            task.completed_at = now if value else None
        setattr(task, name, value)


def _request_hash(fields: dict[str, Any]) -> bytes:
    """A digest of the validated body, so formatting differences do not matter."""
    canonical = repr(sorted((k, repr(v)) for k, v in fields.items()))
    return hashlib.sha256(canonical.encode()).digest()


def create_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    render: Callable[[Task], dict[str, Any]],
    max_tasks: int,
    idempotency_key: str | None = None,
) -> Created:
    """Create a task; a repeated idempotency key replays the first answer."""
    digest = _request_hash(fields)
    try:
        with write(db):
            if idempotency_key is not None:
                _lock_owner(db, user_id)
                replay = _replay(db, user_id=user_id, key=idempotency_key, digest=digest, now=now)
                if replay is not None:
                    return replay
            seq = _next_change_seq(db, user_id, added=1, max_tasks=max_tasks)
            task = Task(owner_id=user_id, created_at=now, updated_at=now, version=1)
            task.completed = False
            _apply(task, fields, now)
            task.change_seq = seq
            db.add(task)
            db.flush()
            body = render(task)
            if idempotency_key is not None:
                db.execute(
                    insert(IdempotencyKey).values(
                        owner_id=user_id, key=idempotency_key, request_hash=digest,
                        status=201, response=body, created_at=now,
                    )
                )  # fmt: skip
    except IntegrityError:  # a concurrent request with the same key committed first
        if idempotency_key is None:
            raise
        with write(db):
            replay = _replay(db, user_id=user_id, key=idempotency_key, digest=digest, now=now)
        if replay is None:
            raise
        return replay
    return Created(body=body, replayed=False)


def _replay(
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


def get_task(db: DbSession, *, user_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    """One of the user's tasks."""
    return owned_task(db, user_id=user_id, task_id=task_id)


def _check_precondition(task: Task, precondition: Precondition) -> None:
    """If-Match required but absent, or naming other versions than the task's."""
    if precondition.required:
        raise PreconditionRequired()
    if precondition.versions is not None and task.version not in precondition.versions:
        raise PreconditionFailed("The task has changed; fetch it again.")


def update_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    precondition: Precondition = Precondition(),
) -> Task:
    """Write the given fields (all of them for PUT), bumping ``version`` even if nothing changed."""
    try:
        with write(db):
            seq = _next_change_seq(db, user_id)  # owner row first: see _next_change_seq
            task = owned_task(db, user_id=user_id, task_id=task_id, lock=True)
            _check_precondition(task, precondition)
            _apply(task, fields, now)
            task.updated_at = now
            task.version = task.version + 1
            task.change_seq = seq
    except StaleDataError:  # a safety net: the row lock should make this unreachable
        raise PreconditionFailed("The task has changed; fetch it again.") from None
    return task


def delete_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    now: datetime,
    precondition: Precondition = Precondition(),
) -> None:
    """Delete one task, leaving a tombstone for delta sync."""
    with write(db):
        seq = _next_change_seq(db, user_id, added=-1)  # owner row first: see _next_change_seq
        task = owned_task(db, user_id=user_id, task_id=task_id, lock=True)
        _check_precondition(task, precondition)
        db.add(TaskTombstone(id=task.id, owner_id=user_id, deleted_at=now, change_seq=seq))
        db.delete(task)


def clear_completed(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> int:
    """Delete every completed task of the user, a bounded batch per transaction."""
    total = 0
    while True:
        deleted = _clear_batch(db, user_id=user_id, now=now)
        total += deleted
        if deleted < CLEAR_BATCH:
            return total


def _clear_batch(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> int:
    """Delete up to ``CLEAR_BATCH`` completed tasks in one transaction; returns how many."""
    with write(db):
        _lock_owner(db, user_id)  # the count is only known after the read below
        ids = list(
            db.scalars(
                select(Task.id)
                .where(Task.owner_id == user_id, Task.completed.is_(True))
                .order_by(Task.id)
                .limit(CLEAR_BATCH)
                .with_for_update()
            )
        )
        if not ids:
            return 0
        first = _next_change_seq(db, user_id, len(ids), added=-len(ids))
        db.execute(
            insert(TaskTombstone),
            [
                {"id": task_id, "owner_id": user_id, "deleted_at": now, "change_seq": first + i}
                for i, task_id in enumerate(ids)
            ],
        )
        db.execute(
            delete(Task)
            .where(Task.owner_id == user_id, Task.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    return len(ids)
