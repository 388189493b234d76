"""Models of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from taskapi.schemas.common import Timestamp


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"]
    timestamp: Timestamp


class Checks(BaseModel):
    """Per-dependency readiness."""

    database: Literal["ok", "error"]
    redis: Literal["ok", "error", "not_configured"]


class Readiness(BaseModel):
    """Readiness answer; ``error`` and ``code`` appear with status ``error`` (503)."""

    status: Literal["ok", "error"]
    checks: Checks
    error: str | None = Field(default=None, exclude_if=lambda value: value is None)
    code: str | None = Field(default=None, exclude_if=lambda value: value is None)
