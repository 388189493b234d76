"""Per-request resources views share: the database session and the settings."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, g
from sqlalchemy.orm import Session

from taskapi.db import utcnow
from taskapi.services import auth as auth_service
from taskapi.settings import Settings


def settings() -> Settings:
    """The settings the app was created with."""
    return current_app.extensions["taskapi"]["settings"]  # type: ignore[no-any-return]


def db_session() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    session: Session | None = g.get("db_session")
    if session is None:
        factory: Any = current_app.extensions["taskapi"]["session_factory"]
        session = g.db_session = factory()
    return session


def session_revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
    """One primary-key lookup per authenticated request: has the token's session ended?"""
    try:
        session_id = uuid.UUID(str(claims.get("sid")))
        user_id = uuid.UUID(str(claims.get("sub")))
    except ValueError:
        return True
    g.user_id = str(user_id)  # for the access log
    return not auth_service.session_is_live(
        db_session(), session_id=session_id, user_id=user_id, now=utcnow()
    )


def close_db_session(_exc: BaseException | None = None) -> None:
    """Teardown: roll back anything uncommitted and return the connection to the pool."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
