"""One decorator per view: guard, validation, serialization and the OpenAPI description.

Declaring validation, the response model and documentation together keeps the document equal
to what the server enforces and sends: a view returns data (or a ``Reply`` with a status and
headers), and the declared model serializes it, so a field renamed in a view fails loudly
instead of drifting from the document. The order inside the wrapper is the contract's:
401/403, then 415, then 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, request
from pydantic import BaseModel

from taskapi.api.deps import CALLER_CHECKS, FoldedRead, once_more_if_the_connection_died, settings
from taskapi.api.parsing import check_media_type, has_body, parse_body, parse_query
from taskapi.schemas.common import FAST_JSON
from taskapi.security import Guard, authenticate, check_scopes, require_verified_email

F = TypeVar("F", bound=Callable[..., Any])
JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/json", "application/merge-patch+json")
Auth = Guard | None
ErrorCodes = dict[int, tuple[str, ...]]
# The codes each status carries where an operation's shape implies it (API.md, "Errors"):
# 401 from the token guard, 403 from the refresh cookie's CSRF check, and so on.
STATUS_CODES: ErrorCodes = {
    400: ("validation_error",),
    401: ("unauthorized", "token_expired", "token_revoked", "account_disabled"),
    403: ("csrf_failed",),
    404: ("not_found",),
    408: ("request_timeout",),
    410: ("sync_token_expired",),
    412: ("precondition_failed",),
    413: ("payload_too_large",),
    414: ("uri_too_long",),
    415: ("unsupported_media_type",),
    428: ("precondition_required",),
    429: ("rate_limited",),
    431: ("headers_too_large",),
    500: ("internal_error",),
    503: ("unavailable",),
}
# Every code of a status that several codes share: what a route's ``errors=(403,)`` means
# when it names no codes (``errors={403: ("invalid_credentials",)}`` says which).
SHARED_STATUS_CODES: ErrorCodes = {
    400: ("invalid_json", "validation_error"),
    401: (*STATUS_CODES[401], "invalid_credentials"),
    403: ("csrf_failed", "invalid_credentials"),
    409: ("email_taken", "idempotency_conflict", "quota_exceeded"),
}
# Answered before the rate limiter counts the request, so without RateLimit-* headers: the
# body's size and deadline (hooks), and the HTTP server's own refusals.
BEFORE_LIMITER = frozenset({408, 413, 414, 431})


@dataclass(frozen=True)
class Operation:
    """What a view accepts and answers, for validation and for the OpenAPI document."""

    name: str
    summary: str
    tags: tuple[str, ...]
    auth: Auth
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    ok_status: int
    ok_model: type[BaseModel] | None
    errors: tuple[int, ...]
    media_types: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    error_codes: ErrorCodes = field(default_factory=dict)
    alternatives: dict[int, type[BaseModel]] = field(default_factory=dict)
    description: str = ""
    rate_limited: bool = True
    uses_database: bool = True
    ok_media: str = "application/json"
    body_optional: bool = False
    scopes: tuple[str, ...] | None = None  # None: derived from the tags and the method
    folded_read: FoldedRead | None = None  # the route's read, done by the session check


# The resources a personal token's scopes name; routes of other tags take sessions only.
SCOPED_RESOURCES = ("tasks", "lists")
SAFE_METHODS = frozenset({"GET", "HEAD"})


def required_scopes(op: Operation, method: str) -> tuple[str, ...] | None:
    """The personal-token scopes a route needs (None: an account route, sessions only).

    ``<resource>:read`` for reads and ``<resource>:write`` for writes of a tasks or lists
    route, unless the declaration names them (a list's tasks need both reads).
    """
    if op.scopes is not None:
        return op.scopes
    resource = next((tag for tag in op.tags if tag in SCOPED_RESOURCES), None)
    if resource is None:
        return None
    return (f"{resource}:{'read' if method.upper() in SAFE_METHODS else 'write'}",)


@dataclass(frozen=True)
class Reply:
    """A view's answer: the data its declared model serializes, a status and headers."""

    body: Any = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish: Callable[[Response], Any] | None = None  # e.g. set or clear a cookie


def page_reply(items: Any, next_cursor: str | None) -> Reply:
    """A keyset page, with ``Link: <...>; rel="next"`` to the next one: the same query, the
    next cursor, on the request's checked host (absolute, like ``Location``)."""
    headers = {}
    if next_cursor is not None:
        query = urlencode([(k, v) for k, v in request.args.items() if k != "cursor"])
        # A cursor is URL-safe base64 but for its "=" padding: quoting it character by
        # character (urlencode) cost more than any other header of the page.
        cursor = "cursor=" + next_cursor.replace("=", "%3D")
        headers["Link"] = f'<{request.base_url}?{query + "&" if query else ""}{cursor}>; rel="next"'
    return Reply({"items": items, "next_cursor": next_cursor}, headers=headers)


def implied_errors(
    *,
    auth: Auth,
    body: type[BaseModel] | None,
    headers: dict[str, str],
    rate_limited: bool,
    uses_database: bool,
) -> set[int]:
    """The statuses every operation of this shape can answer, so ``errors=`` lists only
    what a route adds (409, 410, ...)."""
    # 408: a body (any request may carry one) did not arrive in time; 414/431: refused by the
    # HTTP server before the app.
    statuses = {400, 408, 414, 431, 500}
    if auth is not None:
        statuses.add(401)
    if auth in ("refresh", "access_or_cookie"):
        statuses.add(403)  # the refresh cookie without its X-CSRF-TOKEN
    if body is not None:
        statuses |= {413, 415}
    if "If-Match" in headers:
        statuses |= {412, 428}
    if rate_limited:
        statuses.add(429)
    if uses_database:
        statuses.add(503)
    return statuses


def error_codes(
    implied: set[int], body: type[BaseModel] | None, errors: Mapping[int, tuple[str, ...]]
) -> ErrorCodes:
    """The codes of each error status: those its shape implies, and those the route names
    (a status listed without codes: every code of that status)."""
    codes = {status: set(STATUS_CODES[status]) for status in implied}
    if body is not None:
        codes[400].add("invalid_json")
    for status, named in errors.items():
        default = SHARED_STATUS_CODES.get(status) or STATUS_CODES.get(status, ())
        codes.setdefault(status, set()).update(named or default)
    return {status: tuple(sorted(found)) for status, found in sorted(codes.items())}


def operation(
    summary: str,
    *,
    tags: tuple[str, ...],
    auth: Auth = "access",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    ok: tuple[int, type[BaseModel] | None] = (200, None),
    errors: tuple[int, ...] | Mapping[int, tuple[str, ...]] = (),
    media_types: tuple[str, ...] = JSON_TYPES,
    headers: dict[str, str] | None = None,
    response_headers: Mapping[str, str] | None = None,
    alternatives: dict[int, type[BaseModel]] | None = None,
    description: str = "",
    rate_limited: bool = True,
    uses_database: bool = True,
    ok_media: str = "application/json",
    body_optional: bool = False,
    verified_email: bool = False,
    scopes: tuple[str, ...] | None = None,
    folded_read: FoldedRead | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Validate and document a view; the view receives ``body=`` and ``query=`` as declared.

    ``errors`` lists the statuses this route adds to those its shape implies, as statuses
    (``(404,)``: their usual codes) or with the codes this route answers with
    (``{409: ("email_taken",)}``). ``response_headers`` names the success answer's headers
    with a description each. ``verified_email``: a write that TASKAPI_REQUIRE_VERIFIED_EMAIL
    refuses (403 email_unverified) to a user whose address is not verified.
    ``folded_read``: the route's data is read by the session check's own statement (one
    round trip instead of two); the view takes it with ``deps.folded_data()``.
    """
    implied = implied_errors(
        auth=auth,
        body=body,
        headers=headers or {},
        rate_limited=rate_limited,
        uses_database=uses_database,
    )
    named: dict[int, tuple[str, ...]] = (
        dict(errors) if isinstance(errors, Mapping) else dict.fromkeys(errors, ())
    )
    if verified_email:
        named[403] = (*named.get(403, ()), "email_unverified")
    if auth in ("access", "access_or_cookie"):  # a personal token: a scope, or no account route
        named[403] = (*named.get(403, ()), "insufficient_scope")
    codes = error_codes(implied, body, named)

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        spec = Operation(
            name=view.__name__,
            summary=summary,
            tags=tags,
            auth=auth,
            body=body,
            query=query,
            ok_status=ok[0],
            ok_model=ok[1],
            errors=tuple(codes),
            media_types=media_types,
            headers=headers or {},
            response_headers=dict(response_headers or {}),
            error_codes=codes,
            alternatives=alternatives or {},
            description=description,
            rate_limited=rate_limited,
            uses_database=uses_database,
            ok_media=ok_media,
            body_optional=body_optional,
            scopes=scopes,
            folded_read=folded_read,
        )

        def run(*args: Any, **kwargs: Any) -> Response:
            if auth is not None:
                authenticate(auth, CALLER_CHECKS)
                check_scopes(required_scopes(spec, request.method))
            if verified_email and settings().require_verified_email:
                require_verified_email()
            takes_body = body is not None and not (body_optional and not has_body())
            if takes_body:
                check_media_type(media_types)
            parsed_query = parse_query(query)
            if query is not None:
                kwargs["query"] = parsed_query
            if body is not None:
                kwargs["body"] = parse_body(body) if takes_body else None
            return respond(spec, view(*args, **kwargs))

        @wraps(view)
        def validated(*args: Any, **kwargs: Any) -> Response:
            return once_more_if_the_connection_died(lambda: run(*args, **kwargs))

        validated.operation = spec  # type: ignore[attr-defined]
        return validated

    return decorate


def respond(spec: Operation, result: Any) -> Response:
    """Serialize a view's result through the declared model of its status."""
    if isinstance(result, Response):  # 304 and pages that are not JSON
        return result
    reply = result if isinstance(result, Reply) else Reply(result)
    status = reply.status or spec.ok_status
    model = spec.alternatives.get(status) or (spec.ok_model if status == spec.ok_status else None)
    if model is None:
        if reply.body is not None:
            raise TypeError(f"{spec.name} declares no body for status {status}")
        response = Response(status=status)
    else:
        data = serialize(model, reply.body)
        response = Response(data, status=status, mimetype=spec.ok_media)
    for name, value in reply.headers.items():
        response.headers[name] = value
    if reply.finish is not None:
        reply.finish(response)
    return response


def serialize(model: type[BaseModel], body: Any) -> str | bytes:
    """JSON of ``body`` as ``model`` declares it (validated from a model, dict or row), or
    by the model's hand-written serializer on the hot path (``schemas.common.FAST_JSON``)."""
    fast = FAST_JSON.get(model)
    if fast is not None and not isinstance(body, model):
        return fast(body)
    instance = body if isinstance(body, model) else model.model_validate(body, from_attributes=True)
    return instance.model_dump_json()
