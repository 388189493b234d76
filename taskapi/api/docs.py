"""The OpenAPI 3.1 document, built from the views' ``operation`` declarations, and its UI.

The document is written for client generators as much as for people: request schemas carry
no ``default`` (generators make such fields required), server-set fields are ``readOnly``,
boolean query parameters are booleans, operation ids are the views' names in camelCase, and
every error response names the codes it can carry. ``clients/`` checks this with
openapi-typescript, ``tsc --strict`` and redocly lint (``tests/test_typed_client.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from taskapi.api.deps import state
from taskapi.api.operation import BEFORE_LIMITER, Operation, operation, required_scopes
from taskapi.schemas.common import ErrorBody

bp = Blueprint("docs", __name__)
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# Refusals that happen before the app, alike for every operation: their schema is the plain
# error body (their one code is named in the description).
STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified: the ETag is unchanged",
    400: "Invalid JSON or a validation error", 401: "Missing, invalid, expired or revoked token",
    403: "Forbidden",
    404: "Not found (or not yours)", 405: "Method not allowed",
    408: "The body did not arrive in time (the connection closes)", 409: "Conflict",
    410: "Sync token expired", 412: "If-Match does not match", 413: "Body too large",
    414: "Request line (URL) too long", 415: "Unsupported media type",
    428: "If-Match required", 429: "Rate limited", 431: "Request headers too large",
    500: "Unexpected error", 503: "Database or required Redis unavailable",
}  # fmt: skip
API_DESCRIPTION = """Authenticated, multi-user task API. Errors share one JSON shape.

Errors: every error body is `{"error", "code", "details"?}`; each response below names the
codes it can carry, and `ErrorBody.code` lists them all. A method that a documented path does
not serve is 405 `method_not_allowed` with an `Allow` header listing the methods it does
(`components/responses/MethodNotAllowed`); an unknown path is 404 `not_found`. When several
errors apply, the first of: route 404/405, 413, 429, 401/403, 415, 400, resource 404,
409/412/428.

Rate limits: every counted response (every `/api/v1` operation but this document), errors
included, carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds
until the window resets) of the tightest budget; 429 adds `Retry-After` (whole seconds, at
least 1). Answers decided before the limiter counts (408, 413, 414, 431) carry none.

URLs: `Location` and `Link` are absolute URLs, built from the request's (checked) host.

Input limits: besides the body size limit (413), a JSON number may be at most 100 characters
long (sign, digits, fraction and exponent together) and must be finite (`1e999` is not);
otherwise the answer is 400 `validation_error` naming the field, even a field that would be
ignored. Arrays and objects nest at most 32 levels deep, the body's own object counting as the
first; a deeper body is 400 `invalid_json`.

Bounds per user: at most TASKAPI_MAX_TASKS_PER_USER tasks (default 100,000; past it, creating
a task is 409 `quota_exceeded`) and TASKAPI_MAX_SESSIONS_PER_USER live sessions (default 50; a
login past it revokes the oldest). Cursors and sync tokens are opaque and encrypted.

Password checks (login, `POST /auth/password`, `DELETE /auth/me`) share failure budgets per
(email, address) and per email, and bcrypt work budgets per address and per signed-in user;
over any of them: 429 `rate_limited` with `Retry-After`. A wrong current password on an
authenticated route is 403 `invalid_credentials`, never 401. IPv6 clients are counted per /64.
A `Host` outside TASKAPI_ALLOWED_HOSTS is 400 `validation_error` on the field `Host`."""
# Relative: the API is wherever this document was fetched from.
SERVERS = [{"url": "/", "description": "The server this document is served by"}]
TAG_DESCRIPTIONS = {
    "auth": "Accounts, tokens and sessions",
    "account": "Password reset, email verification and change of email",
    "tasks": "The signed-in user's tasks, and delta sync",
    "health": "Liveness and readiness probes",
    "docs": "This document and its interactive page",
}
RATE_HEADERS = {
    "RateLimit-Limit": "Requests allowed in the current window",
    "RateLimit-Remaining": "Requests left in the current window",
    "RateLimit-Reset": "Seconds until the window resets",
}
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$"},
    "RateLimit-Limit": {"type": "integer", "minimum": 1},
    "RateLimit-Remaining": {"type": "integer", "minimum": 0},
    "RateLimit-Reset": {"type": "integer", "minimum": 0},
    "Retry-After": {"type": "integer", "minimum": 1},
    "Location": {"type": "string", "format": "uri"},
    "Idempotent-Replayed": {"type": "string", "enum": ["true"]},
}  # fmt: skip
REQUEST_ID = {
    "description": "The request's id (the client's X-Request-ID if well-formed)",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "An access token (a refresh token on /auth/refresh)"},
    "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "taskapi_refresh",
                      "description": "Cookie mode's refresh token (HttpOnly, Path=/api/v1/auth)"},
    "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-TOKEN",
                   "description": "Cookie mode: the session's csrf_token, with the cookie"},
    "personalToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "tapi_...",
        "description": (
            "A personal access token (POST /api/v1/auth/tokens), sent as Authorization: "
            "Bearer tapi_.... Scopes: tasks:read, tasks:write, lists:read, lists:write; each "
            "operation lists the ones it needs. A missing scope is 403 insufficient_scope with "
            'WWW-Authenticate: Bearer error="insufficient_scope", scope="..."; account routes '
            "(under /api/v1/auth) refuse personal tokens with the same 403."
        ),
    },
}  # fmt: skip
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "access": [{"bearerAuth": []}],
    "refresh": [{"bearerAuth": []}, {"refreshCookie": [], "csrfHeader": []}],
    "refresh_cookie": [{"refreshCookie": []}],
    "access_or_cookie": [{"bearerAuth": []}, {"refreshCookie": [], "csrfHeader": []}],
}


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    """Flask's ``/tasks/<task_id>`` as OpenAPI's ``/tasks/{task_id}``, with parameter names."""
    names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule), names


def operation_id(name: str, method: str | None = None) -> str:
    """A view's name in camelCase: ``get_me`` → ``getMe``, ``list_tasks`` → ``listTasks``;
    with ``method`` (a view serving several methods) first: ``getItem``, ``putItem``."""
    first, *rest = ([method] if method else []) + name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def _header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    """A response header object."""
    header = {"description": description, "schema": HEADER_SCHEMAS.get(name, {"type": "string"})}
    return {**header, "required": True} if required else header


def _rate_headers() -> dict[str, Any]:
    """The RateLimit-* headers of a counted answer (absent when limits are switched off)."""
    return {name: _header(name, text) for name, text in RATE_HEADERS.items()}


def _error_schema(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    """The error body, with ``code`` narrowed to the codes this response can carry."""
    if not codes:
        return ERROR_REF
    narrowed = {"type": "object", "required": ["code"],
                "properties": {"code": {"enum": list(codes)}}}  # fmt: skip
    return {"allOf": [ERROR_REF, narrowed]}


def _error_response(op: Operation, status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    """The description of one error status of an operation, naming its codes."""
    headers: dict[str, Any] = {"X-Request-ID": REQUEST_ID}
    if op.rate_limited and status not in BEFORE_LIMITER:
        headers.update(_rate_headers())
    if status == 401:
        headers["WWW-Authenticate"] = _header(
            "WWW-Authenticate", 'Bearer, with error="invalid_token" when a token was sent'
        )
    if status == 403 and "insufficient_scope" in codes:
        headers["WWW-Authenticate"] = _header(
            "WWW-Authenticate",
            'With insufficient_scope: Bearer error="insufficient_scope", scope="<needed>" (or '
            "error_description, on an account route)",
        )
    if status == 429:
        headers["Retry-After"] = _header("Retry-After", "Seconds to wait", required=True)
    named = ", ".join(f"`{code}`" for code in codes)
    return {
        "description": f"{STATUS_TEXT.get(status, 'Error')}."
        + (f" Codes: {named}." if codes else ""),
        "headers": headers,
        "content": {"application/json": {"schema": _error_schema(status, codes)}},
    }


def _ok_response(op: Operation, refs: dict[tuple[type[BaseModel], str], Any]) -> dict[str, Any]:
    """The success response of an operation."""
    headers: dict[str, Any] = {"X-Request-ID": REQUEST_ID}
    if op.rate_limited:
        headers.update(_rate_headers())
    for name, description in op.response_headers.items():
        headers[name] = _header(name, description)
    response: dict[str, Any] = {
        "description": STATUS_TEXT.get(op.ok_status, "OK"),
        "headers": headers,
    }
    if op.ok_model is not None:
        schema = refs[(op.ok_model, "serialization")]
        response["content"] = {op.ok_media: {"schema": schema}}
    elif op.ok_media != "application/json":
        response["content"] = {op.ok_media: {"schema": {"type": "string"}}}
    return response


def _not_modified(op: Operation) -> dict[str, Any]:
    """304 to a conditional GET: no body, the current ETag."""
    headers: dict[str, Any] = {
        "X-Request-ID": REQUEST_ID,
        "ETag": _header("ETag", "The current ETag, the one the client holds"),
    }
    if op.rate_limited:
        headers.update(_rate_headers())
    return {"description": STATUS_TEXT[304], "headers": headers}


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a parameter is present or absent, never null."""
    for key in ("title", "description"):
        prop.pop(key, None)
    if prop.get("default", 0) is None:
        del prop["default"]
    branches = prop.get("anyOf", [])
    if {"type": "null"} in branches:
        rest = [b for b in branches if b != {"type": "null"}]
        del prop["anyOf"]
        if len(rest) == 1:
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest
    return prop


def _parameters(op: Operation, path_names: list[str]) -> list[dict[str, Any]]:
    """Path, query and header parameters of an operation."""
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"},
         "description": f"The {n.removesuffix('_id')}'s id (anything else is 404 not_found)"}
        for n in path_names
    ]  # fmt: skip
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            description = prop.get("description", "")
            params.append({"name": name, "in": "query", "required": name in required,
                           "description": description, "schema": _query_schema(prop)})  # fmt: skip
    for name, description in op.headers.items():
        schema = HEADER_SCHEMAS.get(name, {"type": "string"})
        params.append({"name": name, "in": "header", "required": False,
                       "schema": schema, "description": description})  # fmt: skip
    return params


def _security(op: Operation, method: str) -> list[dict[str, list[str]]]:
    """Who may call: the guard's schemes, and a personal token with the scopes it needs."""
    schemes = list(SECURITY.get(op.auth or "", []))
    scopes = required_scopes(op, method) if op.auth in ("access", "access_or_cookie") else None
    if scopes is not None:
        schemes.append({"personalToken": list(scopes)})
    return schemes


def _operation(
    op: Operation, method: str, path_names: list[str], refs: dict[Any, Any], *, op_id: str
) -> dict[str, Any]:
    """One OpenAPI operation object."""
    responses = {str(s): _error_response(op, s, codes) for s, codes in op.error_codes.items()}
    responses[str(op.ok_status)] = _ok_response(op, refs)
    if method == "get" and "If-None-Match" in op.headers:
        responses["304"] = _not_modified(op)
    for status, model in op.alternatives.items():
        responses[str(status)] = {
            "description": STATUS_TEXT.get(status, ""),
            "headers": {"X-Request-ID": REQUEST_ID},
            "content": {"application/json": {"schema": refs[(model, "serialization")]}},
        }
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op_id,
        "tags": list(op.tags),
        "parameters": _parameters(op, path_names),
        "responses": dict(sorted(responses.items())),
        "security": _security(op, method),
    }
    if op.description:
        result["description"] = op.description
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        content = {media: {"schema": schema} for media in op.media_types}
        result["requestBody"] = {"required": not op.body_optional, "content": content}
    return result


def _method_not_allowed() -> dict[str, Any]:
    """405 for a method a documented path does not serve (no operation answers it)."""
    return {
        "description": "A method the path does not serve. Codes: `method_not_allowed`.",
        "headers": {
            "X-Request-ID": REQUEST_ID,
            "Allow": _header("Allow", "The methods the path serves", required=True),
        },
        "content": {"application/json": {"schema": _error_schema(405, ("method_not_allowed",))}},
    }


def _collect(app: Flask) -> list[tuple[str, str, list[str], Operation]]:
    """Every documented (path, method, path parameters, operation) of the app."""
    found = []
    for rule in app.url_map.iter_rules():
        op: Operation | None = getattr(app.view_functions[rule.endpoint], "operation", None)
        if op is None:
            continue
        path, names = _openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((path, method.lower(), names, op))
    return found


def build_openapi(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every view declared with ``operation``."""
    found = _collect(app)
    models: set[tuple[type[BaseModel], str]] = {(ErrorBody, "serialization")}
    for *_, op in found:
        if op.body is not None:
            models.add((op.body, "validation"))
        if op.ok_model is not None:
            models.add((op.ok_model, "serialization"))
        models.update((m, "serialization") for m in op.alternatives.values())
    ordered = sorted(models, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, defs = models_json_schema(ordered, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    methods = Counter(id(op) for *_, op in found)
    ids: dict[str, str] = {}
    for path, method, names, op in found:
        op_id = operation_id(op.name, method if methods[id(op)] > 1 else None)
        clash = ids.setdefault(op_id, f"{method.upper()} {path}")
        if clash != f"{method.upper()} {path}":  # two views of one name in two blueprints
            raise ValueError(f"operationId {op_id} of {method.upper()} {path} and {clash}")
        paths.setdefault(path, {})[method] = _operation(op, method, names, refs, op_id=op_id)
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskapi", "version": "1.0.0", "description": API_DESCRIPTION},
        "servers": SERVERS,
        "tags": [
            {"name": tag, "description": TAG_DESCRIPTIONS.get(tag, f"The {tag} operations")}
            for tag in dict.fromkeys(tag for *_, op in found for tag in op.tags)
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": {"MethodNotAllowed": _method_not_allowed()},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@cache
def _swagger_dir() -> Path:
    """Swagger UI 5's dist files, shipped in the flask-swagger-ui wheel (no CDN, works offline).

    Swagger UI 5 is the first major version that reads OpenAPI 3.1; the package's version
    follows Swagger UI's, so the lock file pins exactly which UI is served.
    """
    import flask_swagger_ui

    return Path(flask_swagger_ui.__file__).parent / "dist"


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taskapi docs</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/assets/docs-init.js"></script></body></html>
"""
DOCS_INIT = "SwaggerUIBundle({url: '/api/v1/openapi.json', dom_id: '#ui'});\n"


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document (this one)."""

    model_config = ConfigDict(extra="allow")

    openapi: str


@bp.get("/api/v1/openapi.json")
@operation(
    "This OpenAPI document",
    tags=("docs",),
    auth=None,
    ok=(200, OpenApiDocument),
    rate_limited=False,
    uses_database=False,
)
def openapi_document() -> Response:
    """The OpenAPI 3.1 document (built once; served as is, it is our own JSON)."""
    app_state = state()
    if app_state.openapi is None:
        app_state.openapi = build_openapi(current_app)
    return Response(json.dumps(app_state.openapi), mimetype="application/json")


@bp.get("/api/docs")
@operation(
    "Interactive documentation (Swagger UI)",
    tags=("docs",),
    auth=None,
    rate_limited=False,
    uses_database=False,
    ok_media="text/html",
)
def docs_page() -> Response:
    """An interactive page over the OpenAPI document."""
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/api/docs/assets/<path:name>")
def docs_asset(name: str) -> Response:
    """Swagger UI's static files, and the small script that points it at our document."""
    if name == "docs-init.js":
        return Response(DOCS_INIT, mimetype="text/javascript")
    if name not in ("swagger-ui.css", "swagger-ui-bundle.js"):
        abort(404)
    return send_from_directory(_swagger_dir(), name, max_age=86400)
