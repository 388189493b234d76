"""Request and response models of the personal token endpoints."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field

from taskapi.schemas.common import PublicModel, RequestModel, Text, Timestamp

Scope = Literal["tasks:read", "tasks:write", "lists:read", "lists:write"]


def _distinct(scopes: list[str]) -> list[str]:
    """Each scope once, sorted."""
    return sorted(set(scopes))


def _named(value: str) -> str:
    """Names are trimmed, then must keep 1 to 100 characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 100:
        raise ValueError("must be at most 100 characters after trimming")
    return value


class TokenCreateBody(RequestModel):
    """``POST /auth/tokens``."""

    name: Annotated[
        Text,
        AfterValidator(_named),
        Field(json_schema_extra={"minLength": 1, "maxLength": 100, "pattern": r"\S"}),
    ] = Field(description="What the token is for, shown in the list (e.g. backup script)")
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=4), AfterValidator(_distinct)] = (
        Field(description="What it may do: tasks:read, tasks:write, lists:read, lists:write")
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=365, description="1 to 365; omitted or null: never expires"
    )


class TokenPublic(PublicModel):
    """A personal token as its owner sees it later: never the secret."""

    id: UUID
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="The secret's first characters, to recognise it")
    created_at: Timestamp
    last_used_at: Timestamp | None = Field(description="Updated at most once a minute")
    expires_at: Timestamp | None


class TokenCreated(TokenPublic):
    """The answer of a create: the only time the secret is shown."""

    token: str = Field(
        description="The secret (tapi_...): send it as Authorization: Bearer. Shown once; "
        "only its hash is kept, so a lost token cannot be shown again: revoke it and make "
        "another."
    )


class TokenList(PublicModel):
    """The user's personal tokens (at most TASKAPI_MAX_TOKENS_PER_USER)."""

    items: list[TokenPublic]
