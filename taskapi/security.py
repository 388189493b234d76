"""JWT issuing, the JWT loaders and the route guards (passwords live in ``passwords``)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import CSRFError

from taskapi.errors import error_response, unauthorized
from taskapi.services.auth import RefreshGrant
from taskapi.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
REFRESH_COOKIE_NAME = "taskapi_refresh"
AUTH_PATH = "/api/v1/auth"


# --- tokens ----------------------------------------------------------------------------------


def csrf_token_for(jti: str) -> str:
    """The CSRF value bound to one refresh token, derivable again for the grace answer."""
    key = current_app.config["JWT_SECRET_KEY"].encode()
    return hmac.new(key, f"csrf:{jti}".encode(), hashlib.sha256).hexdigest()[:32]


def encode_refresh_token(user_id: uuid.UUID, grant: RefreshGrant) -> str:
    """Encode a refresh token purely from the grant, so re-encoding gives the same token."""
    issued = int(grant.issued_at.timestamp())
    claims = {
        "sid": str(grant.session_id),
        "jti": grant.jti,
        "iat": issued,
        "nbf": issued,
        "exp": int(grant.expires_at.timestamp()),
        "csrf": csrf_token_for(grant.jti),
    }
    return create_refresh_token(str(user_id), expires_delta=False, additional_claims=claims)


def encode_access_token(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    """A short-lived access token bound to its session."""
    return create_access_token(str(user_id), additional_claims={"sid": str(session_id)})


def token_answer(user_id: uuid.UUID, grant: RefreshGrant, *, cookie: bool) -> dict[str, Any]:
    """The body of login and refresh answers; in cookie mode the refresh token stays out."""
    body: dict[str, Any] = {
        "access_token": encode_access_token(user_id, grant.session_id),
        "token_type": "Bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    }
    if cookie:
        body["csrf_token"] = csrf_token_for(grant.jti)
    else:
        body["refresh_token"] = encode_refresh_token(user_id, grant)
    return body


# --- request identity ------------------------------------------------------------------------


def current_user_id() -> uuid.UUID:
    """The authenticated user's id (after a guard ran)."""
    return uuid.UUID(get_jwt()["sub"])


def current_session_id() -> uuid.UUID:
    """The authenticated request's session id (after a guard ran)."""
    return uuid.UUID(get_jwt()["sid"])


def token_sent() -> bool:
    """Whether the client tried Bearer auth or sent a refresh cookie (RFC 6750 challenge).

    Another scheme (``Basic ...``) is no bearer token, so it gets the bare challenge.
    """
    scheme = request.headers.get("Authorization", "")[:6].lower()
    return scheme == "bearer" or bool(request.cookies.get(REFRESH_COOKIE_NAME))


def require_ascii_csrf_header() -> None:
    """With the refresh cookie, a non-ASCII X-CSRF-TOKEN cannot match (our values are hex),
    and would make the constant-time comparison raise instead of answering 403."""
    if REFRESH_COOKIE_NAME not in request.cookies:
        return
    if not request.headers.get("X-CSRF-TOKEN", "").isascii():
        raise CSRFError("CSRF token incorrect")


def access_required(view: F) -> F:
    """Guard: a valid access token from the Authorization header, session alive."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        """Verify the access token (and its session), then run the view."""
        verify_jwt_in_request(locations=["headers"])
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def refresh_required(view: F) -> F:
    """Guard: a valid refresh token, from the cookie (checked first) or the header."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        """Verify the refresh token (and its session), then run the view."""
        require_ascii_csrf_header()
        verify_jwt_in_request(refresh=True, locations=["cookies", "headers"])
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


# --- wiring ----------------------------------------------------------------------------------


def jwt_config(settings: Settings) -> dict[str, Any]:
    """Flask config for flask-jwt-extended derived from our settings."""
    return {
        "JWT_SECRET_KEY": settings.secret_key,
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_TOKEN_LOCATION": ["cookies", "headers"],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=settings.access_token_seconds),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=settings.refresh_token_days),
        "JWT_REFRESH_COOKIE_NAME": REFRESH_COOKIE_NAME,
        "JWT_REFRESH_COOKIE_PATH": AUTH_PATH,
        "JWT_ACCESS_COOKIE_NAME": "taskapi_access_unused",
        "JWT_COOKIE_SECURE": settings.secure_cookies,
        "JWT_COOKIE_SAMESITE": settings.cookie_samesite,
        "JWT_COOKIE_DOMAIN": settings.cookie_domain,
        "JWT_SESSION_COOKIE": False,
        "JWT_COOKIE_CSRF_PROTECT": True,
        "JWT_CSRF_IN_COOKIES": False,
        "JWT_CSRF_CHECK_FORM": False,
        "JWT_REFRESH_CSRF_HEADER_NAME": "X-CSRF-TOKEN",
    }


def _reject(code: str, message: str) -> Callable[..., Response]:
    """A loader that answers with our 401 shape."""

    def loader(*_args: Any) -> Response:
        """Answer 401 with the challenge."""
        return error_response(unauthorized(code, message, token_sent=token_sent()))

    return loader


def init_jwt(
    app: Flask, *, is_revoked: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> JWTManager:
    """Register flask-jwt-extended with the session check and every loader mapped to our 401s."""
    jwt = JWTManager(app)
    jwt.token_in_blocklist_loader(is_revoked)
    jwt.unauthorized_loader(_reject("unauthorized", "A valid access token is required."))
    jwt.invalid_token_loader(_reject("unauthorized", "The token is invalid."))
    jwt.expired_token_loader(_reject("token_expired", "The token has expired."))
    jwt.revoked_token_loader(_reject("token_revoked", "The token's session has ended."))
    jwt.needs_fresh_token_loader(_reject("unauthorized", "A fresh token is required."))
    jwt.user_lookup_error_loader(_reject("unauthorized", "The token's user does not exist."))
    jwt.token_verification_failed_loader(_reject("unauthorized", "The token was refused."))
    return jwt
