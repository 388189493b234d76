"""A user's task lists: the inbox, CRUD, manual order, and deletion with their tasks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.errors import BadToken, InboxNotDeletable, InvalidInput, NotFound, QuotaExceeded
from taskapi.models import Task, TaskList
from taskapi.services import journal, positions
from taskapi.services.cursors import open_token, seal

INBOX_TITLE = "Inbox"
DELETE_BATCH = 500  # tasks deleted per transaction when a list goes
CURSOR_PURPOSE = "lists-cursor"


def owned_list(
    db: DbSession, *, user_id: uuid.UUID, list_id: uuid.UUID, lock: bool = False
) -> TaskList:
    """The user's list, or the one 404 for missing and foreign lists alike."""
    statement = select(TaskList).where(TaskList.id == list_id, TaskList.owner_id == user_id)
    found = db.scalar(statement.with_for_update() if lock else statement)
    if found is None:
        raise NotFound()
    return found


def inbox_id(db: DbSession, *, user_id: uuid.UUID) -> uuid.UUID:
    """The user's inbox (the partial unique index finds it in one lookup)."""
    found = db.scalar(
        select(TaskList.id).where(TaskList.owner_id == user_id, TaskList.inbox.is_(True))
    )
    if found is None:
        raise NotFound()
    return found


def create_inbox(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """Every account's first list, made with the account (inside its unit of work)."""
    with write(db):
        seq = journal.next_change_seq(db, user_id)
        db.add(
            TaskList(
                owner_id=user_id, title=INBOX_TITLE, position=positions.spread(1)[0], inbox=True,
                created_at=now, updated_at=now, version=1, change_seq=seq,
            )
        )  # fmt: skip


def _scope(user_id: uuid.UUID, leaving_out: uuid.UUID | None = None) -> list[Any]:
    """The rows among which a list is placed: the user's other lists."""
    scope = [TaskList.owner_id == user_id]
    if leaving_out is not None:
        scope.append(TaskList.id != leaving_out)
    return scope


def create_list(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    render: Callable[[TaskList], dict[str, Any]],
    max_lists: int,
    idempotency_key: str | None = None,
) -> journal.Created:
    """Create a list at the end of the user's lists; a repeated key replays the answer."""

    def make() -> dict[str, Any]:
        seq = journal.next_change_seq(db, user_id)
        count = db.scalar(select(func.count()).where(TaskList.owner_id == user_id)) or 0
        if count >= max_lists:
            raise QuotaExceeded(f"An account holds at most {max_lists} lists.")
        last = db.scalar(
            select(TaskList)
            .where(TaskList.owner_id == user_id)
            .order_by(TaskList.position.desc(), TaskList.id.desc())
            .limit(1)
        )
        position = positions.place(
            db, TaskList, _scope(user_id), last, journal.reserver(db, user_id)
        )
        row = TaskList(
            owner_id=user_id, position=position, inbox=False, created_at=now, updated_at=now,
            version=1, change_seq=seq, **fields,
        )  # fmt: skip
        db.add(row)
        db.flush()
        return render(row)

    return journal.create_once(
        db,
        user_id=user_id,
        key=idempotency_key,
        digest=journal.request_hash("lists", fields),
        now=now,
        make=make,
    )


def list_lists(
    db: DbSession, *, user_id: uuid.UUID, limit: int, cursor: str | None, key: bytes
) -> tuple[list[TaskList], str | None]:
    """One page of the user's lists in their order, keyset-paginated."""
    statement = select(TaskList).where(TaskList.owner_id == user_id)
    if cursor is not None:
        payload = open_token(cursor, key=key, purpose=CURSOR_PURPOSE, field="cursor")
        after = payload.get("k")
        if payload.get("u") != str(user_id) or not (
            isinstance(after, list) and len(after) == 2 and all(isinstance(v, str) for v in after)
        ):
            raise BadToken("cursor")
        try:
            after_id = uuid.UUID(after[1])
        except ValueError:
            raise BadToken("cursor") from None
        statement = statement.where(
            tuple_(TaskList.position, TaskList.id) > tuple_(after[0], after_id)
        )
    rows = list(db.scalars(statement.order_by(TaskList.position, TaskList.id).limit(limit + 1)))
    items = rows[:limit]
    if len(rows) <= limit:
        return items, None
    last = items[-1]
    token = seal({"u": str(user_id), "k": [last.position, str(last.id)]}, key=key,
                 purpose=CURSOR_PURPOSE)  # fmt: skip
    return items, token


def get_list(db: DbSession, *, user_id: uuid.UUID, list_id: uuid.UUID) -> TaskList:
    """One of the user's lists."""
    return owned_list(db, user_id=user_id, list_id=list_id)


@contextmanager
def _new_version(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    now: datetime,
    precondition: journal.Precondition,
) -> Iterator[TaskList]:
    """One change of a list, in one unit of work: the owner's lock and a change number first,
    then the list, locked and checked against If-Match; it leaves as a new version."""
    with write(db):
        seq = journal.next_change_seq(db, user_id)
        row = owned_list(db, user_id=user_id, list_id=list_id, lock=True)
        precondition.check(row.version, "list")
        yield row
        row.updated_at, row.version, row.change_seq = now, row.version + 1, seq


def update_list(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    precondition: journal.Precondition,
) -> TaskList:
    """Write the given fields (all of them for PUT), as a new version."""
    with _new_version(
        db, user_id=user_id, list_id=list_id, now=now, precondition=precondition
    ) as row:
        for name, value in fields.items():
            setattr(row, name, value)
    return row


def move_list(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    after_id: uuid.UUID | None,
    now: datetime,
    precondition: journal.Precondition,
) -> TaskList:
    """Put the list right after another of the user's lists (None: first)."""
    with _new_version(
        db, user_id=user_id, list_id=list_id, now=now, precondition=precondition
    ) as row:
        after = None
        if after_id is not None:
            after = owned_list(db, user_id=user_id, list_id=after_id)
            if after.id == row.id:
                raise InvalidInput("after", "a list cannot be placed after itself")
        row.position = positions.place(
            db, TaskList, _scope(user_id, leaving_out=row.id), after, journal.reserver(db, user_id)
        )
    return row


def delete_list(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    now: datetime,
    precondition: journal.Precondition,
) -> None:
    """Delete a list and its tasks (a tombstone each), a bounded batch per transaction, then
    the list. The inbox stays (409)."""
    with write(db):
        journal.lock_owner(db, user_id)
        row = owned_list(db, user_id=user_id, list_id=list_id, lock=True)
        precondition.check(row.version, "list")
        if row.inbox:
            raise InboxNotDeletable()
    while not _delete_task_batch(db, user_id=user_id, list_id=list_id, now=now):
        pass


def _batch_of_tasks(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    list_id: uuid.UUID,
    subtasks: bool,
    limit: int,
) -> list[uuid.UUID]:
    """Some of the list's subtasks (or top-level tasks), locked: any rows will do, so the
    query takes them straight off an index instead of sorting the whole list each batch.
    Subtasks go first, so no parent is deleted (cascading to its subtasks) before them."""
    kind = Task.parent_id.is_not(None) if subtasks else Task.parent_id.is_(None)
    return list(
        db.scalars(
            select(Task.id)
            .where(Task.list_id == list_id, Task.owner_id == user_id, kind)
            .limit(limit)
            .with_for_update()
        )
    )


def _delete_task_batch(
    db: DbSession, *, user_id: uuid.UUID, list_id: uuid.UUID, now: datetime
) -> bool:
    """Delete up to ``DELETE_BATCH`` of the list's tasks, subtasks first, a tombstone each;
    the batch that finds fewer deletes the list too, in the same transaction, so that a
    task added to the list meanwhile (its write waits for the owner's lock held here) never
    goes by cascade without a tombstone. Returns whether the list is gone."""
    with write(db):
        journal.lock_owner(db, user_id)
        batch = DELETE_BATCH
        ids = _batch_of_tasks(db, user_id=user_id, list_id=list_id, subtasks=True, limit=batch)
        if len(ids) < batch:
            ids += _batch_of_tasks(
                db, user_id=user_id, list_id=list_id, subtasks=False, limit=batch - len(ids)
            )
        if ids:
            first = journal.next_change_seq(db, user_id, len(ids), added=-len(ids))
            journal.bury(db, user_id=user_id, ids=ids, first_seq=first, now=now)
            db.execute(
                delete(Task)
                .where(Task.owner_id == user_id, Task.id.in_(ids))
                .execution_options(synchronize_session=False)
            )
        if len(ids) == batch:
            return False
        seq = journal.next_change_seq(db, user_id)
        deleted = db.execute(
            delete(TaskList)
            .where(TaskList.id == list_id, TaskList.owner_id == user_id)
            .execution_options(synchronize_session=False)
        )
        if deleted.rowcount:  # type: ignore[attr-defined]
            journal.bury(db, user_id=user_id, ids=[list_id], first_seq=seq, now=now, kind="list")
    return True
