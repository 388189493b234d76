"""Models of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"]
    timestamp: str


class Checks(BaseModel):
    """Per-dependency readiness."""

    database: Literal["ok", "error"]
    redis: Literal["ok", "error", "not_configured"]


class Readiness(BaseModel):
    """Readiness answer; ``error`` and ``code`` appear with status ``error`` (503)."""

    status: Literal["ok", "error"]
    checks: Checks
    error: str | None = None
    code: str | None = None
