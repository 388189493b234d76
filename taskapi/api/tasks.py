"""Task endpoints under ``/api/v1/tasks``: thin views over ``services.tasks``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Response, request, url_for
from werkzeug.routing import BaseConverter

from taskapi.api.deps import db_session, settings
from taskapi.api.operation import PATCH_TYPES, json_response, operation
from taskapi.api.parsing import parse_id
from taskapi.db import utcnow
from taskapi.errors import validation_error
from taskapi.schemas.tasks import (
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
)
from taskapi.security import current_user_id
from taskapi.services import listing, sync
from taskapi.services import tasks as service

if TYPE_CHECKING:  # views handle tasks only through services; the type is for signatures
    from taskapi.models import Task

bp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks")


class TaskIdConverter(BaseConverter):
    """Any path segment but ``changes``, which is the delta-sync route."""

    regex = r"(?!changes$)[^/]+"


TAGS = ("tasks",)
STRONG_ETAG = re.compile(r'"([0-9]{1,18})"', re.ASCII)
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
WRITE_ERRORS = (400, 401, 404, 412, 413, 415, 428, 429)


def task_json(task: Task) -> dict[str, Any]:
    """The public JSON of a task."""
    return TaskPublic.model_validate(task).model_dump(mode="json")


def etag(version: int) -> str:
    """The strong ETag of a task version."""
    return f'"{version}"'


def _task_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """A task answer with its ETag."""
    return json_response(body, status, ETag=etag(body["version"]), **headers)


def _if_match() -> service.Precondition:
    """What ``If-Match`` asks for: nothing, any version (``*``), or some versions."""
    header = request.headers.get("If-Match")
    if header is None:
        return service.Precondition(required=settings().require_if_match)
    if header.strip() == "*":
        return service.Precondition(versions=None)
    # Weak tags (W/"3") never match: If-Match uses strong comparison.
    versions = {
        int(m[1]) for m in (STRONG_ETAG.fullmatch(t.strip()) for t in header.split(",")) if m
    }
    return service.Precondition(versions=frozenset(versions))


def _sync_key() -> bytes:
    """The key that signs cursors and sync tokens."""
    return settings().secret_key.encode()


@bp.post("")
@operation(
    "Create a task",
    tags=TAGS,
    body=TaskWrite,
    ok=(201, TaskPublic),
    errors=(400, 401, 409, 413, 415, 429),
    headers={"Idempotency-Key": "1 to 255 printable characters; a repeat replays the first answer"},
    response_headers=("Location", "ETag", "Idempotent-Replayed"),
)
def create_task(body: TaskWrite) -> Response:
    """Create a task; ``Idempotency-Key`` makes retries safe."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise validation_error(
            [{"field": "Idempotency-Key", "message": "must be 1 to 255 printable characters"}]
        )
    created = service.create_task(
        db_session(),
        user_id=current_user_id(),
        fields=body.model_dump(exclude=set(SERVER_SET_FIELDS)),
        now=utcnow(),
        render=task_json,
        idempotency_key=key,
    )
    extra = {"Idempotent_Replayed": "true"} if created.replayed else {}
    location = url_for("tasks.get_task", task_id=created.body["id"])
    return _task_response(created.body, 201, Location=location, **extra)


@bp.get("")
@operation(
    "List tasks",
    tags=TAGS,
    query=TaskListQuery,
    ok=(200, TaskPage),
    errors=(400, 401, 429),
    response_headers=("Link",),
)
def list_tasks(query: TaskListQuery) -> Response:
    """One page of the user's tasks, keyset-paginated, with a ``Link`` to the next."""
    filters = listing.TaskFilters(
        completed=None if query.completed is None else query.completed == "true",
        priority=query.priority,
        tag=query.tag,
        q=query.q,
        due_before=query.due_before,
        due_after=query.due_after,
    )
    page = listing.list_tasks(
        db_session(),
        user_id=current_user_id(),
        filters=filters,
        sort=query.sort,
        limit=query.limit,
        cursor=query.cursor,
        key=_sync_key(),
    )
    body = {"items": [task_json(t) for t in page.items], "next_cursor": page.next_cursor}
    response = json_response(body)
    if page.next_cursor is not None:
        params = {k: v for k, v in request.args.items() if k != "cursor"}
        params["cursor"] = page.next_cursor
        response.headers["Link"] = f'<{request.base_url}?{urlencode(params)}>; rel="next"'
    return response


@bp.delete("")
@operation(
    "Delete every completed task",
    tags=TAGS,
    query=ClearCompletedQuery,
    ok=(200, DeletedCount),
    errors=(400, 401, 429),
)
def clear_completed(query: ClearCompletedQuery) -> Response:
    """Clear the user's completed tasks (``completed=true`` is required)."""
    deleted = service.clear_completed(db_session(), user_id=current_user_id(), now=utcnow())
    return json_response(DeletedCount(deleted=deleted))


@bp.get("/changes")
@operation(
    "Changes since a sync token",
    tags=TAGS,
    query=ChangesQuery,
    ok=(200, ChangesPage),
    errors=(400, 401, 410, 429),
)
def changes(query: ChangesQuery) -> Response:
    """Delta sync: every change after ``since``, oldest first."""
    page = sync.changes_since(
        db_session(),
        user_id=current_user_id(),
        token=query.since,
        limit=query.limit,
        now=utcnow(),
        key=_sync_key(),
        retention=timedelta(days=settings().tombstone_days),
    )
    items: list[dict[str, Any]] = []
    for change in page.changes:
        item: dict[str, Any] = {"id": str(change.id), "deleted": change.task is None}
        if change.task is not None:
            item["task"] = task_json(change.task)
        items.append(item)
    return json_response({"changes": items, "next": page.next_token, "has_more": page.has_more})


@bp.get("/<task_id:task_id>")
@operation(
    "Get a task",
    tags=TAGS,
    ok=(200, TaskPublic),
    errors=(401, 404, 429),
    headers={"If-None-Match": "An ETag; 304 when unchanged"},
    response_headers=("ETag",),
)
def get_task(task_id: str) -> Response:
    """One task; 304 when ``If-None-Match`` names its current ETag."""
    task = service.get_task(db_session(), user_id=current_user_id(), task_id=parse_id(task_id))
    current = etag(task.version)
    if_none_match = request.headers.get("If-None-Match", "")
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    if current in tags or "*" in tags:
        return Response(status=304, headers={"ETag": current})
    return _task_response(task_json(task))


@bp.put("/<task_id:task_id>")
@operation(
    "Replace a task",
    tags=TAGS,
    body=TaskWrite,
    ok=(200, TaskPublic),
    errors=WRITE_ERRORS,
    headers={"If-Match": "Optional ETag; 412 when it does not match"},
    response_headers=("ETag",),
)
def replace_task(task_id: str, body: TaskWrite) -> Response:
    """Full replacement: omitted optional fields return to their defaults."""
    return _update(task_id, body.model_dump(exclude=set(SERVER_SET_FIELDS)))


@bp.patch("/<task_id:task_id>")
@operation(
    "Change some fields of a task",
    tags=TAGS,
    body=TaskPatch,
    ok=(200, TaskPublic),
    errors=WRITE_ERRORS,
    media_types=PATCH_TYPES,
    headers={"If-Match": "Optional ETag; 412 when it does not match"},
    response_headers=("ETag",),
)
def patch_task(task_id: str, body: TaskPatch) -> Response:
    """Partial update: only the fields sent change; ``null`` clears ``due_at``."""
    changes = body.changes()
    if not changes:
        raise validation_error([{"field": "body", "message": "send at least one field to change"}])
    return _update(task_id, changes)


def _update(task_id: str, fields: dict[str, Any]) -> Response:
    """Apply a PUT or PATCH and answer with the new state."""
    precondition = _if_match()
    task = service.update_task(
        db_session(),
        user_id=current_user_id(),
        task_id=parse_id(task_id),
        fields=fields,
        now=utcnow(),
        precondition=precondition,
    )
    return _task_response(task_json(task))


@bp.delete("/<task_id:task_id>")
@operation(
    "Delete a task",
    tags=TAGS,
    ok=(204, None),
    errors=(401, 404, 412, 428, 429),
    headers={"If-Match": "Optional ETag; 412 when it does not match"},
)
def delete_task(task_id: str) -> Response:
    """Delete one task."""
    precondition = _if_match()
    service.delete_task(
        db_session(),
        user_id=current_user_id(),
        task_id=parse_id(task_id),
        now=utcnow(),
        precondition=precondition,
    )
    return Response(status=204)
