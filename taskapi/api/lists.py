"""List endpoints under ``/api/v1/lists``: thin views over ``services.lists``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request, url_for

from taskapi.api.deps import db_session, settings, token_key
from taskapi.api.operation import PATCH_TYPES, Reply, operation, page_reply
from taskapi.api.parsing import parse_id
from taskapi.api.tasks import (
    ETAG_DOC,
    IDEMPOTENCY_DOC,
    IF_MATCH_DOC,
    etag,
    idempotency_key,
    if_match,
    task_page,
)
from taskapi.db import utcnow
from taskapi.errors import validation_error
from taskapi.schemas.lists import (
    SERVER_SET_LIST_FIELDS,
    ListPage,
    ListPatch,
    ListPublic,
    ListQuery,
    ListWrite,
    MoveBody,
)
from taskapi.schemas.tasks import TaskListQuery, TaskPage
from taskapi.security import principal
from taskapi.services import lists as service

if TYPE_CHECKING:
    from taskapi.models import TaskList

bp = Blueprint("lists", __name__, url_prefix="/api/v1/lists")
TAGS = ("lists",)


def list_json(row: TaskList) -> dict[str, Any]:
    """The public JSON of a list, as the declared model serializes it (kept for replays)."""
    return ListPublic.model_validate(row).model_dump(mode="json")


def _list_reply(row: TaskList | dict[str, Any], status: int | None = None, **headers: str) -> Reply:
    """A list answer with its ETag."""
    version = row["version"] if isinstance(row, dict) else row.version
    return Reply(row, status, {"ETag": etag(version), **headers})


@bp.post("")
@operation(
    "Create a list",
    tags=TAGS,
    verified_email=True,
    body=ListWrite,
    ok=(201, ListPublic),
    errors={409: ("idempotency_conflict", "quota_exceeded")},
    headers={"Idempotency-Key": IDEMPOTENCY_DOC.replace("/api/v1/tasks", "/api/v1/lists")},
    response_headers={
        "Location": "The list's absolute URL",
        **ETAG_DOC,
        "Idempotent-Replayed": "true when this is the replayed answer of an earlier request",
    },
    description=(
        "A new list goes last in the user's order. 409 quota_exceeded past "
        "TASKAPI_MAX_LISTS_PER_USER lists (default 1,000)."
    ),
)
def create_list(body: ListWrite) -> Reply:
    """Create a list; ``Idempotency-Key`` makes retries safe."""
    created = service.create_list(
        db_session(),
        user_id=principal().user_id,
        fields=body.model_dump(exclude=set(SERVER_SET_LIST_FIELDS)),
        now=utcnow(),
        render=list_json,
        max_lists=settings().max_lists_per_user,
        idempotency_key=idempotency_key(),
    )
    extra = {"Idempotent-Replayed": "true"} if created.replayed else {}
    location = url_for("lists.get_list", list_id=created.body["id"], _external=True)
    return _list_reply(created.body, 201, Location=location, **extra)


@bp.get("")
@operation(
    "List the lists",
    tags=TAGS,
    query=ListQuery,
    ok=(200, ListPage),
    response_headers={
        "Link": 'When more lists follow: <absolute URL of the next page>; rel="next"'
    },
    description="In the user's order (position), keyset-paginated; the inbox is one of them.",
)
def list_lists(query: ListQuery) -> Reply:
    """One page of the user's lists."""
    items, next_cursor = service.list_lists(
        db_session(),
        user_id=principal().user_id,
        limit=query.limit,
        cursor=query.cursor,
        key=token_key(),
    )
    return page_reply(items, next_cursor)


@bp.get("/<list_id>")
@operation(
    "Get a list",
    tags=TAGS,
    ok=(200, ListPublic),
    errors=(404,),
    headers={"If-None-Match": "ETags the client holds; 304 when the list's is among them"},
    response_headers=ETAG_DOC,
)
def get_list(list_id: str) -> Reply | Response:
    """One list; 304 when ``If-None-Match`` names its current ETag."""
    row = service.get_list(db_session(), user_id=principal().user_id, list_id=parse_id(list_id))
    if request.if_none_match.contains_weak(str(row.version)):
        return Response(status=304, headers={"ETag": etag(row.version)})
    return _list_reply(row)


@bp.put("/<list_id>")
@operation(
    "Replace a list",
    tags=TAGS,
    verified_email=True,
    body=ListWrite,
    ok=(200, ListPublic),
    errors=(404,),
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
)
def replace_list(list_id: str, body: ListWrite) -> Reply:
    """Full replacement of title and color."""
    return _update(list_id, body.model_dump(exclude=set(SERVER_SET_LIST_FIELDS)))


@bp.patch("/<list_id>")
@operation(
    "Change some fields of a list",
    tags=TAGS,
    verified_email=True,
    body=ListPatch,
    ok=(200, ListPublic),
    errors=(404,),
    media_types=PATCH_TYPES,
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
)
def patch_list(list_id: str, body: ListPatch) -> Reply:
    """Partial update: only the fields sent change; ``color: null`` clears it."""
    changes = body.changes()
    if not changes:
        raise validation_error([{"field": "body", "message": "send at least one field to change"}])
    return _update(list_id, changes)


def _update(list_id: str, fields: dict[str, Any]) -> Reply:
    """Apply a PUT or PATCH and answer with the new state."""
    row = service.update_list(
        db_session(),
        user_id=principal().user_id,
        list_id=parse_id(list_id),
        fields=fields,
        now=utcnow(),
        precondition=if_match(),
    )
    return _list_reply(row)


@bp.delete("/<list_id>")
@operation(
    "Delete a list and its tasks",
    tags=TAGS,
    scopes=("lists:write", "tasks:write"),  # its tasks go with it
    verified_email=True,
    ok=(204, None),
    errors={404: (), 409: ("inbox_not_deletable",)},
    headers=IF_MATCH_DOC,
    description=(
        "Its tasks are deleted with it (a tombstone each, for delta sync), a few hundred per "
        "transaction. The inbox cannot be deleted: 409 inbox_not_deletable."
    ),
)
def delete_list(list_id: str) -> None:
    """Delete one list with its tasks."""
    service.delete_list(
        db_session(),
        user_id=principal().user_id,
        list_id=parse_id(list_id),
        now=utcnow(),
        precondition=if_match(),
    )


@bp.post("/<list_id>/move")
@operation(
    "Move a list after another",
    tags=TAGS,
    verified_email=True,
    body=MoveBody,
    ok=(200, ListPublic),
    errors=(404,),
    headers=IF_MATCH_DOC,
    response_headers=ETAG_DOC,
    description="Puts the list right after `after` (null: first); one row is written.",
)
def move_list(list_id: str, body: MoveBody) -> Reply:
    """Reorder the user's lists."""
    row = service.move_list(
        db_session(),
        user_id=principal().user_id,
        list_id=parse_id(list_id),
        after_id=body.after,
        now=utcnow(),
        precondition=if_match(),
    )
    return _list_reply(row)


@bp.get("/<list_id>/tasks")
@operation(
    "List a list's tasks",
    tags=TAGS,
    scopes=("lists:read", "tasks:read"),
    query=TaskListQuery,
    ok=(200, TaskPage),
    errors=(404,),
    response_headers={
        "Link": 'When more tasks follow: <absolute URL of the next page>; rel="next"'
    },
    description=(
        "The same query parameters and paging as GET /api/v1/tasks, in this list (list_id "
        "in the query, if sent, must be this one); sorted by position unless sort is sent."
    ),
)
def list_tasks_of(list_id: str, query: TaskListQuery) -> Reply:
    """One page of the list's tasks."""
    wanted = parse_id(list_id)
    if query.list_id is not None and query.list_id != wanted:
        raise validation_error([{"field": "list_id", "message": "must be the list of the path"}])
    return task_page(query, list_id=wanted)
