"""What views share: the app's typed state, the request's database session and caller."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from taskapi.db import session_has_written, utcnow
from taskapi.limits import Counters, PasswordGuard
from taskapi.services import auth as auth_service
from taskapi.services import tokens as tokens_service
from taskapi.settings import Settings

T = TypeVar("T")


@dataclass
class AppState:
    """Everything ``create_app`` wires, kept on ``app.extensions["taskapi"]``."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    counters: Counters
    password_guard: PasswordGuard
    redis_probe: Callable[[], bool] | None = None
    openapi: dict[str, Any] | None = None


def state() -> AppState:
    """The current app's state."""
    found: AppState = current_app.extensions["taskapi"]
    return found


def settings() -> Settings:
    """The settings the app was created with."""
    return state().settings


def token_key() -> bytes:
    """The secret that cursors and sync tokens are sealed with (per purpose, see cursors)."""
    return state().settings.secret_key.encode()


def db_session() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = g.db_session = state().session_factory()
    return session


class DatabaseChecks:
    """The caller's one lookup before the view (``security.CallerChecks``).

    It is the request's first statement, so it is where a pooled connection that died (a
    database restart) shows: it is retried once on a fresh one.
    """

    def session(self, session_id: uuid.UUID, user_id: uuid.UUID) -> auth_service.SessionCheck:
        """One primary-key lookup: is the token's session alive?"""
        return once_more_if_the_connection_died(
            lambda: auth_service.session_is_live(
                db_session(), session_id=session_id, user_id=user_id, now=utcnow()
            )
        )

    def token(self, secret: str) -> tokens_service.TokenCheck | None:
        """One indexed lookup of a personal token; its use is recorded at most once a minute."""
        now = utcnow()
        check = once_more_if_the_connection_died(
            lambda: tokens_service.check(db_session(), token=secret, now=now)
        )
        if check is not None and check.needs_touch and not check.expired:
            tokens_service.touch(db_session(), token_id=check.token_id, now=now)
        return check


CALLER_CHECKS = DatabaseChecks()

# A route's read folded into its caller's session check: given the request's database
# session, the token's session and user ids, the time and the path's arguments, it answers
# the session check and the route's data together (one statement, one round trip).
FoldedRead = Callable[
    [Session, uuid.UUID, uuid.UUID, datetime, dict[str, Any]], tuple[auth_service.SessionCheck, Any]
]
NOT_FOLDED = object()


class FoldingChecks(DatabaseChecks):
    """The caller's checks for a route that declares a folded read: a session token's check
    also reads the route's data, which the view takes with ``folded_data()``. A personal
    token is checked as anywhere else, and its view reads its data itself."""

    def __init__(self, read: FoldedRead, args: dict[str, Any]) -> None:
        self.read, self.args = read, args

    def session(self, session_id: uuid.UUID, user_id: uuid.UUID) -> auth_service.SessionCheck:
        """The session check and the route's data, in one round trip."""
        check, g.folded_data = once_more_if_the_connection_died(
            lambda: self.read(db_session(), session_id, user_id, utcnow(), self.args)
        )
        return check


def folded_data() -> Any:
    """What this request's folded read found (``NOT_FOLDED`` when none ran: the caller used a
    personal token, or the route folds nothing)."""
    return g.pop("folded_data", NOT_FOLDED)


def once_more_if_the_connection_died(call: Callable[[], T]) -> T:
    """Run ``call``; if a pooled connection turned out dead (the database restarted), the pool
    now reconnects, so run it once more on a fresh session, provided nothing was written."""
    try:
        return call()
    except DBAPIError as error:
        if not error.connection_invalidated or started_writing():
            raise
        close_db_session()
        return call()


def started_writing() -> bool:
    """Whether this request's database session has begun a unit of work."""
    session: Session | None = g.get("db_session")
    return session is not None and session_has_written(session)


def close_db_session(_exc: BaseException | None = None) -> None:
    """Teardown: roll back anything uncommitted and return the connection to the pool."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
