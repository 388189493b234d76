"""The API's error type and every error handler, all producing one JSON shape."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from flask_jwt_extended.exceptions import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("taskapi.errors")

# Werkzeug's HTTP exceptions mapped to the contract's codes.
HTTP_CODES = {
    400: ("invalid_json", "The request body is not valid JSON."),
    401: ("unauthorized", "Authentication is required."),
    404: ("not_found", "The requested resource was not found."),
    405: ("method_not_allowed", "The method is not allowed for this resource."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the body as application/json."),
    429: ("rate_limited", "Too many requests; slow down."),
}


class ApiError(Exception):
    """An error the client should see, with the contract's status, code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def payload_too_large() -> ApiError:
    """413 for a body over the configured limit."""
    return ApiError(413, "payload_too_large", "The request body is too large.")


def not_found() -> ApiError:
    """The one 404 used for missing, deleted and other users' resources alike."""
    return ApiError(404, "not_found", "The requested resource was not found.")


def validation_error(details: list[dict[str, str]]) -> ApiError:
    """A 400 listing what is wrong with which field."""
    return ApiError(400, "validation_error", "The request is not valid.", details=details)


def invalid_json(message: str = "The request body is not valid JSON.") -> ApiError:
    """A 400 for a body that is not a JSON object."""
    return ApiError(400, "invalid_json", message)


def unauthorized(code: str, message: str, *, token_sent: bool) -> ApiError:
    """A 401 carrying the RFC 6750 challenge."""
    challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


def error_response(error: ApiError) -> Response:
    """Render an ``ApiError`` as the contract's JSON body."""
    body: dict[str, Any] = {"error": error.message, "code": error.code}
    if error.details is not None:
        body["details"] = error.details
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _from_http_exception(exc: HTTPException) -> ApiError:
    """Translate routing, size and media-type errors raised by Flask or Werkzeug."""
    status = exc.code or 500
    code, message = HTTP_CODES.get(status, ("error", exc.description or "Request failed."))
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return ApiError(status, code, message, headers=headers)


def register_error_handlers(app: Flask) -> None:
    """Route every exception a request can raise to the one JSON shape.

    Call after flask-jwt-extended is initialised: its own CSRFError handler answers 401.
    """

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        """Errors raised on purpose carry their status and code."""
        return error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        """Routing, size and media-type errors from Flask and Werkzeug."""
        return error_response(_from_http_exception(exc))

    @app.errorhandler(CSRFError)
    def handle_csrf(_error: CSRFError) -> Response:
        """A cookie-authenticated request without the matching X-CSRF-TOKEN."""
        return error_response(
            ApiError(403, "csrf_failed", "The X-CSRF-TOKEN header is missing or does not match.")
        )

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def handle_database_outage(exc: DBAPIError) -> Response:
        """The database is unreachable: 503; the pool reconnects by itself when it returns."""
        log.warning("database unavailable (request %s): %s", g.get("request_id"), exc.orig)
        return error_response(
            ApiError(503, "unavailable", "The service is temporarily unavailable.")
        )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        """A bug: log it with the request id, show nothing of it."""
        log.exception("unhandled error (request %s)", g.get("request_id"))
        return error_response(ApiError(500, "internal_error", "An unexpected error occurred."))
