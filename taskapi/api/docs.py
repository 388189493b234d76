"""The OpenAPI 3.1 document, built from the views' ``operation`` declarations, and its UI."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from taskapi.api.deps import state
from taskapi.api.operation import Operation, operation
from taskapi.schemas.common import ErrorBody

bp = Blueprint("docs", __name__)
STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
    400: "Invalid JSON or a validation error", 401: "Missing, invalid, expired or revoked token",
    403: "CSRF check failed, or a wrong current password (invalid_credentials)",
    404: "Not found (or not yours)",
    408: "The body did not arrive in time (the connection closes)", 409: "Conflict",
    410: "Sync token expired", 412: "If-Match does not match", 413: "Body too large",
    414: "Request line (URL) too long", 415: "Unsupported media type",
    428: "If-Match required", 429: "Rate limited", 431: "Request headers too large",
    500: "Unexpected error", 503: "Database or required Redis unavailable",
}  # fmt: skip
API_DESCRIPTION = """Authenticated, multi-user task API. Errors share one JSON shape.

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
RATE_HEADERS = {
    "RateLimit-Limit": "Requests allowed in the current window",
    "RateLimit-Remaining": "Requests left in the current window",
    "RateLimit-Reset": "Seconds until the window resets",
}
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$"},
}  # fmt: skip
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "taskapi_refresh"},
    "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-TOKEN"},
}
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


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    """A response header object."""
    return {"description": description, "schema": {"type": schema_type}}


def _error_response(status: int) -> dict[str, Any]:
    """The description of one error status."""
    response: dict[str, Any] = {
        "description": STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        "headers": {"X-Request-ID": _header("Request id")},
    }
    if status == 401:
        response["headers"]["WWW-Authenticate"] = _header('Bearer, with error="invalid_token"')
    if status == 429:
        response["headers"]["Retry-After"] = _header("Seconds to wait, at least 1", "integer")
    return response


def _ok_response(op: Operation, refs: dict[tuple[type[BaseModel], str], Any]) -> dict[str, Any]:
    """The success response of an operation."""
    headers: dict[str, Any] = {"X-Request-ID": _header("Request id")}
    if op.rate_limited:
        headers.update({k: _header(v, "integer") for k, v in RATE_HEADERS.items()})
    for name in op.response_headers:
        headers[name] = _header(name)
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


def _parameters(op: Operation, path_names: list[str]) -> list[dict[str, Any]]:
    """Path, query and header parameters of an operation."""
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        for n in path_names
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            prop.pop("title", None)
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    for name, description in op.headers.items():
        schema = HEADER_SCHEMAS.get(name, {"type": "string"})
        params.append({"name": name, "in": "header", "required": False,
                       "schema": schema, "description": description})  # fmt: skip
    return params


def _operation(
    op: Operation, method: str, path_names: list[str], refs: dict[Any, Any]
) -> dict[str, Any]:
    """One OpenAPI operation object."""
    statuses = set(op.errors) | {400, 408, 414, 431, 500}  # 408/414/431: slow or huge requests
    if op.auth is not None:
        statuses.add(401)
    if op.uses_database:
        statuses.add(503)
    if op.rate_limited:
        statuses.add(429)
    responses = {str(s): _error_response(s) for s in sorted(statuses)}
    responses[str(op.ok_status)] = _ok_response(op, refs)
    if method == "get" and "If-None-Match" in op.headers:
        responses["304"] = {"description": STATUS_TEXT[304]}
    for status, model in op.alternatives.items():
        responses[str(status)] = {
            "description": STATUS_TEXT.get(status, ""),
            "content": {"application/json": {"schema": refs[(model, "serialization")]}},
        }
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{method}_{op.name}",
        "tags": list(op.tags),
        "parameters": _parameters(op, path_names),
        "responses": dict(sorted(responses.items())),
        "security": SECURITY.get(op.auth or "", []),
    }
    if op.description:
        result["description"] = op.description
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        content = {media: {"schema": schema} for media in op.media_types}
        result["requestBody"] = {"required": not op.body_optional, "content": content}
    return result


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
    for path, method, names, op in found:
        paths.setdefault(path, {})[method] = _operation(op, method, names, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskapi", "version": "1.0.0", "description": API_DESCRIPTION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }  # fmt: skip


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
