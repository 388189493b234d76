"""Request, query and response models of the list endpoints."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, ConfigDict, Field

from taskapi.schemas.common import (
    IdRef,
    PublicModel,
    QueryInt,
    QueryModel,
    RequestModel,
    Text,
    Timestamp,
    document_request,
    ignored,
)

LIST_TITLE_MAX = 100
COLOR = r"^#[0-9a-fA-F]{6}$"


def _trimmed(value: str) -> str:
    """List titles are trimmed, then must keep 1 to 100 characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > LIST_TITLE_MAX:
        raise ValueError(f"must be at most {LIST_TITLE_MAX} characters after trimming")
    return value


ListTitle = Annotated[
    Text,
    AfterValidator(_trimmed),
    Field(json_schema_extra={"minLength": 1, "maxLength": LIST_TITLE_MAX, "pattern": r"\S"}),
]
Color = Annotated[str, Field(pattern=COLOR, description="#rrggbb"), AfterValidator(str.lower)]


class _ServerSetListFields(RequestModel):
    """Fields a client may send back from what it read; their values are ignored."""

    id: Any = ignored("The list's id.", {"type": "string", "format": "uuid"})
    position: Any = ignored("The list's place (move it with POST /lists/{id}/move).",
                            {"type": "string"})  # fmt: skip
    inbox: Any = ignored("Whether this is the user's inbox.", {"type": "boolean"})
    created_at: Any = ignored("Creation time.", {"type": "string", "format": "date-time"})
    updated_at: Any = ignored("Last change.", {"type": "string", "format": "date-time"})
    version: Any = ignored("The list's version.", {"type": "integer"})


SERVER_SET_LIST_FIELDS = frozenset(_ServerSetListFields.model_fields)


class ListWrite(_ServerSetListFields):
    """``POST /lists`` and ``PUT /lists/<id>``."""

    model_config = ConfigDict(json_schema_extra=document_request)

    title: ListTitle
    color: Color | None = Field(default=None, description="#rrggbb, or null for none")


def _patch_schema(schema: dict[str, Any]) -> None:
    """PATCH fields are optional; send at least one."""
    document_request(schema)
    schema["minProperties"] = 1


class ListPatch(_ServerSetListFields):
    """``PATCH /lists/<id>``: only the fields sent change; ``color: null`` clears it."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    title: ListTitle = None  # type: ignore[assignment]
    color: Color | None = Field(default=None, description="#rrggbb; null clears it")

    def changes(self) -> dict[str, Any]:
        """The writable fields the client actually sent."""
        return {
            name: getattr(self, name) for name in self.model_fields_set - SERVER_SET_LIST_FIELDS
        }


class ListPublic(PublicModel):
    """A list as its owner sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    title: str
    color: str | None
    position: str = Field(description="The lists' order: GET /lists sorts by it")
    inbox: bool = Field(description="The user's default list: it cannot be deleted")
    created_at: Timestamp
    updated_at: Timestamp
    version: int


class ListPage(PublicModel):
    """One page of lists, in the user's order."""

    items: list[ListPublic]
    next_cursor: str | None = Field(description="Opaque; null exactly when no list follows")


class ListQuery(QueryModel):
    """Query of ``GET /lists``."""

    limit: QueryInt = Field(default=50, ge=1, le=100, description="Lists per page")
    cursor: str | None = Field(
        default=None, min_length=1, max_length=2048,
        description="The previous page's next_cursor (opaque)",
    )  # fmt: skip


class MoveBody(RequestModel):
    """``POST /lists/<id>/move`` and ``POST /tasks/<id>/move``: right after ``after``."""

    after: IdRef | None = Field(
        description="Place it right after this one (of the same list and parent, for a task); "
        "null: first"
    )


class TaskMoveBody(MoveBody):
    """``POST /tasks/<id>/move``: optionally into another list or under another parent."""

    model_config = ConfigDict(json_schema_extra=document_request)

    list_id: IdRef = Field(  # type: ignore[assignment]
        default=None, description="Move it into this list (top level)"
    )
    parent_id: IdRef | None = Field(
        default=None,
        description="Make it a subtask of this task (null: top level); omitted: unchanged, "
        "unless list_id is sent",
    )
