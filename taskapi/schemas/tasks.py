"""Request, query and response models of the task endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import AfterValidator, ConfigDict, Field, field_validator

from taskapi.schemas.common import (
    FAST_JSON,
    IdRef,
    InputTimestamp,
    NoNul,
    PublicModel,
    QueryBool,
    QueryInt,
    QueryModel,
    QueryTrue,
    RequestModel,
    Text,
    Timestamp,
    document_request,
    format_timestamp,
    ignored,
    omitted_when_none,
    timestamp_or_none,
)
from taskapi.schemas.lists import ListPublic

TITLE_MAX = 200
NOTES_MAX = 10_000
TAG_MAX = 50
TAGS_MAX = 20
PRIORITIES = ("none", "low", "medium", "high")

Priority = Literal["none", "low", "medium", "high"]
SortKey = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_at", "-due_at",
    "priority", "-priority", "title", "-title", "position", "-position",
]  # fmt: skip
# RFC 5545 RRULE text; checked against the documented subset by the service.
Rule = Annotated[str, Field(min_length=1, max_length=500), NoNul]
Zone = Annotated[str, Field(min_length=1, max_length=64), NoNul]
RECURRENCE_DOC = (
    "An RFC 5545 RRULE of the documented subset: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with "
    "INTERVAL, BYDAY, BYMONTHDAY and one of COUNT or UNTIL (e.g. FREQ=WEEKLY;BYDAY=MO). Needs "
    "due_at. Completing the task makes the next occurrence (next_occurrence_id)."
)
TIMEZONE_DOC = (
    "The IANA zone the rule's wall-clock times live in (e.g. Europe/Berlin), so 09:00 stays "
    "09:00 across daylight-saving changes; UTC when omitted. Only kept with a recurrence."
)


def _trimmed_title(value: str) -> str:
    """Titles are trimmed, then must keep 1 to 200 characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > TITLE_MAX:
        raise ValueError(f"must be at most {TITLE_MAX} characters after trimming")
    return value


def _clean_tags(tags: list[str]) -> list[str]:
    """Trim, then de-duplicate keeping order, then count."""
    cleaned: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if not 1 <= len(tag) <= TAG_MAX:
            raise ValueError(f"each tag must be 1 to {TAG_MAX} characters after trimming")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > TAGS_MAX:
        raise ValueError(f"at most {TAGS_MAX} distinct tags")
    return cleaned


Title = Annotated[
    Text,
    AfterValidator(_trimmed_title),
    Field(json_schema_extra={"minLength": 1, "maxLength": TITLE_MAX, "pattern": r"\S"}),
]
Notes = Annotated[str, Field(max_length=NOTES_MAX), NoNul]
Tags = Annotated[
    list[Annotated[Text, Field(json_schema_extra={"minLength": 1, "maxLength": TAG_MAX})]],
    Field(max_length=1000, json_schema_extra={"maxItems": TAGS_MAX}),
    AfterValidator(_clean_tags),
]


def _patch_schema(schema: dict[str, Any]) -> None:
    """PATCH fields are optional, and only ``due_at`` is nullable; send at least one."""
    document_request(schema)
    schema["minProperties"] = 1


DATE_TIME = {"type": "string", "format": "date-time"}


class _ServerSetFields(RequestModel):
    """Fields a client may send back from what it read; their values are ignored."""

    id: Any = ignored("The task's id.", {"type": "string", "format": "uuid"})
    completed_at: Any = ignored(
        "When the task was completed.", {"anyOf": [DATE_TIME, {"type": "null"}]}
    )
    created_at: Any = ignored("Creation time.", DATE_TIME)
    updated_at: Any = ignored("Last change.", DATE_TIME)
    version: Any = ignored("The task's version.", {"type": "integer"})
    position: Any = ignored(
        "The task's place among its siblings (move it with POST /tasks/{id}/move).",
        {"type": "string"},
    )
    next_occurrence_id: Any = ignored(
        "The occurrence made when this recurring task was completed.",
        {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
    )


SERVER_SET_FIELDS = frozenset(_ServerSetFields.model_fields)


class TaskWrite(_ServerSetFields):
    """``POST /tasks`` and ``PUT /tasks/<id>``: omitted optional fields take their defaults."""

    title: Title
    notes: Notes = ""
    completed: bool = False
    due_at: InputTimestamp | None = Field(default=None, description="null or omitted: no due date")
    priority: Priority = "none"
    tags: Tags = Field(default_factory=list)
    list_id: IdRef | None = Field(
        default=None,
        description="The list to put it in (first in it); the inbox when omitted on create, "
        "unchanged when omitted on PUT. A subtask lives in its parent's list.",
    )
    parent_id: IdRef | None = Field(
        default=None,
        description="Make it a subtask of this top-level task (one level only); omitted or "
        "null on create: top level; omitted on PUT: unchanged.",
    )
    recurrence: Rule | None = Field(default=None, description=RECURRENCE_DOC)
    timezone: Zone | None = Field(default=None, description=TIMEZONE_DOC)


class TaskPatch(_ServerSetFields):
    """``PATCH /tasks/<id>``: only the fields sent change; ``null`` clears ``due_at``."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    title: Title = None  # type: ignore[assignment]
    notes: Notes = None  # type: ignore[assignment]
    completed: bool = None  # type: ignore[assignment]
    due_at: InputTimestamp | None = Field(default=None, description="null clears the due date")
    priority: Priority = None  # type: ignore[assignment]
    tags: Tags = None  # type: ignore[assignment]
    list_id: IdRef = Field(  # type: ignore[assignment]
        default=None, description="Move it to this list (first in it)"
    )
    parent_id: IdRef | None = Field(
        default=None, description="Make it a subtask of this task; null: back to the top level"
    )
    recurrence: Rule | None = Field(default=None, description=f"{RECURRENCE_DOC} null: none.")
    timezone: Zone | None = Field(default=None, description=f"{TIMEZONE_DOC} null: UTC.")

    def changes(self) -> dict[str, Any]:
        """The writable fields the client actually sent."""
        return {name: getattr(self, name) for name in self.model_fields_set - SERVER_SET_FIELDS}


class TaskPublic(PublicModel):
    """A task as its owner sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    title: str
    notes: str
    completed: bool
    completed_at: Timestamp | None
    due_at: Timestamp | None
    priority: Priority
    tags: list[str]
    created_at: Timestamp
    updated_at: Timestamp
    version: int
    list_id: UUID
    parent_id: UUID | None
    position: str = Field(description="Sorts the list's (or parent's) tasks: sort=position")
    recurrence: str | None
    timezone: str | None
    next_occurrence_id: UUID | None = Field(
        description="Set when this recurring task was completed: the occurrence made then"
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_name(cls, value: object) -> object:
        """The database keeps priorities as 0..3 so they sort; clients see names."""
        return PRIORITIES[value] if isinstance(value, int) else value


def task_document(task: Any) -> dict[str, Any]:
    """``TaskPublic``'s JSON document of a task entity or row (any object with the task's
    columns as attributes), built directly: no validation, since the row is the database's."""
    return {
        "id": str(task.id),
        "title": task.title,
        "notes": task.notes,
        "completed": task.completed,
        "completed_at": timestamp_or_none(task.completed_at),
        "due_at": timestamp_or_none(task.due_at),
        "priority": PRIORITIES[task.priority],
        "tags": task.tags,
        "created_at": format_timestamp(task.created_at),
        "updated_at": format_timestamp(task.updated_at),
        "version": task.version,
        "list_id": str(task.list_id),
        "parent_id": None if task.parent_id is None else str(task.parent_id),
        "position": task.position,
        "recurrence": task.recurrence,
        "timezone": task.timezone,
        "next_occurrence_id": (
            None if task.next_occurrence_id is None else str(task.next_occurrence_id)
        ),
    }


# The columns of a page's rows, in this order (services.listing selects them so): a row is
# unpacked by position, which is several times faster than by name.
ROW_COLUMNS = (
    "id", "owner_id", "title", "notes", "completed", "completed_at", "due_at", "priority",
    "tags", "created_at", "updated_at", "version", "change_seq", "list_id", "parent_id",
    "position", "recurrence", "timezone", "next_occurrence_id",
)  # fmt: skip


def row_document(row: Sequence[Any]) -> dict[str, Any]:
    """``task_document`` of a row of ``ROW_COLUMNS``, for ``_dumps`` (orjson writes UUIDs and
    most timestamps itself)."""
    (task_id, _owner, title, notes, completed, completed_at, due_at, priority, tags, created,
     updated, version, _seq, list_id, parent_id, position, rule, zone, next_id) = row  # fmt: skip
    return {
        "id": task_id,
        "title": title,
        "notes": notes,
        "completed": completed,
        "completed_at": None if completed_at is None else _timestamp(completed_at),
        "due_at": None if due_at is None else _timestamp(due_at),
        "priority": PRIORITIES[priority],
        "tags": tags,
        "created_at": _timestamp(created),
        "updated_at": _timestamp(updated),
        "version": version,
        "list_id": list_id,
        "parent_id": parent_id,
        "position": position,
        "recurrence": rule,
        "timezone": zone,
        "next_occurrence_id": next_id,
    }


def _timestamp(value: datetime) -> datetime | str:
    """A timestamp for ``_dumps``: the datetime itself when orjson writes it as
    ``format_timestamp`` does (in UTC, with ``Z``, and six fractional digits, which orjson
    leaves out on a whole second), else the text. Formatting in Python (``isoformat``) cost
    about a microsecond each, and a page has 150 of them."""
    return value if value.microsecond and value.tzinfo is UTC else format_timestamp(value)


def _dumps(document: Any) -> bytes:
    """orjson, with UTC timestamps written with ``Z`` as the contract shows them."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def _task_json(body: Any) -> bytes:
    """A task answer: an entity, a row of ``ROW_COLUMNS``, or a document already made (a
    create's answer)."""
    if isinstance(body, dict):
        return _dumps(body)
    return _dumps(row_document(body) if isinstance(body, tuple) else task_document(body))


def _page_json(body: dict[str, Any]) -> bytes:
    """A page answer: ``{"items": [rows of ROW_COLUMNS, or entities], "next_cursor": ...}``."""
    items = body["items"]
    render = row_document if items and isinstance(items[0], Sequence) else task_document
    return _dumps({"items": [render(task) for task in items], "next_cursor": body["next_cursor"]})


class TaskPage(PublicModel):
    """One page of tasks."""

    items: list[TaskPublic]
    next_cursor: str | None = Field(description="Opaque; null exactly when no task follows")


class TaskListQuery(QueryModel):
    """Query parameters of ``GET /tasks``; every one is validated."""

    limit: QueryInt = Field(default=50, ge=1, le=100, description="Tasks per page")
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The previous page's next_cursor (opaque); bound to the same filters and sort",
    )
    completed: QueryBool | None = Field(
        default=None, description="Only completed (true) or only open (false) tasks"
    )
    priority: Priority | None = Field(default=None, description="Only tasks of this priority")
    tag: Text | None = Field(
        default=None, min_length=1, max_length=TAG_MAX, description="Only tasks carrying this tag"
    )
    q: Text | None = Field(
        default=None,
        min_length=1,
        max_length=TITLE_MAX,
        description="Case-insensitive substring of the title or the notes",
    )
    due_before: InputTimestamp | None = Field(
        default=None, description="Only tasks due before this time (RFC 3339 with an offset)"
    )
    due_after: InputTimestamp | None = Field(
        default=None, description="Only tasks due after this time (RFC 3339 with an offset)"
    )
    sort: SortKey | None = Field(
        default=None,
        description=(
            "A field, with - for descending; ties broken by id; tasks without due_at sort "
            "last; priorities order none < low < medium < high. position (the user's own "
            "order) needs list_id or parent_id and is the default with them; otherwise "
            "-created_at is."
        ),
    )
    list_id: IdRef | None = Field(default=None, description="Only this list's tasks")
    parent_id: IdRef | None = Field(
        default=None,
        description="Only this task's subtasks; without it, only top-level tasks are listed",
    )


class ClearCompletedQuery(QueryModel):
    """Query of ``DELETE /tasks``: only ``completed=true`` is allowed."""

    completed: QueryTrue = Field(
        description="Must be true: the completed tasks are the ones deleted"
    )


class DeletedCount(PublicModel):
    """How many tasks were deleted."""

    deleted: int


class ChangesQuery(QueryModel):
    """Query of ``GET /tasks/changes``."""

    since: str | None = Field(
        default=None,
        max_length=2048,
        description=(
            "The previous page's next (opaque). Without it, the changes start from the "
            "beginning: every task the user has, and the deletions still remembered. A token "
            "older than the tombstone retention is 410 sync_token_expired."
        ),
    )
    limit: QueryInt = Field(default=100, ge=1, le=500, description="Changes per page")


class ChangeItem(PublicModel):
    """A task's or list's latest state (``deleted`` false) or its deletion."""

    id: UUID
    type: Literal["task", "list"] = Field(description="What changed")
    deleted: bool
    task: TaskPublic | None = omitted_when_none(
        "The task's latest state; present only for a task that was not deleted"
    )
    list: ListPublic | None = omitted_when_none(
        "The list's latest state; present only for a list that was not deleted"
    )


class ChangesPage(PublicModel):
    """A page of changes."""

    changes: list[ChangeItem] = Field(
        description="Oldest first; each task at most once per page, with its latest state"
    )
    next: str = Field(description="The token to send as since for the next page (keep it)")
    has_more: bool = Field(description="true when more changes follow: ask again at once")


FAST_JSON[TaskPublic] = _task_json
FAST_JSON[TaskPage] = _page_json
