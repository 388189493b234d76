"""Who is calling: JWT issuing, reading credentials once per request, and the guard.

Every request's caller is decided here, once. A hook reads the credentials the route's guard
will check (the Authorization header, or for ``/auth/refresh`` the refresh cookie first) and
decodes them before the rate limiter runs, so the limiter keys on exactly the identity the
guard accepts. The guard then checks the session (one primary-key lookup) and stores the
request's :class:`Principal`, which views, services, the limiter and the logs read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, Protocol

import jwt
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token

from taskapi.errors import (
    ApiError,
    EmailUnverified,
    csrf_failed,
    insufficient_scope,
    unauthorized,
)
from taskapi.services import tokens
from taskapi.services.auth import RefreshGrant, SessionCheck
from taskapi.services.tokens import TokenCheck
from taskapi.settings import Settings

REFRESH_COOKIE_NAME = "taskapi_refresh"
AUTH_PATH = "/api/v1/auth"
CSRF_HEADER = "X-CSRF-TOKEN"
# RFC 9110: one credential, a case-insensitive scheme, then the token68.
BEARER = re.compile(r"^bearer[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*$", re.IGNORECASE)
BEARER_MENTIONED = re.compile(r"(?:^|,)[ \t]*bearer(?:[ \t]|$)", re.IGNORECASE)
TokenKind = Literal["access", "refresh"]
# What a route's guard accepts: a token kind, or the refresh cookie alone (``/auth/csrf``), or
# the access token or the refresh cookie (``/auth/logout``, which must work after the access
# token expired).
Guard = Literal["access", "refresh", "refresh_cookie", "access_or_cookie"]
Via = Literal["access_token", "refresh_token", "refresh_cookie", "personal_token"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "jti", "type"]


# --- tokens ----------------------------------------------------------------------------------


def csrf_token_for(session_id: uuid.UUID) -> str:
    """The CSRF value of a session: the same across refreshes, so every tab can use it.

    Derived (an HMAC of the session id under a key kept for this purpose alone) rather than
    stored; it ends with the session, and ``GET /auth/csrf`` can hand it back after a reload.
    """
    key = _csrf_key(current_app.config["JWT_SECRET_KEY"])
    return hmac.new(key, str(session_id).encode(), hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=4)
def _csrf_key(secret: str) -> bytes:
    """The CSRF derivation key: no other use of the secret can produce or reveal its values."""
    return hmac.new(secret.encode(), b"taskapi csrf v2", hashlib.sha256).digest()


def encode_refresh_token(user_id: uuid.UUID, grant: RefreshGrant) -> str:
    """Encode a refresh token purely from the grant, so re-encoding gives the same token."""
    issued = int(grant.issued_at.timestamp())
    claims = {
        "sid": str(grant.session_id),
        "jti": grant.jti,
        "iat": issued,
        "nbf": issued,
        "exp": int(grant.expires_at.timestamp()),
    }
    return str(create_refresh_token(str(user_id), expires_delta=False, additional_claims=claims))


def encode_access_token(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    """A short-lived access token bound to its session."""
    return str(create_access_token(str(user_id), additional_claims={"sid": str(session_id)}))


def token_answer(user_id: uuid.UUID, grant: RefreshGrant, *, cookie: bool) -> dict[str, Any]:
    """The body of login and refresh answers; in cookie mode the refresh token stays out."""
    body: dict[str, Any] = {
        "access_token": encode_access_token(user_id, grant.session_id),
        "token_type": "Bearer",
        "expires_in": int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    }
    if cookie:
        body["csrf_token"] = csrf_token_for(grant.session_id)
    else:
        body["refresh_token"] = encode_refresh_token(user_id, grant)
    return body


def decode(token: str, *, allow_expired: bool = False) -> dict[str, Any]:
    """The claims of a token this server signed; raises ``jwt.InvalidTokenError`` otherwise.

    The signature check of a token string is remembered (a client sends the same access
    token for 15 minutes); the times in it are checked on every call.
    """
    claims = dict(_signed_claims(current_app.config["JWT_SECRET_KEY"], token))
    now = time.time()
    if not allow_expired and claims["exp"] <= now:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if claims.get("nbf", 0) > now:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    return claims


@lru_cache(maxsize=4096)
def _signed_claims(secret: str, token: str) -> Mapping[str, Any]:
    """Verify a token's signature, algorithm and required claims (not its times), once."""
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False,
                 "verify_iat": False},
    )  # fmt: skip
    if not isinstance(claims.get("exp"), int | float) or not isinstance(
        claims.get("nbf", 0), int | float
    ):
        raise jwt.InvalidTokenError("exp and nbf must be numbers")
    return MappingProxyType(claims)


# --- the caller ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What the client presented for the route's guard, decoded but not yet checked."""

    sent: bool  # a bearer token or refresh cookie was presented (RFC 6750 challenge)
    via: Via | None = None
    claims: dict[str, Any] | None = None
    error: ApiError | None = None
    live: bool = False  # the token's session exists and has not ended
    email_verified: bool = False
    disabled: bool = False  # an operator disabled the account (its sessions ended with it)
    secret: str | None = None  # a personal token, until it is looked up
    scopes: frozenset[str] | None = None  # a personal token's; None: a session (everything)

    @property
    def user_key(self) -> str | None:
        """The user whose live session the token belongs to. A revoked or stolen-and-revoked
        token names its user too, but must not spend that user's budget."""
        return str(self.claims["sub"]) if self.claims is not None and self.live else None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of this request: one per request, decided once."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    via: Via
    token_id: str
    email_verified: bool = False
    scopes: frozenset[str] | None = None  # a personal token's; None: a session (everything)


ANONYMOUS = Credentials(sent=False)


def _bearer_token() -> tuple[str | None, bool]:
    """(token, sent): the token of a well-formed ``Bearer`` header.

    A header that merely mentions Bearer among other schemes (``Basic x, Bearer y``) holds
    no usable token: the guard refuses it, and the limiter counts it per address.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None, False
    match = BEARER.match(header)
    if match is None:
        return None, BEARER_MENTIONED.search(header) is not None
    return match.group(1), True


def _body_refresh_token() -> str | None:
    """The ``refresh_token`` of a JSON body (body mode's alternative to the header)."""
    if request.mimetype != "application/json":
        return None
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):  # the operation answers the 400 later
        return None
    token = body.get("refresh_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


def read_credentials(guard: Guard) -> Credentials:
    """Decode the credentials ``guard`` would check; errors are kept, not raised.

    Refresh routes look at the refresh cookie first (an SPA's Bearer access token must not
    hide its cookie), then the Authorization header, then a JSON body's ``refresh_token``.
    Logout takes the refresh cookie when it holds a token we signed, else the access token.
    """
    cookie = request.cookies.get(REFRESH_COOKIE_NAME) if guard != "access" else None
    if guard == "refresh_cookie":
        if not cookie:
            message = "The refresh cookie is required (log in with refresh_cookie=true)."
            return Credentials(
                sent=False, error=unauthorized("unauthorized", message, token_sent=False)
            )
        return _decoded(cookie, "refresh", "refresh_cookie")
    if cookie:
        from_cookie = _decoded(cookie, "refresh", "refresh_cookie")
        if guard == "refresh" or from_cookie.error is None:
            return from_cookie
    kind: TokenKind = "refresh" if guard == "refresh" else "access"
    token, sent = _bearer_token()
    if token is None and kind == "refresh" and not sent:
        token = _body_refresh_token()
        sent = token is not None
    if token is None:
        message = "A valid access token is required."
        return Credentials(sent=sent, error=unauthorized("unauthorized", message, token_sent=sent))
    if kind == "access" and tokens.is_personal(token):
        return _personal(token)
    return _decoded(token, kind, "access_token" if kind == "access" else "refresh_token")


def _personal(token: str) -> Credentials:
    """A personal token: a typo (bad shape or checksum) is refused without a lookup."""
    if not tokens.well_formed(token):
        error = unauthorized("unauthorized", "The token is invalid.", token_sent=True)
        return Credentials(sent=True, error=error)
    return Credentials(sent=True, via="personal_token", secret=token)


def _decoded(token: str, kind: TokenKind, via: Via) -> Credentials:
    """Credentials from one token: its claims, or the 401 the guard will answer."""
    try:
        claims = decode(token)
        uuid.UUID(str(claims["sub"]))
        uuid.UUID(str(claims["sid"]))
    except jwt.ExpiredSignatureError:
        error = unauthorized("token_expired", "The token has expired.", token_sent=True)
        return Credentials(sent=True, error=error)
    except (jwt.InvalidTokenError, ValueError, TypeError):
        error = unauthorized("unauthorized", "The token is invalid.", token_sent=True)
        return Credentials(sent=True, error=error)
    if claims.get("type") != kind:
        message = (
            f"This route needs an {kind} token."
            if kind == "access"
            else ("This route needs a refresh token.")
        )
        return Credentials(sent=True, error=unauthorized("unauthorized", message, token_sent=True))
    return Credentials(sent=True, via=via, claims=claims)


def credentials() -> Credentials:
    """This request's credentials, as read before the limiter ran."""
    creds: Credentials | None = g.get("credentials")
    return creds or ANONYMOUS


class CallerChecks(Protocol):
    """The request's one database round trip before the view: a session or a token lookup."""

    def session(self, session_id: uuid.UUID, user_id: uuid.UUID) -> SessionCheck:
        """Is the token's session live (and the user's address verified)?"""

    def token(self, secret: str) -> TokenCheck | None:
        """The personal token's owner and scopes, or None when unknown or revoked."""


def resolve_caller(guard: Guard, checks: CallerChecks) -> Credentials:
    """Read the credentials and check their session or token (one indexed lookup), once.

    Runs before the rate limiter, so only a live session's user is counted as that user.
    """
    creds = read_credentials(guard)
    if creds.secret is not None:
        return _looked_up(creds, checks.token(creds.secret))
    if creds.claims is None:
        return creds
    user_id, session_id = uuid.UUID(str(creds.claims["sub"])), uuid.UUID(str(creds.claims["sid"]))
    check = checks.session(session_id, user_id)
    return replace(
        creds, live=check.live, email_verified=check.email_verified, disabled=check.disabled
    )


def _looked_up(creds: Credentials, check: TokenCheck | None) -> Credentials:
    """A personal token's credentials after its lookup."""
    if check is None:
        message = "The token is unknown or was revoked."
        return replace(creds, error=unauthorized("unauthorized", message, token_sent=True))
    if check.expired:
        message = "The token has expired."
        return replace(creds, error=unauthorized("token_expired", message, token_sent=True))
    claims = {"sub": str(check.user_id), "sid": str(check.token_id), "jti": str(check.token_id)}
    return replace(
        creds,
        claims=claims,
        live=not check.disabled,
        email_verified=check.email_verified,
        disabled=check.disabled,
        scopes=check.scopes,
    )


def authenticate(guard: Guard, checks: CallerChecks) -> None:
    """The guard: 401 unless the credentials hold a live session; 403 for a cookie without CSRF.

    ``/auth/csrf`` alone takes the cookie without the header: it is how a reloaded page gets
    the value back, and only allowlisted origins can read its answer.
    """
    creds = g.get("credentials") or resolve_caller(guard, checks)
    if creds.error is not None:
        raise creds.error
    claims = creds.claims
    assert claims is not None and creds.via is not None
    user_id, session_id = uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"]))
    if creds.via == "refresh_cookie" and guard != "refresh_cookie":
        check_csrf(csrf_token_for(session_id))
    if creds.disabled:
        raise unauthorized("account_disabled", "This account is disabled.", token_sent=True)
    if not creds.live:
        raise unauthorized("token_revoked", "The token's session has ended.", token_sent=True)
    g.principal = Principal(
        user_id,
        session_id,
        creds.via,
        str(claims["jti"]),
        email_verified=creds.email_verified,
        scopes=creds.scopes,
    )


def check_scopes(needed: tuple[str, ...] | None) -> None:
    """403 insufficient_scope (RFC 6750) when a personal token lacks a scope the route needs,
    or the route is an account route (``needed`` None), which only a session may use."""
    held = principal().scopes
    if held is None:
        return
    if needed is None:
        raise insufficient_scope(None)
    if not set(needed) <= held:
        raise insufficient_scope(needed)


def require_verified_email() -> None:
    """403 email_unverified unless the caller's address is verified (read by the session
    check, so this costs no query)."""
    if not principal().email_verified:
        raise EmailUnverified()


def check_csrf(expected: str) -> None:
    """403 unless X-CSRF-TOKEN carries ``expected`` (compared in constant time)."""
    header = request.headers.get(CSRF_HEADER, "")
    if not header.isascii() or not expected or not hmac.compare_digest(expected, header):
        raise csrf_failed()


def principal() -> Principal:
    """The authenticated caller (only inside a guarded view)."""
    found: Principal | None = g.get("principal")
    if found is None:
        raise RuntimeError("no authenticated caller: the view is not guarded")
    return found


def logged_user_id() -> str | None:
    """The caller's user id for the access log, when the request authenticated."""
    found: Principal | None = g.get("principal")
    return str(found.user_id) if found else None


# --- wiring ----------------------------------------------------------------------------------


def jwt_config(settings: Settings) -> dict[str, Any]:
    """Flask config for flask-jwt-extended, which issues our tokens and sets the cookie."""
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
        # We check CSRF ourselves against the session's value (``check_csrf``); with this on,
        # the library would put a random "csrf" claim in each token, so re-encoding a grant
        # (the grace answer) would no longer give the same refresh token.
        "JWT_COOKIE_CSRF_PROTECT": False,
        "JWT_CSRF_IN_COOKIES": False,
    }


def init_jwt(app: Flask) -> JWTManager:
    """flask-jwt-extended, used only to issue tokens and set cookies (we verify them above)."""
    return JWTManager(app)
