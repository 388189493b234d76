"""Field types and models shared by every resource's schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

# ASCII digits only, and \Z: "$" would also accept a trailing newline.
RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}", re.ASCII)


def _no_nul(value: str) -> str:
    """PostgreSQL cannot store NUL, and no client means to send it."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _rfc3339_string(value: object) -> object:
    """Only RFC 3339 strings with an offset are timestamps; numbers and dates are not."""
    match = RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            "must be an RFC 3339 timestamp with an offset, such as 2026-11-22T12:00:00Z"
        )
    # RFC 3339 allows any number of fractional digits; microseconds are kept.
    seconds, fraction, offset = match.groups()
    return f"{seconds}.{(fraction or '0')[:6]}{offset}"


def _aware(value: datetime) -> datetime:
    """Naive timestamps are ambiguous, so an offset is required; store as UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "must be an RFC 3339 timestamp with an offset, such as 2026-11-22T12:00:00Z"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError("is out of the supported range once converted to UTC") from None


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with six fractional digits and ``Z``."""
    # isoformat, unlike strftime("%Y"), keeps four year digits for years before 1000.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _plain_digits(value: object) -> object:
    """A query number is plain ASCII digits: not "+5", " 5", "1_0" or other scripts' digits."""
    if isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
        raise ValueError("must be a whole number written with the digits 0-9")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
QueryInt = Annotated[int, BeforeValidator(_plain_digits)]
InputTimestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339_string),
    AfterValidator(_aware),
    # Lax inside: the before-validator has already insisted on an RFC 3339 string.
    Field(strict=False, json_schema_extra={"format": "date-time"}),
]
Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "date-time", "example": "2026-11-22T12:00:00.123456Z"}),
]


class RequestModel(BaseModel):
    """A request body: strict JSON types and no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class QueryModel(BaseModel):
    """Query parameters arrive as strings: lax conversion, no unknown parameters."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """One problem with one field."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Human-readable message")
    code: str = Field(description="Machine-readable code, such as validation_error")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Present for validation errors"
    )


def ignored(description: str) -> Any:
    """A server-set field a client may send back; its value is ignored."""
    return Field(default=None, description=f"{description} Server-set; ignored on input.")
