"""Account and token endpoints under ``/api/v1/auth``."""

from __future__ import annotations

import hmac
import uuid
from datetime import timedelta

from flask import Blueprint, Response, current_app, request
from flask_jwt_extended import (
    decode_token,
    get_jwt,
    get_jwt_request_location,
    set_refresh_cookies,
    unset_refresh_cookies,
)
from flask_jwt_extended.exceptions import CSRFError

from taskapi.api.deps import db_session, settings
from taskapi.api.operation import PATCH_TYPES, json_response, operation
from taskapi.api.parsing import parse_id
from taskapi.db import utcnow
from taskapi.errors import ApiError, not_found
from taskapi.schemas.auth import (
    DeleteMeBody,
    LoginAnswer,
    LoginBody,
    PasswordChangeBody,
    RegisterBody,
    SessionPage,
    SessionPublic,
    TokenPair,
    UpdateMeBody,
    UserPublic,
)
from taskapi.security import (
    REFRESH_COOKIE_NAME,
    current_session_id,
    current_user_id,
    encode_refresh_token,
    require_ascii_csrf_header,
    token_answer,
)
from taskapi.services import auth as service
from taskapi.services.auth import RefreshGrant

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")
TAGS = ("auth",)
CSRF_HEADER_DOC = "Cookie mode: the csrf_token from login or the last refresh (403 otherwise)"


def _user_view(user: object) -> UserPublic:
    """The public view of a user row."""
    return UserPublic.model_validate(user, from_attributes=True)


def _no_content() -> Response:
    """An empty 204 answer."""
    return Response(status=204)


@bp.post("/register")
@operation(
    "Create an account",
    tags=TAGS,
    auth=None,
    body=RegisterBody,
    ok=(201, UserPublic),
    errors=(400, 409, 413, 415, 429),
)
def register(body: RegisterBody) -> Response:
    """Create an account and return the user."""
    user = service.register(
        db_session(),
        email=body.email,
        password=body.password,
        name=body.name,
        rounds=settings().bcrypt_rounds,
    )
    return json_response(_user_view(user), 201)


@bp.post("/login")
@operation(
    "Log in and open a session",
    tags=TAGS,
    auth=None,
    body=LoginBody,
    ok=(200, LoginAnswer),
    errors=(400, 401, 413, 415, 429),
    description=(
        "Body mode (default) returns refresh_token. With refresh_cookie=true the refresh token is "
        "set in an HttpOnly cookie scoped to /api/v1/auth and csrf_token is returned instead."
    ),
)
def login(body: LoginBody) -> Response:
    """Check credentials, open a session and issue its first tokens."""
    db, config = db_session(), settings()
    guard = current_app.extensions["taskapi"]["login_guard"]
    guard.check(body.email)
    try:
        user = service.authenticate(
            db, email=body.email, password=body.password, rounds=config.bcrypt_rounds
        )
    except ApiError:
        guard.record_failure(body.email)
        raise
    grant = service.open_session(
        db,
        user_id=user.id,
        user_agent=request.headers.get("User-Agent", ""),
        now=utcnow(),
        lifetime=timedelta(days=config.refresh_token_days),
    )
    answer = token_answer(user.id, grant, cookie=body.refresh_cookie)
    response = json_response({**answer, "user": _user_view(user).model_dump(mode="json")})
    if body.refresh_cookie:
        _set_refresh_cookie(response, user.id, grant)
    return response


def _set_refresh_cookie(response: Response, user_id: uuid.UUID, grant: RefreshGrant) -> None:
    """Put the refresh token in its HttpOnly cookie, living exactly as long as the token."""
    max_age = max(0, int((grant.expires_at - utcnow()).total_seconds()))
    set_refresh_cookies(response, encode_refresh_token(user_id, grant), max_age=max_age)


@bp.post("/refresh")
@operation(
    "Exchange a refresh token for new tokens",
    tags=TAGS,
    auth="refresh",
    ok=(200, TokenPair),
    errors=(401, 403, 429),
    headers={"X-CSRF-TOKEN": CSRF_HEADER_DOC},
    description=(
        "Send the refresh token as Authorization: Bearer, or (cookie mode) the refresh cookie "
        "with X-CSRF-TOKEN. Each refresh token works once; a reused one revokes its session, "
        "except within a few seconds of its first use, when the same successor is returned."
    ),
)
def refresh() -> Response:
    """Rotate the refresh token and issue a fresh access token."""
    claims = get_jwt()
    config = settings()
    user_id = current_user_id()
    grant = service.rotate_refresh_token(
        db_session(),
        session_id=current_session_id(),
        presented_jti=str(claims["jti"]),
        now=utcnow(),
        lifetime=timedelta(days=config.refresh_token_days),
        grace=timedelta(seconds=config.refresh_grace_seconds),
    )
    from_cookie = get_jwt_request_location() == "cookies"
    response = json_response(token_answer(user_id, grant, cookie=from_cookie))
    if from_cookie:
        _set_refresh_cookie(response, user_id, grant)
    return response


@bp.post("/logout")
@operation(
    "End this session",
    tags=TAGS,
    auth="access",
    ok=(204, None),
    errors=(401, 403, 429),
    headers={"X-CSRF-TOKEN": CSRF_HEADER_DOC},
    description="With the refresh cookie present, X-CSRF-TOKEN must match; the cookie is cleared.",
)
def logout() -> Response:
    """Revoke the current session; with the refresh cookie, also require CSRF and clear it."""
    cookie = request.cookies.get(REFRESH_COOKIE_NAME)
    if cookie is not None:
        _check_cookie_csrf(cookie)
    service.revoke_session(
        db_session(), session_id=current_session_id(), user_id=current_user_id(), now=utcnow()
    )
    response = _no_content()
    if cookie is not None:
        unset_refresh_cookies(response)
    return response


def _check_cookie_csrf(cookie: str) -> None:
    """A request carrying the refresh cookie must carry its X-CSRF-TOKEN too."""
    try:
        claims = decode_token(cookie, allow_expired=True)
    except Exception:  # a cookie we did not sign protects nothing; the access token decides
        return
    require_ascii_csrf_header()
    header = request.headers.get("X-CSRF-TOKEN", "")
    if not hmac.compare_digest(str(claims.get("csrf", "")), header):
        raise CSRFError("CSRF token missing or incorrect")


@bp.post("/logout-all")
@operation("End every session of this user", tags=TAGS, ok=(204, None), errors=(401, 429))
def logout_all() -> Response:
    """Revoke every session of the current user, this one included."""
    service.revoke_all_sessions(db_session(), user_id=current_user_id(), now=utcnow())
    return _no_content()


@bp.get("/me")
@operation("The current user", tags=TAGS, ok=(200, UserPublic), errors=(401, 429))
def get_me() -> Response:
    """Return the authenticated user."""
    return json_response(_user_view(service.get_user(db_session(), user_id=current_user_id())))


@bp.patch("/me")
@operation(
    "Change the display name",
    tags=TAGS,
    body=UpdateMeBody,
    ok=(200, UserPublic),
    errors=(400, 401, 413, 415, 429),
    media_types=PATCH_TYPES,
)
def update_me(body: UpdateMeBody) -> Response:
    """Update the authenticated user's name."""
    user = service.update_name(db_session(), user_id=current_user_id(), name=body.name)
    return json_response(_user_view(user))


@bp.post("/password")
@operation(
    "Change the password",
    tags=TAGS,
    body=PasswordChangeBody,
    ok=(204, None),
    errors=(400, 401, 413, 415, 429),
    description="Every other session is revoked; this one lives on.",
)
def change_password(body: PasswordChangeBody) -> Response:
    """Verify the current password, set the new one and end every other session."""
    service.change_password(
        db_session(),
        user_id=current_user_id(),
        session_id=current_session_id(),
        current_password=body.current_password,
        new_password=body.new_password,
        rounds=settings().bcrypt_rounds,
        now=utcnow(),
    )
    return _no_content()


@bp.delete("/me")
@operation(
    "Delete the account",
    tags=TAGS,
    body=DeleteMeBody,
    ok=(204, None),
    errors=(400, 401, 413, 415, 429),
    description="Deletes the user, their tasks and sessions.",
)
def delete_me(body: DeleteMeBody) -> Response:
    """Delete the user with every task and session, after checking the password."""
    service.delete_account(db_session(), user_id=current_user_id(), password=body.password)
    return _no_content()


@bp.get("/sessions")
@operation("This user's active sessions", tags=TAGS, ok=(200, SessionPage), errors=(401, 429))
def list_sessions() -> Response:
    """List the live sessions, marking the current one."""
    current = current_session_id()
    rows = service.list_sessions(db_session(), user_id=current_user_id(), now=utcnow())
    items = [
        SessionPublic(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            user_agent=row.user_agent,
            current=row.id == current,
        )
        for row in rows
    ]
    return json_response(SessionPage(items=items, next_cursor=None))


@bp.delete("/sessions/<session_id>")
@operation("End one session", tags=TAGS, ok=(204, None), errors=(401, 404, 429))
def delete_session(session_id: str) -> Response:
    """Revoke one of this user's sessions; anyone else's is not found."""
    sid = parse_id(session_id)
    if not service.revoke_session(
        db_session(), session_id=sid, user_id=current_user_id(), now=utcnow()
    ):
        raise not_found()
    return _no_content()
