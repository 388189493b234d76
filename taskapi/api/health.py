"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text

from taskapi import mail
from taskapi.api.deps import db_session, settings, state
from taskapi.api.operation import Reply, operation
from taskapi.db import utcnow
from taskapi.schemas.health import Health, Readiness

bp = Blueprint("health", __name__, url_prefix="/api")
TAGS = ("health",)


@bp.get("/health")
@operation(
    "Liveness: the process answers",
    tags=TAGS,
    auth=None,
    ok=(200, Health),
    rate_limited=False,
    uses_database=False,
)
def health() -> Health:
    """Answer without touching the database."""
    return Health(status="ok", timestamp=utcnow())


def _check_database() -> str:
    """``ok`` when a trivial query succeeds."""
    try:
        db_session().execute(text("SELECT 1"))
    except Exception:  # any failure means not ready; the reason is logged by the caller
        current_app.logger.warning("readiness: database check failed", exc_info=True)
        return "error"
    return "ok"


def _mail_backlog() -> tuple[str, dict[str, Any] | None]:
    """The mail check and the outbox backlog; a backlog is reported, never a failure."""
    try:
        found = mail.backlog(db_session(), now=utcnow())
    except Exception:  # reported as "error"; readiness rests on the database check alone
        current_app.logger.warning("readiness: outbox check failed", exc_info=True)
        return "error", None
    age = found.oldest_age_seconds
    delayed = age is not None and age > mail.DELAYED_AFTER_SECONDS
    outbox = {"pending": found.pending, "oldest_age_seconds": age}
    return ("delayed" if delayed else "ok"), outbox


def _check_redis() -> str:
    """``ok``, ``error`` or ``not_configured`` for the rate-limit store."""
    probe = state().redis_probe
    if probe is None:
        return "not_configured"
    return "ok" if probe() else "error"


@bp.get("/ready")
@operation(
    "Readiness: the database (and Redis if required) answer",
    tags=TAGS,
    auth=None,
    ok=(200, Readiness),
    alternatives={503: Readiness},
    rate_limited=False,
)
def ready() -> Reply:
    """200 when dependencies answer; 503 when the database (or a required Redis) does not."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    outbox = None
    if checks["database"] == "ok":
        checks["mail"], outbox = _mail_backlog()
    else:
        checks["mail"] = "error"
    failed = checks["database"] == "error" or (
        checks["redis"] == "error" and settings().redis_required
    )
    if not failed:
        return Reply({"status": "ok", "checks": checks, "outbox": outbox})
    body: dict[str, Any] = {
        "status": "error",
        "checks": checks,
        "outbox": outbox,
        "error": "A required dependency is unavailable.",
        "code": "unavailable",
    }
    return Reply(body, 503)
