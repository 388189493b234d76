"""The API's error type and every error handler, all producing one JSON shape."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, SecurityError

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


# --- domain errors: what services refuse, in the domain's words ------------------------------


class DomainError(Exception):
    """A refusal by a service. Services know nothing of HTTP; ``DOMAIN_STATUS`` maps these."""

    message = "The request cannot be completed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class NotFound(DomainError):
    """The resource does not exist, or belongs to someone else (one answer for both)."""

    message = "The requested resource was not found."


class EmailTaken(DomainError):
    """An account with this email already exists."""

    message = "An account with this email already exists."


class InvalidCredentials(DomainError):
    """Login failed: unknown email or wrong password, indistinguishably."""

    message = "The email or password is incorrect."


class WrongPassword(DomainError):
    """A signed-in user's password re-check failed (not an authentication failure)."""

    message = "The password is incorrect."


class SessionEnded(DomainError):
    """The presented token's session was revoked, expired, or its refresh token reused."""

    message = "The token's session has ended."


class PreconditionFailed(DomainError):
    """The resource is no longer at a version the client named."""

    message = "The resource has changed; fetch it again."


class PreconditionRequired(DomainError):
    """The server requires If-Match for this write."""

    message = "Send If-Match with the resource's ETag."


class IdempotencyConflict(DomainError):
    """An idempotency key was reused with another request body."""

    message = "This Idempotency-Key was already used with a different request body."


class SyncTokenExpired(DomainError):
    """A delta-sync token older than the tombstone retention."""

    message = "The sync token is too old; sync from the start."


class QuotaExceeded(DomainError):
    """A per-user limit (tasks, ...) is reached."""

    message = "A limit of this account is reached."


class BadToken(DomainError):
    """A cursor or sync token that this server did not issue for this request."""

    def __init__(self, field: str) -> None:
        super().__init__(f"is not a valid {field} from this server")
        self.field = field


class InvalidInput(DomainError):
    """A field that is well-formed but not acceptable here (a subtask of a subtask, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InboxNotDeletable(DomainError):
    """Every user keeps one inbox: where tasks go when no list is named."""

    message = "The inbox cannot be deleted; delete or move its tasks instead."


class InvalidToken(DomainError):
    """An emailed token that is unknown, already used or expired (one answer for all three)."""

    message = "The link is invalid, used or expired; ask for a new one."


class EmailUnverified(DomainError):
    """A write by a user whose email is not verified, where the server requires it."""

    message = "Verify your email address first (POST /api/v1/auth/verify-email/resend)."


class AccountDisabled(DomainError):
    """An operator disabled this account: its tokens fail and login is refused."""

    message = "This account is disabled."


DOMAIN_STATUS: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    EmailTaken: (409, "email_taken"),
    InvalidCredentials: (401, "invalid_credentials"),
    WrongPassword: (403, "invalid_credentials"),
    SessionEnded: (401, "token_revoked"),
    PreconditionFailed: (412, "precondition_failed"),
    PreconditionRequired: (428, "precondition_required"),
    IdempotencyConflict: (409, "idempotency_conflict"),
    SyncTokenExpired: (410, "sync_token_expired"),
    QuotaExceeded: (409, "quota_exceeded"),
    InvalidToken: (400, "invalid_token"),
    EmailUnverified: (403, "email_unverified"),
    AccountDisabled: (401, "account_disabled"),
    InboxNotDeletable: (409, "inbox_not_deletable"),
}


def from_domain(error: DomainError) -> ApiError:
    """The contract's status, code and headers for a domain error."""
    if isinstance(error, BadToken | InvalidInput):
        return validation_error([{"field": error.field, "message": error.message}])
    status, code = DOMAIN_STATUS[type(error)]
    headers: dict[str, str] = {}
    if isinstance(error, SessionEnded):
        # Only a guarded request (a token was sent) can end in a revoked session. A failed
        # login is a 401 too, but no token was at fault: no challenge.
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return ApiError(status, code, error.message, headers=headers)


# --- HTTP errors raised by the api layer ---------------------------------------------------


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
    """A 401 carrying the RFC 6750 challenge: the one place it is built."""
    challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


def insufficient_scope(scopes: tuple[str, ...] | None) -> ApiError:
    """403 for a personal token: a missing scope, or an account route (sessions only)."""
    if scopes is None:
        message = "Personal tokens cannot use account routes; log in for a session."
        challenge = f'Bearer error="insufficient_scope", error_description="{message}"'
    else:
        message = f"The token needs the scope {' and '.join(scopes)} for this route."
        challenge = f'Bearer error="insufficient_scope", scope="{" ".join(scopes)}"'
    return ApiError(403, "insufficient_scope", message, headers={"WWW-Authenticate": challenge})


def csrf_failed() -> ApiError:
    """403: a request carrying the refresh cookie without the matching X-CSRF-TOKEN."""
    return ApiError(403, "csrf_failed", "The X-CSRF-TOKEN header is missing or does not match.")


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
    if isinstance(exc, SecurityError):  # a Host outside TASKAPI_ALLOWED_HOSTS
        return validation_error([{"field": "Host", "message": "is not a host this API serves"}])
    status = exc.code or 500
    code, message = HTTP_CODES.get(status, ("error", exc.description or "Request failed."))
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return ApiError(status, code, message, headers=headers)


def register_error_handlers(app: Flask) -> None:
    """Route every exception a request can raise to the one JSON shape."""

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        """Errors raised on purpose carry their status and code."""
        return error_response(error)

    @app.errorhandler(DomainError)
    def handle_domain_error(error: DomainError) -> Response:
        """A service's refusal, mapped to the contract's status and code."""
        return error_response(from_domain(error))

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException) -> Response:
        """Routing, size and media-type errors from Flask and Werkzeug."""
        return error_response(_from_http_exception(exc))

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeoutError)
    def handle_database_outage(exc: DBAPIError | PoolTimeoutError) -> Response:
        """The database is unreachable, or every pooled connection stayed busy: 503; the
        pool reconnects by itself when the database returns."""
        reason = getattr(exc, "orig", None) or exc
        log.warning("database unavailable (request %s): %s", g.get("request_id"), reason)
        g.database_error = type(exc).__name__  # counted by taskapi.metrics
        return error_response(
            ApiError(503, "unavailable", "The service is temporarily unavailable.")
        )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        """A bug: log it with the request id, show nothing of it."""
        log.exception("unhandled error (request %s)", g.get("request_id"))
        return error_response(ApiError(500, "internal_error", "An unexpected error occurred."))
