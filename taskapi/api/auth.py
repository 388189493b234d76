"""Account and token endpoints under ``/api/v1/auth``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

from flask import Blueprint, Response, request
from flask_jwt_extended import set_refresh_cookies, unset_refresh_cookies

from taskapi import metrics
from taskapi.api.account import mail_context, network_of_caller
from taskapi.api.deps import db_session, settings, state, token_key
from taskapi.api.operation import PATCH_TYPES, Reply, operation
from taskapi.api.parsing import parse_id
from taskapi.db import utcnow, write
from taskapi.errors import DomainError, NotFound, SessionEnded
from taskapi.schemas.auth import (
    CsrfAnswer,
    DeleteMeBody,
    LoginAnswer,
    LoginBody,
    PasswordChangeBody,
    RefreshBody,
    RegisterBody,
    SessionListQuery,
    SessionPage,
    SessionPublic,
    TokenPair,
    UpdateMeBody,
    UserPublic,
)
from taskapi.security import (
    REFRESH_COOKIE_NAME,
    csrf_token_for,
    encode_refresh_token,
    principal,
    token_answer,
)
from taskapi.services import accounts, notices
from taskapi.services import auth as service
from taskapi.services.auth import RefreshGrant

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")
TAGS = ("auth",)
CSRF_HEADER_DOC = (
    "Cookie mode: the session's csrf_token (from login, any refresh, or GET /auth/csrf); "
    "403 csrf_failed otherwise"
)


@bp.post("/register")
@operation(
    "Create an account",
    tags=TAGS,
    auth=None,
    body=RegisterBody,
    ok=(201, UserPublic),
    errors={409: ("email_taken",)},
)
def register(body: RegisterBody) -> object:
    """Create an account and return the user."""
    db, config = db_session(), settings()
    return service.register(
        db,
        email=body.email,
        password=body.password,
        name=body.name,
        rounds=config.bcrypt_rounds,
        welcome=lambda user: accounts.start_verification(
            db,
            user=user,
            ctx=mail_context(),
            now=utcnow(),
            lifetime=timedelta(hours=config.verify_token_hours),
        ),
    )


@bp.post("/login")
@operation(
    "Log in and open a session",
    tags=TAGS,
    auth=None,
    body=LoginBody,
    ok=(200, LoginAnswer),
    errors={401: ("invalid_credentials", "account_disabled")},
    response_headers={
        "Set-Cookie": (
            "With refresh_cookie=true only: taskapi_refresh=<refresh token>; Path=/api/v1/auth; "
            "HttpOnly; Max-Age=<the refresh token's lifetime>; SameSite and Secure as configured"
        )
    },
    description=(
        "Body mode (default) returns refresh_token. With refresh_cookie=true the refresh token is "
        "set in an HttpOnly cookie scoped to /api/v1/auth and csrf_token is returned instead. "
        "Past TASKAPI_MAX_SESSIONS_PER_USER live sessions, the oldest are revoked."
    ),
)
def login(body: LoginBody) -> Reply:
    """Check credentials, open a session and issue its first tokens."""
    db, config = db_session(), settings()
    with state().password_guard.attempt(body.email):
        try:
            user = service.authenticate(
                db, email=body.email, password=body.password, rounds=config.bcrypt_rounds
            )
        except DomainError:
            metrics.login_failed()
            raise
    metrics.login_succeeded()
    user_agent, now = request.headers.get("User-Agent", ""), utcnow()
    with write(db):  # the session and a new device's notice commit together
        grant = service.open_session(
            db,
            user_id=user.id,
            user_agent=user_agent,
            now=now,
            lifetime=timedelta(days=config.refresh_token_days),
            max_sessions=config.max_sessions_per_user,
        )
        accounts.note_login(
            db,
            user_id=user.id,
            user_agent=user_agent[: service.USER_AGENT_MAX],
            network=network_of_caller(),
            ctx=mail_context(),
            now=now,
        )
    answer = token_answer(user.id, grant, cookie=body.refresh_cookie)
    cookie = _refresh_cookie(user.id, grant) if body.refresh_cookie else None
    return Reply({**answer, "user": user}, finish=cookie)


def _refresh_cookie(user_id: uuid.UUID, grant: RefreshGrant) -> Callable[[Response], None]:
    """Put the refresh token in its HttpOnly cookie, living exactly as long as the token."""
    max_age = max(0, int((grant.expires_at - utcnow()).total_seconds()))
    token = encode_refresh_token(user_id, grant)
    return lambda response: set_refresh_cookies(response, token, max_age=max_age)


@bp.post("/refresh")
@operation(
    "Exchange a refresh token for new tokens",
    tags=TAGS,
    auth="refresh",
    body=RefreshBody,
    body_optional=True,
    ok=(200, TokenPair),
    headers={"X-CSRF-TOKEN": CSRF_HEADER_DOC},
    response_headers={
        "Set-Cookie": (
            "Cookie mode only: the next refresh token in taskapi_refresh (Path=/api/v1/auth; "
            "HttpOnly; Max-Age=<its lifetime>; SameSite and Secure as configured)"
        )
    },
    description=(
        "Send the refresh token as Authorization: Bearer, or as the JSON body "
        '{"refresh_token": ...}, or (cookie mode) the refresh cookie with X-CSRF-TOKEN; the '
        "cookie is looked at first, then the header, then the body. Each refresh token works "
        "once; a reused one revokes its session, except within a few seconds of its first use, "
        "when the same successor is returned."
    ),
)
def refresh(body: RefreshBody | None) -> Reply:
    """Rotate the refresh token and issue a fresh access token."""
    caller, config = principal(), settings()
    try:
        grant = service.rotate_refresh_token(
            db_session(),
            session_id=caller.session_id,
            presented_jti=caller.token_id,
            now=utcnow(),
            lifetime=timedelta(days=config.refresh_token_days),
            grace=timedelta(seconds=config.refresh_grace_seconds),
        )
    except SessionEnded:
        # The guard found the session live a moment ago: the token was reused, and the
        # rotation revoked the session (a logout racing in between is counted here too).
        metrics.refresh_reuse_detected()
        raise
    from_cookie = caller.via == "refresh_cookie"
    cookie = _refresh_cookie(caller.user_id, grant) if from_cookie else None
    return Reply(token_answer(caller.user_id, grant, cookie=from_cookie), finish=cookie)


@bp.get("/csrf")
@operation(
    "The CSRF value of the refresh cookie's session",
    tags=TAGS,
    auth="refresh_cookie",
    ok=(200, CsrfAnswer),
    description=(
        "For a reloaded page or a new tab of a cookie-mode SPA: with the refresh cookie alone "
        "(no X-CSRF-TOKEN needed), answers the session's csrf_token, which stays the same "
        "across refreshes. 401 without a live refresh cookie. Never cached; cross-origin, only "
        "allowlisted origins can read it."
    ),
)
def get_csrf() -> CsrfAnswer:
    """Give a page that holds only the cookie its session's CSRF value back."""
    return CsrfAnswer(csrf_token=csrf_token_for(principal().session_id))


@bp.post("/logout")
@operation(
    "End this session",
    tags=TAGS,
    auth="access_or_cookie",
    ok=(204, None),
    headers={"X-CSRF-TOKEN": CSRF_HEADER_DOC},
    response_headers={
        "Set-Cookie": (
            "When the request carried the refresh cookie: clears it (taskapi_refresh=; "
            "Path=/api/v1/auth; Max-Age=0)"
        )
    },
    description=(
        "Ends the session of the refresh cookie when the request carries one (then X-CSRF-TOKEN "
        "must match, and the cookie is cleared), else the access token's session. With the "
        "cookie and the header, no access token is needed: logout works after it expired."
    ),
)
def logout() -> Reply:
    """Revoke the caller's session; a cookie-mode caller's cookie is cleared too."""
    caller = principal()
    if service.revoke_session(
        db_session(), session_id=caller.session_id, user_id=caller.user_id, now=utcnow()
    ):
        metrics.session_revoked("logout")
    had_cookie = REFRESH_COOKIE_NAME in request.cookies
    return Reply(finish=unset_refresh_cookies if had_cookie else None)


@bp.post("/logout-all")
@operation("End every session of this user", tags=TAGS, ok=(204, None))
def logout_all() -> None:
    """Revoke every session of the current user, this one included."""
    service.revoke_all_sessions(db_session(), user_id=principal().user_id, now=utcnow())
    metrics.session_revoked("logout_all")


@bp.get("/me")
@operation("The current user", tags=TAGS, ok=(200, UserPublic))
def get_me() -> object:
    """Return the authenticated user."""
    return service.get_user(db_session(), user_id=principal().user_id)


@bp.patch("/me")
@operation(
    "Change the display name",
    tags=TAGS,
    body=UpdateMeBody,
    ok=(200, UserPublic),
    media_types=PATCH_TYPES,
)
def update_me(body: UpdateMeBody) -> object:
    """Update the authenticated user's name."""
    return service.update_name(db_session(), user_id=principal().user_id, name=body.name)


@bp.post("/password")
@operation(
    "Change the password",
    tags=TAGS,
    body=PasswordChangeBody,
    ok=(204, None),
    errors={403: ("invalid_credentials",)},
    description=(
        "Every other session is revoked; this one lives on. A wrong current_password is 403 "
        "invalid_credentials (not 401: the token is fine) and counts against the same failure "
        "budgets as a failed login."
    ),
)
def change_password(body: PasswordChangeBody) -> None:
    """Verify the current password, set the new one and end every other session."""
    caller, db = principal(), db_session()
    email = service.email_of(db, user_id=caller.user_id)
    with state().password_guard.attempt(email, user_id=str(caller.user_id)):
        service.change_password(
            db,
            user_id=caller.user_id,
            session_id=caller.session_id,
            current_password=body.current_password,
            new_password=body.new_password,
            rounds=settings().bcrypt_rounds,
            now=utcnow(),
            notice=notices.password_changed(mail_context(), email),
        )


def _password_check(user_id: uuid.UUID) -> AbstractContextManager[None]:
    """The budgets of a signed-in user's password re-check (per user, address and email)."""
    email = service.email_of(db_session(), user_id=user_id)
    return state().password_guard.attempt(email, user_id=str(user_id))


@bp.delete("/me")
@operation(
    "Delete the account",
    tags=TAGS,
    body=DeleteMeBody,
    ok=(204, None),
    errors={403: ("invalid_credentials",)},
    description=(
        "Deletes the user, their tasks and sessions. A wrong password is 403 "
        "invalid_credentials and counts against the login failure budgets."
    ),
)
def delete_me(body: DeleteMeBody) -> None:
    """Delete the user with every task and session, after checking the password."""
    user_id = principal().user_id
    with _password_check(user_id):
        service.delete_account(db_session(), user_id=user_id, password=body.password)


@bp.get("/sessions")
@operation(
    "This user's active sessions",
    tags=TAGS,
    query=SessionListQuery,
    ok=(200, SessionPage),
    description="Newest first, keyset-paginated like every collection.",
)
def list_sessions(query: SessionListQuery) -> SessionPage:
    """One page of the live sessions, marking the current one."""
    caller = principal()
    page = service.list_sessions(
        db_session(),
        user_id=caller.user_id,
        now=utcnow(),
        limit=query.limit,
        cursor=query.cursor,
        key=token_key(),
    )
    items = [
        SessionPublic(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            user_agent=row.user_agent,
            current=row.id == caller.session_id,
        )
        for row in page.items
    ]
    return SessionPage(items=items, next_cursor=page.next_cursor)


@bp.delete("/sessions/<session_id>")
@operation("End one session", tags=TAGS, ok=(204, None), errors=(404,))
def delete_session(session_id: str) -> None:
    """Revoke one of this user's sessions; anyone else's is not found."""
    sid = parse_id(session_id)
    if not service.revoke_session(
        db_session(), session_id=sid, user_id=principal().user_id, now=utcnow()
    ):
        raise NotFound()
    metrics.session_revoked("session_delete")
