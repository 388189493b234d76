"""One decorator per view: guard, validation, serialization and the OpenAPI description.

Declaring validation, the response model and documentation together keeps the document equal
to what the server enforces and sends: a view returns data (or a ``Reply`` with a status and
headers), and the declared model serializes it, so a field renamed in a view fails loudly
instead of drifting from the document. The order inside the wrapper is the contract's:
401/403, then 415, then 400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import Response
from pydantic import BaseModel

from taskapi.api.deps import once_more_if_the_connection_died, session_is_live
from taskapi.api.parsing import check_media_type, has_body, parse_body, parse_query
from taskapi.security import Guard, authenticate

F = TypeVar("F", bound=Callable[..., Any])
JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/json", "application/merge-patch+json")
Auth = Guard | None


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
    response_headers: tuple[str, ...] = ()
    alternatives: dict[int, type[BaseModel]] = field(default_factory=dict)
    description: str = ""
    rate_limited: bool = True
    uses_database: bool = True
    ok_media: str = "application/json"
    body_optional: bool = False


@dataclass(frozen=True)
class Reply:
    """A view's answer: the data its declared model serializes, a status and headers."""

    body: Any = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish: Callable[[Response], Any] | None = None  # e.g. set or clear a cookie


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
    statuses = {400, 414, 431, 500}  # 414/431: refused by the server before the app
    if auth is not None:
        statuses.add(401)
    if auth in ("refresh", "access_or_cookie"):
        statuses.add(403)  # the refresh cookie without its X-CSRF-TOKEN
    if body is not None:
        statuses |= {408, 413, 415}  # 408: the body did not arrive in time
    if "If-Match" in headers:
        statuses |= {412, 428}
    if rate_limited:
        statuses.add(429)
    if uses_database:
        statuses.add(503)
    return statuses


def operation(
    summary: str,
    *,
    tags: tuple[str, ...],
    auth: Auth = "access",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    ok: tuple[int, type[BaseModel] | None] = (200, None),
    errors: tuple[int, ...] = (),
    media_types: tuple[str, ...] = JSON_TYPES,
    headers: dict[str, str] | None = None,
    response_headers: tuple[str, ...] = (),
    alternatives: dict[int, type[BaseModel]] | None = None,
    description: str = "",
    rate_limited: bool = True,
    uses_database: bool = True,
    ok_media: str = "application/json",
    body_optional: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Validate and document a view; the view receives ``body=`` and ``query=`` as declared.

    ``errors`` lists the statuses this route adds to those its shape implies.
    """
    implied = implied_errors(
        auth=auth,
        body=body,
        headers=headers or {},
        rate_limited=rate_limited,
        uses_database=uses_database,
    )

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
            errors=tuple(sorted(implied | set(errors))),
            media_types=media_types,
            headers=headers or {},
            response_headers=response_headers,
            alternatives=alternatives or {},
            description=description,
            rate_limited=rate_limited,
            uses_database=uses_database,
            ok_media=ok_media,
            body_optional=body_optional,
        )

        def run(*args: Any, **kwargs: Any) -> Response:
            if auth is not None:
                authenticate(auth, session_is_live)
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


def serialize(model: type[BaseModel], body: Any) -> str:
    """JSON of ``body`` as ``model`` declares it (validated from a model, dict or row)."""
    instance = body if isinstance(body, model) else model.model_validate(body, from_attributes=True)
    return instance.model_dump_json()
