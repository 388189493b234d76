"""Helpers for tests that work through HTTP and the database only, never through services.

``engine_of`` is the one place that knows where the app keeps its engine. The tables below
describe only the columns these tests read or move, so they do not depend on ``taskapi.models``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    DateTime,
    Engine,
    String,
    TableClause,
    column,
    select,
    table,
    update,
)
from sqlalchemy import Uuid as UuidType

AUTH = "/api/v1/auth"
TASKS = "/api/v1/tasks"
ERROR_KEYS = {"error", "code", "details"}
Timestamp = DateTime(timezone=True)

SESSIONS = table(
    "sessions",
    column("id", UuidType),
    column("user_id", UuidType),
    column("rotated_at", Timestamp),
    column("expires_at", Timestamp),
    column("revoked_at", Timestamp),
)
IDEMPOTENCY_KEYS = table(
    "idempotency_keys",
    column("owner_id", UuidType),
    column("key", String),
    column("created_at", Timestamp),
)
TOMBSTONES = table(
    "task_tombstones",
    column("id", UuidType),
    column("owner_id", UuidType),
    column("deleted_at", Timestamp),
)


# --- the database ----------------------------------------------------------------------------


def engine_of(app: Flask) -> Engine:
    """The app's SQLAlchemy engine (the only line that knows where the app keeps it)."""
    engine: Engine = app.extensions["taskapi"].engine
    return engine


def shift_back(
    app: Flask, moved: ColumnClause[Any], by: timedelta, where: ColumnElement[bool]
) -> None:
    """``UPDATE t SET moved = moved - by WHERE where``, for exactly one row.

    Read, then written in one transaction: SQLite cannot subtract an interval from the
    text SQLAlchemy stores, and a bound value is written the way the app writes its own.
    """
    owner = moved.table
    assert isinstance(owner, TableClause)
    with engine_of(app).begin() as connection:
        values = connection.execute(select(moved).where(where)).scalars().all()
        assert len(values) == 1, f"expected one {owner.name} row to move, found {len(values)}"
        connection.execute(update(owner).where(where).values({moved.name: values[0] - by}))


def rows(app: Flask, *columns: ColumnClause[Any]) -> set[tuple[Any, ...]]:
    """Every row of one table, as tuples of the given columns."""
    with engine_of(app).connect() as connection:
        return {tuple(row) for row in connection.execute(select(*columns))}


# --- HTTP ------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    """An Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def cors_headers(response: Any) -> dict[str, str]:
    """Every Access-Control-* header of a response."""
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def refresh(client: FlaskClient, refresh_token: str) -> Any:
    """POST /auth/refresh in body mode (the refresh token as Bearer)."""
    return client.post(f"{AUTH}/refresh", headers=bearer(refresh_token))


def me(client: FlaskClient, access_token: str) -> Any:
    """GET /auth/me with an access token."""
    return client.get(f"{AUTH}/me", headers=bearer(access_token))


def current_session_id(client: FlaskClient, access_token: str) -> uuid.UUID:
    """The id of the session an access token belongs to, from GET /auth/sessions."""
    answer = client.get(f"{AUTH}/sessions", headers=bearer(access_token))
    body = answer.get_json()
    assert answer.status_code == 200 and isinstance(body, dict), body
    (current,) = [item["id"] for item in body["items"] if item["current"]]
    return uuid.UUID(current)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The contract's error body with this status and code: JSON, never HTML or a trace.

    ``details`` is there exactly for validation errors, as a list of ``{field, message}``.
    Takes a Flask test response or a ``requests`` response.
    """
    text = response.text
    assert response.status_code == status, (response.status_code, text)
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media_type == "application/json", (media_type, text)
    assert "Traceback" not in text and 'File "' not in text, text
    body = json.loads(text)
    assert isinstance(body, dict) and {"error", "code"} <= set(body) <= ERROR_KEYS, body
    assert body["code"] == code and isinstance(body["error"], str) and body["error"], body
    assert ("details" in body) == (code == "validation_error"), body
    if code == "validation_error":
        assert isinstance(body["details"], list) and body["details"], body
        for detail in body["details"]:
            assert set(detail) == {"field", "message"}, detail
            assert isinstance(detail["field"], str) and isinstance(detail["message"], str)
    return body


def assert_429(response: Any, *, max_wait: int | None = None) -> None:
    """429 rate_limited with a whole-second Retry-After of at least 1 (at most ``max_wait``).

    Takes a Flask test response or a ``requests`` response.
    """
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    if max_wait is not None:
        assert int(retry_after) <= max_wait, retry_after
    assert response.headers.get("X-Request-ID")


# --- delta sync ------------------------------------------------------------------------------


def apply(store: dict[str, Any], page: dict[str, Any], lists: dict[str, Any] | None = None) -> None:
    """Apply one page of changes to a client-side store of tasks (and of ``lists``, when
    given), checking each entry's shape."""
    page_ids = [c["id"] for c in page["changes"]]
    assert len(page_ids) == len(set(page_ids)), "an item appears twice in one page"
    for change in page["changes"]:
        kind = change["type"]
        target = store if kind == "task" else lists if lists is not None else {}
        if change["deleted"]:
            assert change == {"id": change["id"], "type": kind, "deleted": True}
            target.pop(change["id"], None)
        else:
            assert set(change) == {"id", "type", "deleted", kind}, change
            assert change[kind]["id"] == change["id"]
            target[change["id"]] = change[kind]


# --- the command line ------------------------------------------------------------------------


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, umask: int | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``taskapi`` as a process with only the given TASKAPI_* variables set (and ``umask``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    return subprocess.run(
        [sys.executable, "-m", "taskapi.cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
        check=False,
        preexec_fn=None if umask is None else partial(os.umask, umask),
    )
