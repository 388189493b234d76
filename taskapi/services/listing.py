"""Keyset pagination over a user's tasks: filters, sorts and encrypted cursors."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.sql.elements import BindParameter

from taskapi.errors import BadToken, InvalidInput
from taskapi.models import Task
from taskapi.schemas.tasks import PRIORITIES, ROW_COLUMNS
from taskapi.services.auth import SessionCheck
from taskapi.services.cursors import open_token, seal
from taskapi.services.lists import owned_list
from taskapi.services.tasks import CALLER, COLUMNS, checking_session_rows, owned_task

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
    list_id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None  # None: top-level tasks only

    def digest(self, sort: str, user_id: uuid.UUID) -> str:
        """A short fingerprint of the listing (whose, sort, filters), stored in the cursor.

        Binding the cursor to its user matters even though it is encrypted: replayed by
        someone else against their own tasks, a title-sorted cursor would be an oracle that
        compares their titles with the hidden one.
        """
        return hashlib.sha256(repr((str(user_id), sort, self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TaskPageResult:
    """One page of tasks and the cursor of the next, if any."""

    items: Sequence[Any]  # rows of the task's columns
    next_cursor: str | None


@dataclass(frozen=True)
class _Shape:
    """What decides a page statement's text: which filters are set (not their values), the
    sort, where a cursor resumes, the dialect. Statements are built once per shape, with the
    values as bound parameters: building one cost more than running it."""

    dialect: str
    sort: str
    filters: frozenset[str]  # the names of the filters that are set
    completed: bool | None  # IS true / IS false is part of the text
    resume: int | None  # None: a first page; else 0, or for due_at the cursor's 0 or 1 (dated/not)
    folded: bool  # joined to the live session (GET /tasks)


def _where(shape: _Shape) -> list[ColumnElement[bool]]:
    """SQL conditions for the filters, on the bound parameters ``_parameters`` fills."""
    present = shape.filters
    conditions: list[ColumnElement[bool]] = [
        Task.owner_id == bindparam("p_owner"),
        Task.parent_id == bindparam("p_parent")
        if "parent_id" in present
        else Task.parent_id.is_(None),
    ]
    if "list_id" in present:
        conditions.append(Task.list_id == bindparam("p_list"))
    if shape.completed is not None:
        conditions.append(Task.completed.is_(shape.completed))
    if "priority" in present:
        conditions.append(Task.priority == bindparam("p_priority"))
    if "tag" in present:
        conditions.append(_has_tag(shape.dialect))
    if "q" in present:
        conditions.append(_contains_text(shape.dialect))
    if "due_before" in present:
        conditions.append(Task.due_at < bindparam("p_due_before"))
    if "due_after" in present:
        conditions.append(Task.due_at > bindparam("p_due_after"))
    return conditions


def _parameters(filters: TaskFilters, user_id: uuid.UUID, dialect: str) -> dict[str, Any]:
    """The bound values of ``_where``'s conditions."""
    values: dict[str, Any] = {"p_owner": user_id}
    if filters.parent_id is not None:
        values["p_parent"] = filters.parent_id
    if filters.list_id is not None:
        values["p_list"] = filters.list_id
    if filters.priority is not None:
        values["p_priority"] = PRIORITIES.index(filters.priority)
    if filters.tag is not None:
        values["p_tag"] = [filters.tag] if dialect == "postgresql" else filters.tag
    if filters.q is not None:
        needle = filters.q.casefold() if dialect == "sqlite" else filters.q
        values["p_q"] = _escape_like(needle)
    if filters.due_before is not None:
        values["p_due_before"] = filters.due_before
    if filters.due_after is not None:
        values["p_due_after"] = filters.due_after
    return values


_LIKE_ESCAPE = "/"


def _escape_like(text: str) -> str:
    """``%`` and ``_`` (and the escape character itself) taken literally by LIKE."""
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )


def _contains_text(dialect: str) -> ColumnElement[bool]:
    """Case-insensitive substring of title or notes (``p_q``, escaped by ``_escape_like``)."""
    needle: BindParameter[str] = bindparam("p_q")
    if dialect == "sqlite":  # casefold() is registered on every SQLite connection
        return or_(
            func.casefold(Task.title).contains(needle, escape=_LIKE_ESCAPE),
            func.casefold(Task.notes).contains(needle, escape=_LIKE_ESCAPE),
        )
    return or_(
        Task.title.icontains(needle, escape=_LIKE_ESCAPE),
        Task.notes.icontains(needle, escape=_LIKE_ESCAPE),
    )


def _has_tag(dialect: str) -> ColumnElement[bool]:
    """Whether the task's JSON tag array holds ``p_tag`` exactly (on PostgreSQL, jsonb ``@>``
    served by the tags GIN index)."""
    if dialect == "postgresql":
        return type_coerce(Task.tags, JSONB).contains(bindparam("p_tag", type_=JSONB))
    each = func.json_each(Task.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == bindparam("p_tag")))


def _direction(descending: bool) -> Any:
    """``column.desc`` or ``column.asc``, as a function of the column."""
    return (lambda column: column.desc()) if descending else (lambda column: column.asc())


def _key_of(row: Any, sort: str) -> list[Any]:
    """The values of the sort key for one row (of ``ROW_COLUMNS``), as stored in a cursor."""
    name = sort.lstrip("-")
    task_id = str(row[_ID])
    if name == "due_at":
        due = row[_DUE_AT].isoformat() if row[_DUE_AT] else None
        return [1 if due is None else 0, due, task_id]
    value = row[ROW_COLUMNS.index(name)]
    return [value.isoformat() if isinstance(value, datetime) else value, task_id]


_ID, _DUE_AT = ROW_COLUMNS.index("id"), ROW_COLUMNS.index("due_at")


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


def _after(columns: list[Any], descending: bool) -> ColumnElement[bool]:
    """Rows strictly after the cursor's values (bound as ``k0``, ``k1``, ...): one row-value
    comparison, an index range scan."""
    bound = [bindparam(f"k{i}", type_=column.type) for i, column in enumerate(columns)]
    left = columns[0] if len(columns) == 1 else tuple_(*columns)
    right = bound[0] if len(bound) == 1 else tuple_(*bound)
    return left < right if descending else left > right


def _cursor_values(
    cursor: str | None, *, filters: TaskFilters, sort: str, key: bytes, user_id: uuid.UUID
) -> list[Any] | None:
    """The sort key a cursor continues after; 400 for one forged or from another listing."""
    if cursor is None:
        return None
    payload = open_token(cursor, key=key, purpose=CURSOR_PURPOSE, field="cursor")
    if payload.get("f") != filters.digest(sort, user_id) or not isinstance(payload.get("k"), list):
        raise BadToken("cursor")
    try:
        values = _decode_key(payload["k"], sort)
    except (ValueError, TypeError):
        raise BadToken("cursor") from None
    expected = 3 if sort.lstrip("-") == "due_at" else 2
    if len(values) != expected or (expected == 3 and (values[0] == 1) != (values[1] is None)):
        raise BadToken("cursor")
    return values


_LIMIT = bindparam("p_limit", type_=Integer)


def _plain_page(shape: _Shape) -> Any:
    """One index range scan on (owner, sort column, id)."""
    descending, order = shape.sort.startswith("-"), _direction(shape.sort.startswith("-"))
    column = getattr(Task, shape.sort.lstrip("-"))
    statement = select(*COLUMNS).where(*_where(shape))
    if shape.resume is not None:
        statement = statement.where(_after([column, Task.id], descending))
    return statement.order_by(order(column), order(Task.id)).limit(_LIMIT)


def _due_at_page(shape: _Shape) -> Any:
    """Tasks with a due date, then (in both directions) those without: two range scans.

    A nulls-last sort expression would make both databases sort every task of the user;
    two index scans under one UNION ALL stay as cheap as any other page. ``resume`` is the
    cursor's first value: 0 within the dated tasks, 1 within the undated.
    """
    descending = shape.sort.startswith("-")
    order = _direction(descending)
    conditions = _where(shape)
    undated = [*conditions, Task.due_at.is_(None)]
    parts = []
    if shape.resume != 1:
        dated = [*conditions, Task.due_at.is_not(None)]
        if shape.resume == 0:
            dated.append(_after([Task.due_at, Task.id], descending))
        parts.append(select(*COLUMNS).where(*dated).order_by(order(Task.due_at), order(Task.id)))
    else:
        undated.append(_after([Task.id], descending))
    parts.append(select(*COLUMNS).where(*undated).order_by(order(Task.id)))
    if len(parts) == 1:
        return parts[0].limit(_LIMIT)
    union = union_all(*(part.limit(_LIMIT).subquery().select() for part in parts)).subquery()
    undated_last = case((union.c.due_at.is_(None), 1), else_=0)
    return (
        select(union).order_by(undated_last, order(union.c.due_at), order(union.c.id)).limit(_LIMIT)
    )


@lru_cache(maxsize=512)  # bounded: shapes are finite, but thousands
def _statement(shape: _Shape) -> Any:
    """The page's statement of a shape, built once; with ``folded``, joined to the live
    session (``CALLER``) so that no row comes back when the session is not live."""
    page = _due_at_page(shape) if shape.sort.lstrip("-") == "due_at" else _plain_page(shape)
    if not shape.folded:
        return page
    # The page's columns by name (built once): proxying the subquery's columns (page.c) cost
    # more per request than the round trip this saves. The page is re-ordered outside: a
    # join does not promise to keep a subquery's order.
    return (
        select(CALLER.c.email_verified, *_PAGE_COLUMNS.values())
        .select_from(CALLER.outerjoin(page.subquery("page"), true()))
        .order_by(*_outer_order(shape.sort))
    )


def _check_owned(db: DbSession, *, user_id: uuid.UUID, filters: TaskFilters) -> None:
    """Another user's list or parent task is the one 404, not an empty page."""
    if filters.list_id is not None:
        owned_list(db, user_id=user_id, list_id=filters.list_id)
    if filters.parent_id is not None:
        owned_task(db, user_id=user_id, task_id=filters.parent_id)


def default_sort(filters: TaskFilters) -> str:
    """Inside a list (or under a parent) the user's own order; elsewhere newest first."""
    return "position" if filters.list_id or filters.parent_id else "-created_at"


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
    _check_owned(db, user_id=user_id, filters=filters)
    statement, params = _page_statement(
        db, user_id=user_id, filters=filters, sort=sort, limit=limit, cursor=cursor, key=key,
        folded=False,
    )  # fmt: skip
    rows = db.connection().execute(statement, params).all()  # Core rows, fetched at once
    return _page_of(rows, user_id=user_id, filters=filters, sort=sort, limit=limit, key=key)


def list_tasks_checking_session(
    db: DbSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    filters: TaskFilters,
    sort: str,
    limit: int,
    cursor: str | None,
    key: bytes,
) -> tuple[SessionCheck, TaskPageResult | None]:
    """The session check and a page, in one statement (``GET /tasks``): the page joined to
    the live session, so no row comes back when the session is not live. Only for
    listings with nothing to look up first (no list or parent: ``list_tasks`` checks
    those are the user's)."""
    if filters.list_id is not None or filters.parent_id is not None:
        raise ValueError("a list's or a parent's page is checked first: use list_tasks")
    statement, params = _page_statement(
        db, user_id=user_id, filters=filters, sort=sort, limit=limit, cursor=cursor, key=key,
        folded=True,
    )  # fmt: skip
    check, rows = checking_session_rows(
        db, statement, params, session_id=session_id, user_id=user_id, now=now
    )
    if rows is None:
        return check, None
    items = [row[1:] for row in rows if row[1] is not None]
    return check, _page_of(items, user_id=user_id, filters=filters, sort=sort, limit=limit,
                           key=key)  # fmt: skip


# The columns of the subquery ``page`` (a folded listing), typed as the tasks columns.
_PAGE_COLUMNS = {
    column.key: literal_column(f"page.{column.key}", type_=column.type) for column in COLUMNS
}


def _outer_order(sort: str) -> list[Any]:
    """The page's own order, on the columns of its subquery ``page``."""
    name, order = sort.lstrip("-"), _direction(sort.startswith("-"))
    column, task_id = _PAGE_COLUMNS[name], _PAGE_COLUMNS["id"]
    if name == "due_at":
        return [column.is_(None), order(column), order(task_id)]  # false (dated) first
    return [order(column), order(task_id)]


def _page_statement(
    db: DbSession,
    *,
    user_id: uuid.UUID,
    filters: TaskFilters,
    sort: str,
    limit: int,
    cursor: str | None,
    key: bytes,
    folded: bool,
) -> tuple[Any, dict[str, Any]]:
    """The page's query (``limit`` + 1 rows, to know whether more follow) and its bound
    values; 400 for a sort by position outside a list, or a cursor not this listing's."""
    if sort.lstrip("-") == "position" and filters.list_id is None and filters.parent_id is None:
        raise InvalidInput("sort", "position orders a list's tasks: send list_id or parent_id")
    dialect = db.get_bind().dialect.name
    values = _cursor_values(cursor, filters=filters, sort=sort, key=key, user_id=user_id)
    params = _parameters(filters, user_id, dialect)
    params["p_limit"] = limit + 1
    resume, keys = _resumes_at(values, sort)
    params.update({f"k{i}": value for i, value in enumerate(keys)})
    present = frozenset(
        name for name in _FILTER_NAMES if name != "completed" and getattr(filters, name) is not None
    )
    shape = _Shape(dialect, sort, present, filters.completed, resume, folded)
    return _statement(shape), params


_FILTER_NAMES = tuple(TaskFilters.__dataclass_fields__)


def _resumes_at(values: list[Any] | None, sort: str) -> tuple[int | None, list[Any]]:
    """The shape's ``resume`` and the values ``_after`` binds: none on a first page; for
    due_at, the first value says which scan resumes, the dated (its date and id follow) or
    the undated (only its id)."""
    if values is None:
        return None, []
    if sort.lstrip("-") != "due_at":
        return 0, values
    return values[0], values[1:] if values[0] == 0 else values[2:]


def _page_of(
    rows: Sequence[Any],
    *,
    user_id: uuid.UUID,
    filters: TaskFilters,
    sort: str,
    limit: int,
    key: bytes,
) -> TaskPageResult:
    """The page's items and the cursor of the next page, when more rows followed."""
    items, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        next_cursor = seal(
            {"f": filters.digest(sort, user_id), "k": _key_of(items[-1], sort)},
            key=key,
            purpose=CURSOR_PURPOSE,
        )
    return TaskPageResult(items=items, next_cursor=next_cursor)
