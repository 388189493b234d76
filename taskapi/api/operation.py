"""One decorator per view: guard, query and body validation, and the OpenAPI description.

Declaring validation and documentation together keeps the document equal to what the server
enforces. The order inside the wrapper is the contract's: 401/403, then 415, then 400.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal, TypeVar

from flask import Response
from pydantic import BaseModel

from taskapi.api.parsing import check_media_type, parse_body, parse_query
from taskapi.security import access_required, refresh_required

F = TypeVar("F", bound=Callable[..., Any])
JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/json", "application/merge-patch+json")
Auth = Literal["access", "refresh", None]


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


GUARDS: dict[Auth, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "access": access_required,
    "refresh": refresh_required,
}


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
) -> Callable[[F], F]:
    """Validate and document a view; the view receives ``body=`` and ``query=`` as declared."""

    def decorate(view: F) -> F:
        spec = Operation(
            name=view.__name__,
            summary=summary,
            tags=tags,
            auth=auth,
            body=body,
            query=query,
            ok_status=ok[0],
            ok_model=ok[1],
            errors=errors,
            media_types=media_types,
            headers=headers or {},
            response_headers=response_headers,
            alternatives=alternatives or {},
            description=description,
            rate_limited=rate_limited,
            uses_database=uses_database,
            ok_media=ok_media,
        )

        @wraps(view)
        def validated(*args: Any, **kwargs: Any) -> Any:
            if body is not None:
                check_media_type(media_types)
            parsed_query = parse_query(query)
            if query is not None:
                kwargs["query"] = parsed_query
            if body is not None:
                kwargs["body"] = parse_body(body)
            return view(*args, **kwargs)

        guarded = GUARDS[auth](validated) if auth in GUARDS else validated
        guarded.operation = spec  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def json_response(
    payload: BaseModel | dict[str, Any], status: int = 200, **headers: str
) -> Response:
    """Serialize a model (or a ready dict) as the response body."""
    if isinstance(payload, BaseModel):
        data = payload.model_dump_json()
    else:
        data = json.dumps(payload, separators=(",", ":"))
    response = Response(data, status=status, mimetype="application/json")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response
