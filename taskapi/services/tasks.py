"""Task CRUD, placement (list, parent, position) and recurrence, every query scoped to its
owner in one place."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, and_, any_, bindparam, case, delete, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm.exc import StaleDataError

from taskapi.db import driver_rows, one_statement_write, write, writes_in_one_statement
from taskapi.errors import InvalidInput, NotFound, PreconditionFailed
from taskapi.models import Task, TaskList, User
from taskapi.schemas.tasks import PRIORITIES, ROW_COLUMNS
from taskapi.services import journal, positions, recurrence
from taskapi.services.auth import LIVE_SESSION, SessionCheck, session_is_live
from taskapi.services.journal import Created, Precondition
from taskapi.services.lists import inbox_id, owned_list

__all__ = ["Created", "Precondition"]

# A task written in one statement: a row of ``COLUMNS`` whose columns are also attributes (a
# named tuple from the driver, or SQLAlchemy's Row).
TaskRow = Any

# Completed tasks are cleared this many per transaction, so that one user's mass deletion
# never holds SQLite's single write lock (or PostgreSQL row locks) for long.
CLEAR_BATCH = 500
PLACEMENT = ("list_id", "parent_id")
UNSET: Any = object()  # "not sent", as opposed to None ("top level")
# What reads answer from: rows of these columns, not entities (nothing read is changed, and
# an ORM entity costs more to load than its query; see bench/README.md).
COLUMNS = tuple(Task.__table__.columns[name] for name in ROW_COLUMNS)


def _param(column: str, name: str | None = None) -> Any:
    """A bound parameter typed as the tasks column it is written to, named ``v_<column>``.

    Never a column's own name: SQLAlchemy turns an execution parameter named like a column
    of an UPDATE's table (the owner's, in a CTE, too) into one more ``SET`` of that column.
    """
    return bindparam(f"v_{name or column}", type_=Task.__table__.c[column].type)


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


def _apply(task: Task, fields: dict[str, Any], now: datetime) -> None:
    """Copy validated fields onto the task, keeping ``completed_at`` in step."""
    for name, value in fields.items():
        if name == "priority":
            value = PRIORITIES.index(value)
        if name == "completed" and value != task.completed:
            task.completed_at = now if value else None
        setattr(task, name, value)


def _check_recurrence(task: Task) -> None:
    """A rule (of the documented subset) needs a due date to advance, and a zone (UTC when
    none is given) to keep its wall-clock time in; stored in canonical form. A zone sent
    without a rule is checked too (a bad value is a 400, never ignored), then dropped."""
    if task.recurrence is None:
        if task.timezone is not None:
            _check_zone(task.timezone)
        task.timezone = None
        return
    if task.due_at is None:
        raise InvalidInput("recurrence", "a recurring task needs a due_at")
    try:
        task.recurrence = recurrence.normalize_rule(task.recurrence)
    except recurrence.RecurrenceError as error:
        raise InvalidInput("recurrence", str(error)) from None
    task.timezone = _check_zone(task.timezone or "UTC")


def _check_zone(name: str) -> str:
    """An IANA time zone name, or the 400 on ``timezone``."""
    try:
        return recurrence.check_timezone(name)
    except recurrence.RecurrenceError as error:
        raise InvalidInput("timezone", str(error)) from None


# --- placement -------------------------------------------------------------------------------


def _scope(
    task_list: uuid.UUID, parent: uuid.UUID | None, leaving_out: uuid.UUID | None
) -> list[Any]:
    """The tasks among which one is ordered: same list, same parent (or top level)."""
    scope = [Task.list_id == task_list]
    scope.append(Task.parent_id.is_(None) if parent is None else Task.parent_id == parent)
    if leaving_out is not None:
        scope.append(Task.id != leaving_out)
    return scope


def _resolve_place(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task: Task | None,
    list_id: Any,
    parent_id: Any,
) -> tuple[uuid.UUID, uuid.UUID | None]:
    """Where a task goes: ``(list, parent)``. Unsent values keep the task's own (a new task:
    the inbox, top level); a parent decides the list. Foreign ids are the one 404."""
    if parent_id is UNSET:
        parent_id = None if task is None or list_id is not UNSET else task.parent_id
    if parent_id is not None:
        parent = owned_task(db, user_id=user_id, task_id=parent_id)
        if parent.parent_id is not None:
            raise InvalidInput("parent_id", "a subtask cannot have subtasks (one level only)")
        if task is not None and parent.id == task.id:
            raise InvalidInput("parent_id", "a task cannot be its own parent")
        if task is not None and _has_subtasks(db, task.id):
            raise InvalidInput("parent_id", "a task with subtasks cannot become a subtask")
        if list_id is not UNSET and list_id is not None and list_id != parent.list_id:
            owned_list(db, user_id=user_id, list_id=list_id)  # someone else's list: 404 first
            raise InvalidInput("list_id", "a subtask lives in its parent's list")
        return parent.list_id, parent.id
    if list_id is UNSET or list_id is None:
        if task is not None:
            return task.list_id, None
        return inbox_id(db, user_id=user_id), None
    return owned_list(db, user_id=user_id, list_id=list_id).id, None


def _has_subtasks(db: DbSession, task_id: uuid.UUID) -> bool:
    """Whether any task names this one as its parent."""
    return db.scalar(select(Task.id).where(Task.parent_id == task_id).limit(1)) is not None


def _place(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task: Task,
    list_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    after: Task | None,
    now: datetime,
) -> None:
    """Put the task in ``(list, parent)`` right after ``after`` (None: first); its subtasks
    follow it to another list (each a new version, changed ``now``)."""
    moved_list = task.list_id is not None and task.list_id != list_id
    task.position = positions.place(
        db, Task, _scope(list_id, parent_id, task.id), after, journal.reserver(db, user_id)
    )
    task.list_id, task.parent_id = list_id, parent_id
    if moved_list:
        children = db.scalars(
            select(Task).where(Task.parent_id == task.id, Task.owner_id == user_id)
        ).all()
        if children:
            first = journal.next_change_seq(db, user_id, len(children))
            for index, child in enumerate(children):
                child.list_id, child.version = list_id, child.version + 1
                child.updated_at, child.change_seq = now, first + index


# --- create, read, update, delete ------------------------------------------------------------


def create_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    render: Callable[[Task | TaskRow], dict[str, Any]],
    max_tasks: int,
    idempotency_key: str | None = None,
    inbox: InboxPlace | None = None,
) -> Created:
    """Create a task, first in its list (or under its parent); a repeated idempotency key
    replays the first answer.

    The common create (in the inbox, not recurring, no idempotency key) is one statement on
    PostgreSQL, given where it goes (``inbox``, read with the session check, or read here);
    a refusal (the quota) takes the general path, which says why.
    """
    if idempotency_key is None and writes_in_one_statement(db) and _is_plain_create(fields):
        place = inbox or inbox_place(db, user_id=user_id)
        row = None if place is None else _insert_plain(
            db, user_id=user_id, fields=fields, now=now, place=place, max_tasks=max_tasks
        )  # fmt: skip
        if row is not None:
            return Created(body=render(row), replayed=False)

    def make() -> dict[str, Any]:
        seq = journal.next_change_seq(db, user_id, added=1, max_tasks=max_tasks)
        return render(_new_task(db, user_id=user_id, fields=fields, now=now, seq=seq))

    return journal.create_once(
        db,
        user_id=user_id,
        key=idempotency_key,
        digest=journal.request_hash("tasks", fields),
        now=now,
        make=make,
    )


def _is_plain_create(fields: dict[str, Any]) -> bool:
    """A create that needs no reads but the inbox's first position: top level of the inbox,
    no recurrence (nor a zone to check)."""
    return all(fields.get(name) is None for name in ("list_id", "parent_id", "recurrence",
                                                     "timezone"))  # fmt: skip


def _insert_plain(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    place: InboxPlace,
    max_tasks: int,
) -> TaskRow | None:
    """Insert a task first in the inbox, in one statement that takes the owner's row, a
    change number and a unit of the quota first (see ``journal.next_change_seq``); the new
    row, or None at the quota, when the account is gone, or when the inbox needs its keys
    renumbered first (the general path does that). The row is a named tuple of ``COLUMNS``."""
    position = positions.before(place.first_position)
    if len(position) > positions.MAX_KEY:
        return None
    completed = bool(fields.get("completed", False))
    values = {
        "id": uuid.uuid4(), "owner_id": user_id, "title": fields["title"],
        "notes": fields.get("notes", ""), "completed": completed,
        "completed_at": now if completed else None, "due_at": fields.get("due_at"),
        "priority": PRIORITIES.index(fields.get("priority", "none")),
        "tags": list(fields.get("tags", [])), "created_at": now, "updated_at": now,
        "version": 1, "list_id": place.list_id, "parent_id": None,
        "position": position, "recurrence": None,
        "timezone": None, "next_occurrence_id": None,
    }  # fmt: skip
    params = {f"v_{name}": value for name, value in values.items()}
    params.update(uid=user_id, max_tasks=max_tasks)
    return next(iter(one_statement_write(db, _PLAIN_INSERT, params)), None)


_INSERTED = tuple(name for name in ROW_COLUMNS if name != "change_seq")
_OWNER_ADDING = (
    update(User)
    .where(User.id == bindparam("uid"), User.task_count + 1 <= bindparam("max_tasks"))
    .values(change_seq=User.change_seq + 1, task_count=User.task_count + 1)
    .returning(User.change_seq)
    .cte("owner")
)
_PLAIN_INSERT = (
    insert(Task)
    .from_select(
        [*_INSERTED, "change_seq"],
        select(*(_param(name) for name in _INSERTED), _OWNER_ADDING.c.change_seq),
    )
    .returning(*COLUMNS)
)


def _new_task(
    db: DbSession, *, user_id: uuid.UUID, fields: dict[str, Any], now: datetime, seq: int
) -> Task:
    """Insert a task from validated fields (inside the caller's unit of work)."""
    fields = dict(fields)
    list_id, parent_id = (fields.pop(name, UNSET) for name in PLACEMENT)
    task = Task(owner_id=user_id, created_at=now, updated_at=now, version=1, change_seq=seq)
    task.completed, task.recurrence, task.timezone = False, None, None
    _apply(task, fields, now)
    _check_recurrence(task)
    where = _resolve_place(db, user_id=user_id, task=None, list_id=list_id, parent_id=parent_id)
    task.list_id = None  # type: ignore[assignment]
    _place(db, user_id=user_id, task=task, list_id=where[0], parent_id=where[1], after=None,
           now=now)  # fmt: skip
    db.add(task)
    db.flush()
    return task


def get_task(db: DbSession, *, user_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    """One of the user's tasks."""
    return owned_task(db, user_id=user_id, task_id=task_id)


def get_task_row(db: DbSession, *, user_id: uuid.UUID, task_id: uuid.UUID) -> tuple[Any, ...]:
    """One of the user's tasks, as a row of ``COLUMNS``."""
    found = driver_rows(db, _TASK_ROW, {"tid": task_id, "uid": user_id})
    if not found:
        raise NotFound()
    return tuple(found[0])


_TASK_ROW = select(*COLUMNS).where(Task.id == bindparam("tid"), Task.owner_id == bindparam("uid"))


def get_task_checking_session(
    db: DbSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    task_id: uuid.UUID | None,
    now: datetime,
) -> tuple[SessionCheck, Any]:
    """The session check and one of the user's tasks (a row, or None), in one statement:
    ``GET /tasks/<id>`` costs one round trip to the database."""
    check, found = _checking_session(
        db, _TASK_WITH_CALLER, {"tid": task_id}, session_id=session_id, user_id=user_id, now=now
    )
    return check, None if found is None or found[1] is None else tuple(found[1:])


def inbox_place_checking_session(
    db: DbSession, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> tuple[SessionCheck, InboxPlace | None]:
    """The session check and where a new task goes by default (``POST /tasks``), together."""
    check, found = _checking_session(
        db, _INBOX_WITH_CALLER, {}, session_id=session_id, user_id=user_id, now=now
    )
    return check, None if found is None or found[1] is None else InboxPlace(found[1], found[2])


def _checking_session(
    db: DbSession,
    statement: Any,
    params: dict[str, Any],
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
) -> tuple[SessionCheck, Sequence[Any] | None]:
    """``checking_session_rows`` of a statement that answers one row."""
    check, rows = checking_session_rows(
        db, statement, params, session_id=session_id, user_id=user_id, now=now
    )
    return check, None if rows is None else rows[0]


def checking_session_rows(
    db: DbSession,
    statement: Any,
    params: dict[str, Any],
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
) -> tuple[SessionCheck, Sequence[Any] | None]:
    """Run a statement that selects from the live session (``CALLER``) first, whose first
    column is the caller's ``email_verified``: rows only when the session is live. A session
    that is not live is looked at again by ``session_is_live``, which tells a disabled
    account apart."""
    params = {"sid": session_id, "uid": user_id, "now": now, **params}
    rows = driver_rows(db, statement, params)
    if not rows:
        return session_is_live(db, session_id=session_id, user_id=user_id, now=now), None
    return SessionCheck(live=True, email_verified=bool(rows[0][0])), rows


@dataclass(frozen=True)
class InboxPlace:
    """Where a new task goes by default: the inbox, and the position now first in it."""

    list_id: uuid.UUID
    first_position: str | None


# The live session as a subquery: a folded read selects from it first (no row: not live).
CALLER = LIVE_SESSION.subquery("caller")
_TASK_WITH_CALLER = select(CALLER.c.email_verified, *COLUMNS).select_from(
    CALLER.outerjoin(
        Task.__table__, and_(Task.id == bindparam("tid"), Task.owner_id == bindparam("uid"))
    )
)
_FIRST_POSITION = (
    select(Task.position)
    .where(Task.list_id == TaskList.id, Task.parent_id.is_(None))
    .order_by(Task.position, Task.id)
    .limit(1)
    .correlate(TaskList)
    .scalar_subquery()
)
_INBOX = (TaskList.owner_id == bindparam("uid"), TaskList.inbox.is_(True))
_INBOX_WITH_CALLER = select(CALLER.c.email_verified, TaskList.id, _FIRST_POSITION).select_from(
    CALLER.outerjoin(TaskList.__table__, and_(*_INBOX))
)
_INBOX_PLACE = select(TaskList.id, _FIRST_POSITION).where(*_INBOX)


def inbox_place(db: DbSession, *, user_id: uuid.UUID) -> InboxPlace | None:
    """Where a new task goes by default, for a caller whose check read nothing."""
    found = db.connection().execute(_INBOX_PLACE, {"uid": user_id}).first()
    return None if found is None else InboxPlace(found[0], found[1])


def update_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    precondition: Precondition = Precondition(),
    max_tasks: int = 0,
) -> Task | TaskRow:
    """Write the given fields (all of them for PUT), bumping ``version`` even if nothing
    changed. A new ``list_id``/``parent_id`` moves the task (first in its new place);
    completing a recurring task makes its next occurrence, once.

    The common change (plain fields of a task that does not recur) is one statement; what
    it does not match (a missing or foreign task, another version, a recurring task) takes
    the general path, which tells these apart.
    """
    if writes_in_one_statement(db) and set(fields) <= PLAIN_FIELDS and not precondition.required:
        written = _update_plain_fields(
            db, user_id=user_id, task_id=task_id, fields=fields, now=now,
            versions=precondition.versions,
        )  # fmt: skip
        if written is not None:
            return written
    fields = dict(fields)
    list_id, parent_id = (fields.pop(name, UNSET) for name in PLACEMENT)
    try:
        with write(db):
            seq = journal.next_change_seq(db, user_id)  # owner row first: see journal
            task = owned_task(db, user_id=user_id, task_id=task_id, lock=True)
            precondition.check(task.version, "task")
            completing = fields.get("completed") is True and not task.completed
            _apply(task, fields, now)
            _check_recurrence(task)
            if list_id is not UNSET or parent_id is not UNSET:
                where = _resolve_place(
                    db, user_id=user_id, task=task, list_id=list_id, parent_id=parent_id
                )
                if where != (task.list_id, task.parent_id):
                    _place(db, user_id=user_id, task=task, list_id=where[0],
                           parent_id=where[1], after=None, now=now)  # fmt: skip
            task.updated_at = now
            task.version = task.version + 1
            task.change_seq = seq
            if completing:
                _complete(db, user_id=user_id, task=task, now=now, max_tasks=max_tasks)
    except StaleDataError:  # a safety net: the row lock should make this unreachable
        raise PreconditionFailed("The task has changed; fetch it again.") from None
    return task


# What a change can write without reading the task first: no placement, no recurrence.
PLAIN_FIELDS = frozenset({"title", "notes", "completed", "due_at", "priority", "tags"})


def _update_plain_fields(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    fields: dict[str, Any],
    now: datetime,
    versions: frozenset[int] | None,
) -> TaskRow | None:
    """Write plain fields of a task that does not recur, in one statement that also takes the
    owner's row first and its change number (see ``journal.next_change_seq``); the new row
    (a named tuple of ``COLUMNS``), or None when no task matched (the change number it took
    is simply skipped)."""
    params: dict[str, Any] = {f"v_{name}": value for name, value in fields.items()}
    params.update(uid=user_id, tid=task_id, v_now=now)
    if "priority" in fields:
        params["v_priority"] = PRIORITIES.index(fields["priority"])
    if "completed" in fields:
        params["v_since"] = now if fields["completed"] else None
    if versions is not None:
        params["versions"] = sorted(versions)
    statement = _plain_update(frozenset(fields), versions is not None)
    return next(iter(one_statement_write(db, statement, params)), None)


_VERSIONS = ARRAY(Integer)


@lru_cache(maxsize=256)  # one per set of fields sent (at most 2^6, times with If-Match or not)
def _plain_update(names: frozenset[str], versioned: bool) -> Any:
    """``_update_plain_fields``'s statement for these fields, built once, with parameters."""
    owner = (
        update(User)
        .where(User.id == bindparam("uid"))
        .values(change_seq=User.change_seq + 1)
        .returning(User.change_seq)
        .cte("owner")
    )
    values: dict[str, Any] = {name: _param(name) for name in names}
    if "completed" in names:  # completed_at moves only when completed does
        values["completed_at"] = case(
            (Task.completed == _param("completed"), Task.completed_at),
            else_=_param("completed_at", "since"),
        )
    seq = select(owner.c.change_seq).scalar_subquery()
    # In the WHERE clause, the owner's update runs first (a one-time filter), before any task
    # row is locked: one lock order with every other write and with account deletion. An
    # account deleted meanwhile leaves no owner row, and the task is not written.
    statement = update(Task).where(
        seq.is_not(None),
        Task.id == bindparam("tid"),
        Task.owner_id == bindparam("uid"),
        Task.recurrence.is_(None),
    )
    if versioned:
        # = ANY(array): one bound value, so the SQL is the same for any number of versions.
        statement = statement.where(Task.version == any_(bindparam("versions", type_=_VERSIONS)))
    return statement.values(
        **values, updated_at=_param("updated_at", "now"), version=Task.version + 1,
        change_seq=seq,
    ).returning(*COLUMNS)  # fmt: skip


def _complete(
    db: DbSession, *, user_id: uuid.UUID, task: Task, now: datetime, max_tasks: int = 0
) -> None:
    """A recurring task just completed: make its next occurrence right after it, unless one
    was made already (a retried or repeated completion) or the rule has ended."""
    if task.recurrence is None or task.next_occurrence_id is not None or task.due_at is None:
        return
    following = recurrence.next_occurrence(task.recurrence, task.timezone or "UTC", task.due_at)
    if following is None:
        return
    seq = journal.next_change_seq(db, user_id, added=1, max_tasks=max_tasks or 2**31)
    successor = Task(
        owner_id=user_id, title=task.title, notes=task.notes, priority=task.priority,
        tags=list(task.tags), completed=False, due_at=following.due_at,
        recurrence=following.rule, timezone=task.timezone, created_at=now, updated_at=now,
        version=1, change_seq=seq,
    )  # fmt: skip
    successor.list_id = None  # type: ignore[assignment]
    _place(db, user_id=user_id, task=successor, list_id=task.list_id, parent_id=task.parent_id,
           after=task, now=now)  # fmt: skip
    db.add(successor)
    db.flush()
    task.next_occurrence_id = successor.id


def move_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    list_id: Any,
    parent_id: Any,
    after_id: uuid.UUID | None,
    now: datetime,
    precondition: Precondition = Precondition(),
) -> Task:
    """Put the task right after ``after_id`` (None: first) in its (new) list and parent; one
    row is written, plus its subtasks when it changes lists."""
    with write(db):
        seq = journal.next_change_seq(db, user_id)
        task = owned_task(db, user_id=user_id, task_id=task_id, lock=True)
        precondition.check(task.version, "task")
        where = _resolve_place(db, user_id=user_id, task=task, list_id=list_id, parent_id=parent_id)
        after = None
        if after_id is not None:
            after = owned_task(db, user_id=user_id, task_id=after_id)
            if after.id == task.id:
                raise InvalidInput("after", "a task cannot be placed after itself")
            if (after.list_id, after.parent_id) != where:
                raise InvalidInput("after", "must be a task of the same list and parent")
        _place(db, user_id=user_id, task=task, list_id=where[0], parent_id=where[1], after=after,
               now=now)  # fmt: skip
        task.updated_at, task.version, task.change_seq = now, task.version + 1, seq
    return task


def delete_task(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    now: datetime,
    precondition: Precondition = Precondition(),
) -> None:
    """Delete one task and its subtasks, leaving a tombstone for each."""
    with write(db):
        journal.lock_owner(db, user_id)
        task = owned_task(db, user_id=user_id, task_id=task_id, lock=True)
        precondition.check(task.version, "task")
        children = list(db.scalars(select(Task.id).where(Task.parent_id == task.id)))
        ids = [*children, task.id]
        first = journal.next_change_seq(db, user_id, len(ids), added=-len(ids))
        journal.bury(db, user_id=user_id, ids=ids, first_seq=first, now=now)
        db.execute(
            delete(Task)
            .where(Task.owner_id == user_id, Task.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        db.expunge(task)


def clear_completed(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> int:
    """Delete every completed task of the user (and their subtasks), a bounded batch per
    transaction."""
    total = 0
    while True:
        deleted = _clear_batch(db, user_id=user_id, now=now)
        total += deleted
        if deleted < CLEAR_BATCH:
            return total


def _clear_batch(db: DbSession, *, user_id: uuid.UUID, now: datetime) -> int:
    """Delete up to ``CLEAR_BATCH`` completed tasks in one transaction, with their subtasks;
    returns how many completed tasks went."""
    with write(db):
        journal.lock_owner(db, user_id)  # the count is only known after the read below
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
        children = list(
            db.scalars(
                select(Task.id).where(
                    Task.owner_id == user_id, Task.parent_id.in_(ids), Task.id.not_in(ids)
                )
            )
        )
        gone = [*children, *ids]
        first = journal.next_change_seq(db, user_id, len(gone), added=-len(gone))
        journal.bury(db, user_id=user_id, ids=gone, first_seq=first, now=now)
        db.execute(
            delete(Task)
            .where(Task.owner_id == user_id, Task.id.in_(gone))
            .execution_options(synchronize_session=False)
        )
    return len(ids)
