"""Delta sync: the user's task and list changes in the order they happened, with tombstones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.errors import BadToken, SyncTokenExpired
from taskapi.models import Task, TaskList, TaskTombstone, User
from taskapi.services.cursors import open_token, seal

SYNC_PURPOSE = "sync-token"
CLOCK_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Change:
    """One task's or list's latest state (``row``), or its deletion (``row`` None)."""

    id: uuid.UUID
    kind: str  # "task" or "list"
    row: Task | TaskList | None


@dataclass(frozen=True)
class ChangePage:
    """A page of changes and the token to continue from."""

    changes: list[Change]
    next_token: str
    has_more: bool


def _position(
    token: str | None, *, user_id: uuid.UUID, key: bytes, now: datetime, retention: timedelta
) -> tuple[int, float]:
    """(change number, time the client's view was last whole) a token stands for.

    A token older than the tombstone retention may have missed pruned deletions.
    """
    if token is None:
        return 0, now.timestamp()
    payload = open_token(token, key=key, purpose=SYNC_PURPOSE, field="since")
    seq, complete_at, owner = payload.get("s"), payload.get("t"), payload.get("u")
    if (
        not isinstance(seq, int)
        or not isinstance(complete_at, int | float)
        or owner != str(user_id)
    ):
        raise BadToken("since")
    if now.timestamp() - complete_at > retention.total_seconds():
        raise SyncTokenExpired()
    return seq, complete_at


def changes_since(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    token: str | None,
    limit: int,
    now: datetime,
    key: bytes,
    retention: timedelta,
) -> ChangePage:
    """Changes after ``token``, oldest first, each task once with its latest state."""
    since, complete_at = _position(token, user_id=user_id, key=key, now=now, retention=retention)
    # Read the newest change number first and stay at or below it: the two queries below run
    # in separate snapshots, and a change committed between them must wait for a later page
    # rather than be half-seen (an old state here, a deletion skipped past there).
    upper = db.scalar(select(User.change_seq).where(User.id == user_id)) or 0
    window = (since + 1, upper)
    tasks = db.scalars(
        select(Task)
        .where(Task.owner_id == user_id, Task.change_seq.between(*window))
        .order_by(Task.change_seq)
        .limit(limit + 1)
    ).all()
    lists = db.scalars(
        select(TaskList)
        .where(TaskList.owner_id == user_id, TaskList.change_seq.between(*window))
        .order_by(TaskList.change_seq)
        .limit(limit + 1)
    ).all()
    tombstones = db.execute(
        select(TaskTombstone.id, TaskTombstone.kind, TaskTombstone.change_seq)
        .where(TaskTombstone.owner_id == user_id, TaskTombstone.change_seq.between(*window))
        .order_by(TaskTombstone.change_seq)
        .limit(limit + 1)
    ).all()
    merged = sorted(
        [(t.change_seq, Change(t.id, "task", t)) for t in tasks]
        + [(row.change_seq, Change(row.id, "list", row)) for row in lists]
        + [(seq, Change(row_id, kind, None)) for row_id, kind, seq in tombstones],
        key=lambda pair: pair[0],
    )
    page, has_more = merged[:limit], len(merged) > limit
    last = page[-1][0] if page else since
    if not has_more:
        # Caught up: the view is whole as of now (less a margin for deletions that were
        # stamped before this moment but committed after the read above).
        complete_at = (now - CLOCK_MARGIN).timestamp()
    next_token = seal(
        {"s": last, "t": complete_at, "u": str(user_id)}, key=key, purpose=SYNC_PURPOSE
    )
    return ChangePage(changes=[c for _, c in page], next_token=next_token, has_more=has_more)


def prune_tombstones(db: DbSession, *, now: datetime, retention: timedelta) -> int:
    """Forget deletions older than the retention period."""
    with write(db):
        result = db.execute(delete(TaskTombstone).where(TaskTombstone.deleted_at < now - retention))
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
