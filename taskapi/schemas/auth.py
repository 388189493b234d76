"""Request and response models of the account and token endpoints."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, Field

from taskapi.schemas.common import (
    NoNul,
    PublicModel,
    QueryInt,
    QueryModel,
    RequestModel,
    Timestamp,
    omitted_when_none,
)
from taskapi.schemas.passwords import check_password_policy

EMAIL_MAX = 254
EMAIL_SHAPE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")


def _normalise_email(value: str) -> str:
    """Trim and lower-case so that emails compare case-insensitively."""
    value = value.strip().lower()
    if len(value) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    if not EMAIL_SHAPE.match(value):
        raise ValueError("must be an email address such as ana@example.com")
    return value


Email = Annotated[
    str,
    AfterValidator(_normalise_email),
    Field(json_schema_extra={"format": "email", "maxLength": EMAIL_MAX}),
]
# Length bounds are checked on characters; the pre-hash makes every one of them count.
AnyPassword = Annotated[str, Field(min_length=1, max_length=128), NoNul]
NewPassword = Annotated[
    str, Field(min_length=8, max_length=128), NoNul, AfterValidator(check_password_policy)
]
Name = Annotated[str, Field(max_length=100), NoNul]


class RegisterBody(RequestModel):
    """``POST /auth/register``."""

    email: Email
    password: NewPassword
    name: Name = ""


class LoginBody(RequestModel):
    """``POST /auth/login``."""

    email: Email
    password: AnyPassword
    refresh_cookie: bool = Field(
        default=False,
        description=(
            "true: keep the refresh token in an HttpOnly cookie (browser SPAs) and return "
            "csrf_token instead of refresh_token."
        ),
    )


class RefreshBody(RequestModel):
    """``POST /auth/refresh`` in body mode, for clients that cannot set a header."""

    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description=(
            "The refresh token, when it is sent neither as Authorization: Bearer nor as the "
            "cookie (null counts as not sent)"
        ),
    )


class UpdateMeBody(RequestModel):
    """``PATCH /auth/me``."""

    name: Name


class PasswordChangeBody(RequestModel):
    """``POST /auth/password``."""

    current_password: AnyPassword
    new_password: NewPassword


class DeleteMeBody(RequestModel):
    """``DELETE /auth/me``."""

    password: AnyPassword


class UserPublic(PublicModel):
    """A user as clients see it."""

    id: UUID
    email: str
    name: str
    created_at: Timestamp
    email_verified: bool = Field(
        description="The address proved to reach the user (a verification or reset link)"
    )


class TokenPair(PublicModel):
    """Answer of ``/auth/refresh``: a fresh access token and the next refresh token."""

    access_token: str = Field(description="Send it as Authorization: Bearer")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str | None = omitted_when_none(
        "Body mode: the next refresh token (each works once); absent in cookie mode"
    )
    csrf_token: str | None = omitted_when_none(
        "Cookie mode: send it as X-CSRF-TOKEN with the cookie; the same for the whole session"
    )


class LoginAnswer(TokenPair):
    """Answer of ``/auth/login``."""

    user: UserPublic


class SessionPublic(PublicModel):
    """One login session of the current user."""

    id: UUID
    created_at: Timestamp
    last_used_at: Timestamp
    user_agent: str
    current: bool


class SessionListQuery(QueryModel):
    """Query parameters of ``GET /auth/sessions``."""

    limit: QueryInt = Field(default=50, ge=1, le=100, description="Sessions per page")
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The previous page's next_cursor (opaque)",
    )


class SessionPage(PublicModel):
    """One page of the current user's active sessions, newest first."""

    items: list[SessionPublic]
    next_cursor: str | None = Field(description="Opaque; null exactly when no session follows")


class CsrfAnswer(PublicModel):
    """Answer of ``GET /auth/csrf``: the session's CSRF value, for a reloaded page or new tab."""

    csrf_token: str = Field(
        description="Send it as X-CSRF-TOKEN with the refresh cookie; the same for the whole "
        "session (every refresh returns it again)"
    )
