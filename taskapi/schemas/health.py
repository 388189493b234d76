"""Models of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from taskapi.schemas.common import PublicModel, Timestamp, omitted_when_none


class Health(PublicModel):
    """Liveness answer."""

    status: Literal["ok"]
    timestamp: Timestamp


class Checks(PublicModel):
    """Per-dependency readiness."""

    database: Literal["ok", "error"]
    redis: Literal["ok", "error", "not_configured"]
    mail: Literal["ok", "delayed", "error"] = Field(
        description="Never fails readiness. delayed: a message has waited over 5 minutes "
        "(mail server down, or no sender running); error: the outbox could not be read"
    )


class Outbox(PublicModel):
    """Mail waiting to be sent (neither sent nor refused for good)."""

    pending: int = Field(ge=0, description="Messages waiting to be sent")
    oldest_age_seconds: float | None = Field(
        ge=0, description="How long the oldest waiting message has waited; null when none waits"
    )


class Readiness(PublicModel):
    """Readiness answer; ``error`` and ``code`` appear with status ``error`` (503)."""

    status: Literal["ok", "error"]
    checks: Checks
    outbox: Outbox | None = omitted_when_none("The mail backlog; left out when unreadable")
    error: str | None = omitted_when_none("With status error: what failed")
    code: Literal["unavailable"] | None = omitted_when_none("With status error: unavailable")
