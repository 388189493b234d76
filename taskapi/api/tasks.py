"""Task endpoints under ``/api/v1/tasks``: thin views over ``services.tasks``."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request, url_for
from werkzeug.routing import BaseConverter

from taskapi.api.deps import CALLER_CHECKS, NOT_FOLDED, db_session, folded_data, settings, token_key
from taskapi.api.operation import PATCH_TYPES, Reply, operation, page_reply
from taskapi.api.parsing import id_or_none, parse_id, parse_query
from taskapi.db import utcnow
from taskapi.errors import ApiError, DomainError, NotFound, validation_error
from taskapi.schemas.lists import TaskMoveBody
from taskapi.schemas.tasks import (
    ROW_COLUMNS,
    SERVER_SET_FIELDS,
    ChangesPage,
    ChangesQuery,
    ClearCompletedQuery,
    DeletedCount,
    TaskListQuery,
    TaskPage,
    TaskPatch,
    TaskPublic,
    TaskWrite,
    task_document,
)
from taskapi.security import principal
from taskapi.services import listing, sync
from taskapi.services import tasks as service

if TYPE_CHECKING:  # views handle tasks only through services; the types are for signatures
    from sqlalchemy.orm import Session as DbSession

    from taskapi.models import Task
    from taskapi.services.auth import SessionCheck

bp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks")


class TaskIdConverter(BaseConverter):
    """Any path segment but ``changes``, which is the delta-sync route."""

    regex = r"(?!changes$)[^/]+"


TAGS = ("tasks",)
VERSION_TAG = re.compile(r"[0-9]{1,18}", re.ASCII)
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
IF_MATCH_DOC = {
    "If-Match": (
        "The ETag the change is based on (or *); 412 precondition_failed when the task's "
        "current ETag is not among them (strong comparison). Required (428) only where the "
        "server is configured so (TASKAPI_REQUIRE_IF_MATCH)."
    )
}
ETAG_DOC = {"ETag": 'The task\'s strong ETag, derived from its version (e.g. "3")'}
IDEMPOTENCY_DOC = (
    "1 to 255 printable ASCII characters, chosen by the client (a UUID is a good key). Scope: "
    "this user's POST /api/v1/tasks; other users' keys never collide with yours. Retention: "
    "24 hours from the first request with the key. Within it, a request with the same key "
    "and the same body (compared after validation, server-set fields left out) creates "
    "nothing and gets the first answer again (201, the task as it was then, with "
    "Idempotent-Replayed: true), even if the task has since changed or been deleted; the "
    "same key with another body is 409 idempotency_conflict. Only a created task is "
    "remembered: a request that failed may be retried with the same key. After 24 hours the "
    "key is forgotten and a request with it creates a new task. Concurrent requests with "
    "one key create exactly one task."
)


def idempotency_key() -> str | None:
    """The request's Idempotency-Key, if well-formed (400 otherwise)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise validation_error(
            [{"field": "Idempotency-Key", "message": "must be 1 to 255 printable characters"}]
        )
    return key


def written_fields(body: TaskWrite) -> dict[str, Any]:
    """A POST or PUT body's fields, server-set ones left out; ``list_id`` and ``parent_id``
    only when sent (omitted on PUT: the task stays where it is)."""
    unsent = {"list_id", "parent_id"} - body.model_fields_set
    return body.model_dump(exclude=set(SERVER_SET_FIELDS) | unsent)


def task_json(task: Task | service.TaskRow) -> dict[str, Any]:
    """The public JSON of a task, as the declared model serializes it (kept for replays)."""
    return task_document(task)


def etag(version: int) -> str:
    """The strong ETag of a task version."""
    return f'"{version}"'


def _task_reply(
    task: Task | service.TaskRow | dict[str, Any], status: int | None = None, **headers: str
) -> Reply:
    """A task answer with its ETag."""
    version = task["version"] if isinstance(task, dict) else task.version
    return Reply(task, status, {"ETag": etag(version), **headers})


def if_match() -> service.Precondition:
    """What ``If-Match`` asks for: nothing, any version (``*``), or some versions.

    Weak tags (W/"3") never match: If-Match uses strong comparison (RFC 9110).
    """
    if "If-Match" not in request.headers:
        return service.Precondition(required=settings().require_if_match)
    tags = request.if_match
    if tags.star_tag:
        return service.Precondition(versions=None)
    # Werkzeug reads an empty tag (`If-Match: ""`) as None: it names no version.
    versions = {int(tag) for tag in tags.as_set() if tag and VERSION_TAG.fullmatch(tag)}
    return service.Precondition(versions=frozenset(versions))


def _inbox_and_caller(
    db: DbSession, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime, _args: dict[str, Any]
) -> tuple[SessionCheck, Any]:
    """``POST /tasks``'s folded read: the session check and where a new task goes by default
    (the inbox and its first position), so that the create is one more statement."""
    return service.inbox_place_checking_session(db, session_id=session_id, user_id=user_id, now=now)


@bp.post("")
@operation(
    "Create a task",
    tags=TAGS,
    verified_email=True,
    body=TaskWrite,
    ok=(201, TaskPublic),
    errors={409: ("idempotency_conflict", "quota_exceeded")},
    headers={"Idempotency-Key": IDEMPOTENCY_DOC},
    folded_read=_inbox_and_caller,
    response_headers={
        "Location": "The task's absolute URL",
        **ETAG_DOC,
        "Idempotent-Replayed": "true when this is the replayed answer of an earlier request",
    },
    description=(
        "Only title is required; omitted fields take their defaults. Server-set fields (id, "
        "completed_at, created_at, updated_at, version) may be sent back and are ignored. "
        "409 idempotency_conflict for a reused Idempotency-Key with another body; 409 "
        "quota_exceeded past TASKAPI_MAX_TASKS_PER_USER tasks (default 100,000)."
    ),
)
def create_task(body: TaskWrite) -> Reply:
    """Create a task; ``Idempotency-Key`` makes retries safe."""
    inbox = folded_data()
    created = service.create_task(
        db_session(),
        user_id=principal().user_id,
        fields=written_fields(body),
        now=utcnow(),
        render=task_json,
        max_tasks=settings().max_tasks_per_user,
        idempotency_key=idempotency_key(),
        inbox=None if inbox is NOT_FOLDED else inbox,
    )
    extra = {"Idempotent-Replayed": "true"} if created.replayed else {}
    # Absolute, like Link: both are built from the request's checked host and scheme.
    location = url_for("tasks.get_task", task_id=created.body["id"], _external=True)
    return _task_reply(created.body, 201, Location=location, **extra)


def _filters(query: TaskListQuery, list_id: uuid.UUID | None = None) -> listing.TaskFilters:
    """What a listing's query restricts it to."""
    return listing.TaskFilters(
        completed=query.completed,
        priority=query.priority,
        tag=query.tag,
        q=query.q,
        due_before=query.due_before,
        due_after=query.due_after,
        list_id=list_id or query.list_id,
        parent_id=query.parent_id,
    )


def _page_and_caller(
    db: DbSession, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime, _args: dict[str, Any]
) -> tuple[SessionCheck, Any]:
    """``GET /tasks``'s folded read: the session check and the page, in one statement.

    Only a listing with nothing to look up first (no list_id or parent_id) is folded, and
    only a valid one: a query or cursor that would be refused is read the usual way, so the
    refusal comes from the view, after the guard and the limiter, as the contract ranks it.
    """
    try:
        query = parse_query(TaskListQuery)
        assert isinstance(query, TaskListQuery)
        filters = _filters(query)
        if filters.list_id is not None or filters.parent_id is not None:
            return CALLER_CHECKS.session(session_id, user_id), None
        return listing.list_tasks_checking_session(
            db, session_id=session_id, user_id=user_id, now=now, filters=filters,
            sort=query.sort or listing.default_sort(filters), limit=query.limit,
            cursor=query.cursor, key=token_key(),
        )  # fmt: skip
    except (ApiError, DomainError):
        return CALLER_CHECKS.session(session_id, user_id), None


@bp.get("")
@operation(
    "List tasks",
    tags=TAGS,
    query=TaskListQuery,
    ok=(200, TaskPage),
    response_headers={
        "Link": (
            'When more tasks follow: <absolute URL of the next page>; rel="next" (the same '
            "query with the next cursor)"
        )
    },
    folded_read=_page_and_caller,
    description=(
        "Keyset pagination: every page costs the same, and a task created or deleted between "
        "pages neither repeats nor skips another. next_cursor is null exactly when no task "
        "follows."
    ),
)
def list_tasks(query: TaskListQuery) -> Reply:
    """One page of the user's tasks, keyset-paginated, with a ``Link`` to the next."""
    page = folded_data()
    if isinstance(page, listing.TaskPageResult):  # read by the session check, same query
        return page_reply(page.items, page.next_cursor)
    return task_page(query)


def task_page(query: TaskListQuery, list_id: uuid.UUID | None = None) -> Reply:
    """A page of tasks for ``GET /tasks`` and ``GET /lists/<id>/tasks``."""
    filters = _filters(query, list_id)
    page = listing.list_tasks(
        db_session(),
        user_id=principal().user_id,
        filters=filters,
        sort=query.sort or listing.default_sort(filters),
        limit=query.limit,
        cursor=query.cursor,
        key=token_key(),
    )
    return page_reply(page.items, page.next_cursor)


@bp.delete("")
@operation(
    "Delete every completed task",
    tags=TAGS,
    verified_email=True,
    query=ClearCompletedQuery,
    ok=(200, DeletedCount),
    description="Deleted in batches of a few hundred per transaction; each leaves a tombstone.",
)
def clear_completed(query: ClearCompletedQuery) -> DeletedCount:
    """Clear the user's completed tasks (``completed=true`` is required)."""
    deleted = service.clear_completed(db_session(), user_id=principal().user_id, now=utcnow())
    return DeletedCount(deleted=deleted)


@bp.get("/changes")
@operation(
    "Changes since a sync token",
    tags=TAGS,
    scopes=("tasks:read", "lists:read"),  # the feed carries both
    query=ChangesQuery,
    ok=(200, ChangesPage),
    errors=(410,),
    description=(
        "Delta sync: the user's task and list changes in the order they happened, each at "
        "most once per page with its latest state ({id, type: task, deleted: false, task} or "
        "{id, type: list, deleted: false, list}) or its deletion ({id, type, deleted: true}). "
        "Without since, it starts from the beginning, so applying every page in turn to an "
        "empty store yields exactly the user's lists and tasks (with their lists, parents, "
        "positions and recurrence). Deleting a list reports each of its tasks' deletions "
        "before the list's. "
        "Keep next and send it as since: with has_more true, at once for the next page; "
        "otherwise later, for what changed since. Deletions are remembered for "
        "TASKAPI_TOMBSTONE_DAYS (default 30 days); a token whose view is older than that "
        "may have missed some, so it is 410 sync_token_expired: drop the local copy and "
        "sync again without since. A token that is not this server's for this user is 400 "
        "validation_error."
    ),
)
def list_changes(query: ChangesQuery) -> dict[str, Any]:
    """Delta sync: every change after ``since``, oldest first."""
    page = sync.changes_since(
        db_session(),
        user_id=principal().user_id,
        token=query.since,
        limit=query.limit,
        now=utcnow(),
        key=token_key(),
        retention=timedelta(days=settings().tombstone_days),
    )
    items = [
        {"id": str(change.id), "type": change.kind, "deleted": change.row is None,
         change.kind: change.row}
        for change in page.changes
    ]  # fmt: skip
    return {"changes": items, "next": page.next_token, "has_more": page.has_more}


def _task_and_caller(
    db: DbSession, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime, args: dict[str, Any]
) -> tuple[SessionCheck, Any]:
    """``GET /tasks/<id>``'s folded read: the session check and the task row together."""
    task_id = id_or_none(args["task_id"])
    return service.get_task_checking_session(
        db, session_id=session_id, user_id=user_id, task_id=task_id, now=now
    )


@bp.get("/<task_id:task_id>")
@operation(
    "Get a task",
    tags=TAGS,
    ok=(200, TaskPublic),
    errors=(404,),
    headers={"If-None-Match": "ETags the client holds; 304 when the task's is among them"},
    response_headers=ETAG_DOC,
    folded_read=_task_and_caller,
)
def get_task(task_id: str) -> Reply | Response:
    """One task; 304 when ``If-None-Match`` names its current ETag (weak comparison)."""
    task = folded_data()
    if task is NOT_FOLDED:  # a personal token: its check read no task
        task = service.get_task_row(db_session(), user_id=principal().user_id,
                                    task_id=parse_id(task_id))  # fmt: skip
    elif task is None:  # a malformed id, a missing task and another's: one 404
        raise NotFound()
    version = task[ROW_COLUMNS.index("version")]
    if request.if_none_match.contains_weak(str(version)):
        return Response(status=304, headers={"ETag": etag(version)})
    return Reply(task, None, {"ETag": etag(version)})


@bp.put("/<task_id:task_id>")
@operation(
    "Replace a task",
    tags=TAGS,
    verified_email=True,
    body=TaskWrite,
    ok=(200, TaskPublic),
    errors={404: (), 409: ("quota_exceeded",)},  # completing a recurring task at the quota
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
)
def replace_task(task_id: str, body: TaskWrite) -> Reply:
    """Full replacement: omitted optional fields return to their defaults (its place in
    its list stays unless list_id or parent_id is sent)."""
    return _update(task_id, written_fields(body))


@bp.patch("/<task_id:task_id>")
@operation(
    "Change some fields of a task",
    tags=TAGS,
    verified_email=True,
    body=TaskPatch,
    ok=(200, TaskPublic),
    errors={404: (), 409: ("quota_exceeded",)},  # completing a recurring task at the quota
    media_types=PATCH_TYPES,
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
)
def patch_task(task_id: str, body: TaskPatch) -> Reply:
    """Partial update: only the fields sent change; ``null`` clears ``due_at``."""
    changes = body.changes()
    if not changes:
        raise validation_error([{"field": "body", "message": "send at least one field to change"}])
    return _update(task_id, changes)


def _update(task_id: str, fields: dict[str, Any]) -> Reply:
    """Apply a PUT or PATCH and answer with the new state."""
    precondition = if_match()
    task = service.update_task(
        db_session(),
        user_id=principal().user_id,
        task_id=parse_id(task_id),
        fields=fields,
        now=utcnow(),
        precondition=precondition,
        max_tasks=settings().max_tasks_per_user,
    )
    return _task_reply(task)


@bp.delete("/<task_id:task_id>")
@operation(
    "Delete a task",
    tags=TAGS,
    verified_email=True,
    ok=(204, None),
    errors=(404,),
    headers=IF_MATCH_DOC,
)
def delete_task(task_id: str) -> None:
    """Delete one task."""
    precondition = if_match()
    service.delete_task(
        db_session(),
        user_id=principal().user_id,
        task_id=parse_id(task_id),
        now=utcnow(),
        precondition=precondition,
    )


@bp.post("/<task_id:task_id>/move")
@operation(
    "Move a task: after another, into another list, or under a parent",
    tags=TAGS,
    verified_email=True,
    body=TaskMoveBody,
    ok=(200, TaskPublic),
    errors=(404,),
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
    description=(
        "Puts the task right after `after` (null: first) among the tasks of its list and "
        "parent, like Google Tasks' move; with list_id it moves into that list (top level, its "
        "subtasks with it), with parent_id under that top-level task (null: to the top level). "
        "`after` must then be a task of the same list and parent (400 otherwise). One row is "
        "written (positions are fractional keys); another user's task, list or parent is 404."
    ),
)
def move_task(task_id: str, body: TaskMoveBody) -> Reply:
    """Place the task after another one, possibly in another list or under a parent."""
    sent = body.model_fields_set
    task = service.move_task(
        db_session(),
        user_id=principal().user_id,
        task_id=parse_id(task_id),
        list_id=body.list_id if "list_id" in sent else service.UNSET,
        parent_id=body.parent_id if "parent_id" in sent else service.UNSET,
        after_id=body.after,
        now=utcnow(),
        precondition=if_match(),
    )
    return _task_reply(task)
