"""Request and response hooks every route shares: ids, body size, headers."""

from __future__ import annotations

import io
import re
import uuid

from flask import Flask, Response, g, request

from taskapi.errors import payload_too_large
from taskapi.security import token_sent
from taskapi.settings import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BEARER_ANY_CASE = re.compile(r"^bearer[ \t]+", re.IGNORECASE)
BODYLESS_STATUSES = (204, 304)


def _assign_request_id() -> None:
    """Echo a well-formed client X-Request-ID, or make one."""
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _normalise_bearer_scheme() -> None:
    """Auth schemes are case-insensitive (RFC 9110); flask-jwt-extended and the per-user
    rate-limit key expect exactly "Bearer " before the token."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    match = BEARER_ANY_CASE.match(header)
    if match and match.group() != "Bearer ":  # "bearer", or more than one space
        request.environ["HTTP_AUTHORIZATION"] = "Bearer " + header[match.end() :]


def _check_body_size(limit: int) -> None:
    """413 before auth and limits, as the contract ranks it; route 404/405 still come first.

    A chunked body has no Content-Length, and Werkzeug would silently cut it at the limit,
    so it is read here (up to one byte past the limit) and handed on as a sized body.
    """
    if request.routing_exception is not None:
        return
    length = request.content_length
    if length is not None:
        if length > limit:
            raise payload_too_large()
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise payload_too_large()
    request.environ["wsgi.input"] = io.BytesIO(body)
    request.environ["CONTENT_LENGTH"] = str(len(body))
    request.environ.pop("HTTP_TRANSFER_ENCODING", None)


def _add_bearer_challenge(app: Flask, response: Response) -> None:
    """RFC 6750: every 401 of a guarded route (wrong password on /auth/password too) challenges."""
    operation = getattr(app.view_functions.get(request.endpoint or ""), "operation", None)
    if operation is None or operation.auth is None:
        return
    response.headers["WWW-Authenticate"] = (
        'Bearer error="invalid_token"' if token_sent() else "Bearer"
    )


def install_request_hooks(app: Flask, settings: Settings) -> None:
    """Register the hooks; call before the limiter so that 413 ranks above 429."""
    app.before_request(_assign_request_id)
    app.before_request(_normalise_bearer_scheme)
    app.before_request(lambda: _check_body_size(settings.max_body_bytes))

    @app.after_request
    def add_standard_headers(response: Response) -> Response:
        """Request id, security headers, the Bearer challenge, bodyless answers, Vary."""
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/v1/auth"):
            response.headers["Cache-Control"] = "no-store"
        if settings.hsts and settings.is_production:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if response.status_code == 401 and "WWW-Authenticate" not in response.headers:
            _add_bearer_challenge(app, response)
        if request.method == "OPTIONS" and not response.get_data():
            # Flask's automatic OPTIONS answer is an empty text/html 200: say "no content".
            response.status_code = 204
        if response.status_code in BODYLESS_STATUSES:
            response.headers.pop("Content-Type", None)
        if settings.cors_origins:
            response.vary.add("Origin")
        return response
