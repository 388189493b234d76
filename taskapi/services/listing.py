"""Keyset pagination over a user's tasks: filters, sorts and signed cursors."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, func, or_, select, tuple_
from sqlalchemy.orm import Session as DbSession

from taskapi.models import Task
from taskapi.schemas.tasks import PRIORITIES
from taskapi.services.cursors import bad_token, sign, verify

CURSOR_PURPOSE = "tasks-cursor"


@dataclass(frozen=True)
class TaskFilters:
    """What a listing is restricted to; a cursor is bound to these."""

    completed: bool | None = None
    priority: str | None = None
    tag: str | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None

    def digest(self, sort: str) -> str:
        """A short fingerprint of sort and filters, stored in the cursor."""
        return hashlib.sha256(repr((sort, self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TaskPageResult:
    """One page of tasks and the cursor of the next, if any."""

    items: list[Task]
    next_cursor: str | None


def _where(filters: TaskFilters, dialect: str) -> list[ColumnElement[bool]]:
    """SQL conditions for the filters."""
    conditions: list[ColumnElement[bool]] = []
    if filters.completed is not None:
        conditions.append(Task.completed.is_(filters.completed))
    if filters.priority is not None:
        conditions.append(Task.priority == PRIORITIES.index(filters.priority))
    if filters.tag is not None:
        conditions.append(_has_tag(filters.tag, dialect))
    if filters.q is not None:
        conditions.append(_contains_text(filters.q, dialect))
    if filters.due_before is not None:
        conditions.append(Task.due_at < filters.due_before)
    if filters.due_after is not None:
        conditions.append(Task.due_at > filters.due_after)
    return conditions


def _contains_text(q: str, dialect: str) -> ColumnElement[bool]:
    """Case-insensitive substring of title or notes; ``%`` and ``_`` are literal."""
    if dialect == "sqlite":  # casefold() is registered on every SQLite connection
        needle = q.casefold()
        return or_(
            func.casefold(Task.title).contains(needle, autoescape=True),
            func.casefold(Task.notes).contains(needle, autoescape=True),
        )
    return or_(Task.title.icontains(q, autoescape=True), Task.notes.icontains(q, autoescape=True))


def _has_tag(tag: str, dialect: str) -> ColumnElement[bool]:
    """Whether the task's JSON tag array holds ``tag`` exactly."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return func.cast(Task.tags, JSONB).contains(func.jsonb_build_array(tag))
    each = func.json_each(Task.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == tag))


def _sort_columns(sort: str) -> list[tuple[Any, bool]]:
    """The sort's key columns with their direction (descending?), id last for ties."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name == "due_at":
        # Tasks without a due date sort last in both directions: a flag column first.
        nulls_last = case((Task.due_at.is_(None), 1), else_=0)
        return [(nulls_last, False), (Task.due_at, descending), (Task.id, descending)]
    return [(getattr(Task, name), descending), (Task.id, descending)]


def _key_of(task: Task, sort: str) -> list[Any]:
    """The values of the sort key for one task, as stored in a cursor."""
    name = sort.lstrip("-")
    if name == "due_at":
        due = task.due_at.isoformat() if task.due_at else None
        return [1 if due is None else 0, due, str(task.id)]
    value = getattr(task, name)
    return [value.isoformat() if isinstance(value, datetime) else value, str(task.id)]


def _decode_key(values: list[Any], sort: str) -> list[Any]:
    """Turn cursor values back into comparable Python values."""
    name = sort.lstrip("-")
    *head, last = values
    decoded: list[Any] = []
    for value in head:
        is_time = name in ("created_at", "updated_at", "due_at") and isinstance(value, str)
        decoded.append(datetime.fromisoformat(value) if is_time else value)
    decoded.append(uuid.UUID(last))
    return decoded


def _after(columns: list[tuple[Any, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the sort order: a lexicographic keyset predicate.

    Consecutive columns sorted the same way are compared as one row value, which both
    databases answer with an index range scan instead of an OR of comparisons.
    """
    # A null due_at is fully described by the nulls-last flag column before it.
    pairs = [(col, desc, value) for (col, desc), value in zip(columns, values, strict=True)
             if value is not None]  # fmt: skip
    groups: list[tuple[bool, list[Any], list[Any]]] = []
    for column, descending, value in pairs:
        if groups and groups[-1][0] == descending:
            groups[-1][1].append(column)
            groups[-1][2].append(value)
        else:
            groups.append((descending, [column], [value]))
    clauses: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for descending, cols, vals in groups:
        left = cols[0] if len(cols) == 1 else tuple_(*cols)
        right = vals[0] if len(vals) == 1 else tuple_(*vals)
        clauses.append(and_(*equal_so_far, left < right if descending else left > right))
        equal_so_far.append(left == right)
    return or_(*clauses) if clauses else false()


def list_tasks(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    filters: TaskFilters,
    sort: str,
    limit: int,
    cursor: str | None,
    key: bytes,
) -> TaskPageResult:
    """One page of the user's tasks, in keyset order; costs the same on any page."""
    dialect = db.get_bind().dialect.name
    columns = _sort_columns(sort)
    statement = select(Task).where(Task.owner_id == user_id, *_where(filters, dialect))
    if cursor is not None:
        payload = verify(cursor, key=key, purpose=CURSOR_PURPOSE, field="cursor")
        if payload.get("f") != filters.digest(sort) or not isinstance(payload.get("k"), list):
            raise bad_token("cursor")
        try:
            values = _decode_key(payload["k"], sort)
        except (ValueError, TypeError):
            raise bad_token("cursor") from None
        if len(values) != len(columns):
            raise bad_token("cursor")
        statement = statement.where(_after(columns, values))
    statement = statement.order_by(*(c.desc() if d else c.asc() for c, d in columns)).limit(
        limit + 1
    )
    rows = list(db.scalars(statement))
    items, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        next_cursor = sign(
            {"f": filters.digest(sort), "k": _key_of(items[-1], sort)},
            key=key,
            purpose=CURSOR_PURPOSE,
        )
    return TaskPageResult(items=items, next_cursor=next_cursor)
