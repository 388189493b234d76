"""Field types and models shared by every resource's schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

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
    if value.tzinfo is UTC:  # what the database gives back: the hot path's case
        return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" becomes "Z"
    # isoformat, unlike strftime("%Y"), keeps four year digits for years before 1000.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _plain_digits(value: object) -> object:
    """A query number is plain ASCII digits: not "+5", " 5", "1_0" or other scripts' digits."""
    if isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
        raise ValueError("must be a whole number written with the digits 0-9")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
# An id in a JSON body: JSON has no UUID type, so the strict models take it from a string.
IdRef = Annotated[UUID, Field(strict=False, json_schema_extra={"format": "uuid"})]
# Bounds go on ``str`` itself, before the NUL check: after a validator pydantic checks them as a
# generic sequence and says "items" where a person expects "characters".
NoNul = AfterValidator(_no_nul)
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


def _plain_boolean(value: object) -> object:
    """A query boolean is exactly ``true`` or ``false``, as generated clients write it."""
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


# A boolean query parameter: the text "true" or "false" (nothing else), documented as a boolean
# so that generated clients take a boolean and write it the way the server reads it.
QueryBool = Annotated[bool, BeforeValidator(_plain_boolean), WithJsonSchema({"type": "boolean"})]


def _true(value: object) -> object:
    """A query parameter that must say ``true``."""
    if value != "true":
        raise ValueError("must be true")
    return True


# A boolean query parameter that must be true (``DELETE /tasks?completed=true``).
QueryTrue = Annotated[
    Literal[True],
    BeforeValidator(_true),
    WithJsonSchema({"type": "boolean", "enum": [True]}),
]


def document_request(schema: dict[str, Any]) -> None:
    """A request body as generators should read it: optional means optional.

    JSON Schema's ``default`` is only an annotation, but generators (openapi-typescript among
    them) turn a property with a default into a required one, so clients would have to send
    ``"name": ""`` or ``"due_at": null`` (which wipes a date). The default moves into the
    description, in words; the server still applies it to an omitted field.
    """
    for prop in schema.get("properties", {}).values():
        if "default" not in prop:
            continue
        default = prop.pop("default")
        if default is not None and not prop.get("readOnly"):
            shown = "an empty list" if default == [] else json.dumps(default)
            note = f"Default when omitted: {shown}."
            prop["description"] = f"{prop['description']} {note}" if "description" in prop else note


class RequestModel(BaseModel):
    """A request body: strict JSON types and no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=document_request)


class QueryModel(BaseModel):
    """Query parameters arrive as strings: lax conversion, no unknown parameters."""

    model_config = ConfigDict(extra="forbid")


class PublicModel(BaseModel):
    """A response body: every field that is always sent is required in its schema (a field
    with a default too), so generated types need no checks for what is always there."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


# Hand-written serializers of the hot path's answers (a task, a page of tasks), used instead
# of validating the body into its model and dumping it: the same JSON for a fraction of the
# cost. Each is held equal to its model's own output by tests/test_fast_json.py.
FAST_JSON: dict[type[BaseModel], Callable[[Any], bytes]] = {}


def timestamp_or_none(value: datetime | None) -> str | None:
    """``format_timestamp``, passing None through."""
    return None if value is None else format_timestamp(value)


def _never_null(schema: dict[str, Any]) -> None:
    """The schema of a field left out when it is None: its value, never null."""
    schema.pop("default", None)
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


def omitted_when_none(description: str) -> Any:
    """A response field that is left out of the JSON when it has no value (never ``null``)."""
    return Field(
        default=None,
        exclude_if=lambda value: value is None,
        description=description,
        json_schema_extra=_never_null,
    )


# Every ``code`` an error body can carry. The contract's table (API.md, "Errors"), and the
# few this server adds where the contract is silent: 409 quota_exceeded (a per-user bound),
# the refusals of slow or oversized requests (408, 414, 431), account recovery's
# invalid_token (400), email_unverified (403) and account_disabled (401), lists'
# inbox_not_deletable (409), and the HTTP
# server's refusals of malformed requests no browser sends (forbidden, expectation_failed,
# not_implemented: 403, 417, 501). Clients may switch on these.
ErrorCode = Literal[
    "invalid_json", "validation_error", "unauthorized", "token_expired", "token_revoked",
    "invalid_credentials", "csrf_failed", "not_found", "method_not_allowed", "email_taken",
    "idempotency_conflict", "sync_token_expired", "precondition_failed", "payload_too_large",
    "unsupported_media_type", "precondition_required", "rate_limited", "internal_error",
    "unavailable", "quota_exceeded", "request_timeout", "uri_too_long", "headers_too_large",
    "invalid_token", "email_unverified", "account_disabled", "inbox_not_deletable",
    "insufficient_scope",
    "forbidden", "expectation_failed", "not_implemented",
]  # fmt: skip


class ErrorDetail(PublicModel):
    """One problem with one field."""

    field: str = Field(description="The field, query parameter or header, such as tags.3")
    message: str


class ErrorBody(PublicModel):
    """The body of every error response."""

    error: str = Field(description="Human-readable message")
    code: ErrorCode = Field(description="Machine-readable code; each response lists its own")
    details: list[ErrorDetail] | None = omitted_when_none("Present for validation errors")


def ignored(description: str, schema: dict[str, Any]) -> Any:
    """A server-set field a client may send back (what it read); its value is ignored.

    Documented ``readOnly`` with the type it has when read, so a client can send back what it
    read and generators know the server sets it; never required, never defaulted.
    """

    def document(prop: dict[str, Any]) -> None:
        prop.clear()
        prop.update(schema, readOnly=True, description=f"{description} Server-set; ignored.")

    return Field(default=None, json_schema_extra=document)
