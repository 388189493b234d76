"""SQLite (the embedded default): reads never take the write lock, and bcrypt runs outside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from taskapi.services import auth as auth_service
from tests.conftest import PASSWORD, User, login, unique_email
from tests.support import engine_of


@pytest.fixture
def sqlite_path(database_url: str) -> str:
    """The database file of this run; PostgreSQL runs are skipped (row locks instead)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite locking only")
    return database_url.removeprefix("sqlite:///")


def write_lock_is_free(path: str) -> bool:
    """Whether another connection could start writing right now."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


@pytest.fixture
def begins(app: Flask) -> Iterator[list[str]]:
    """The BEGIN statements the app issues."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            seen.append(statement)

    engine = engine_of(app)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_reads_begin_deferred(sqlite_path: str, alice: User, begins: list[str]) -> None:
    """Authenticated reads use plain BEGIN, so they run beside a writer."""
    task = alice.create_task()
    begins.clear()
    for path in ("/api/v1/tasks", f"/api/v1/tasks/{task['id']}", "/api/v1/auth/me"):
        assert alice.request("GET", path).status_code == 200
    assert begins
    assert set(begins) == {"BEGIN"}


def test_writes_take_the_lock_up_front(sqlite_path: str, alice: User, begins: list[str]) -> None:
    """A write begins IMMEDIATE, so it waits for the lock instead of failing mid-way."""
    begins.clear()
    alice.create_task()
    assert "BEGIN IMMEDIATE" in begins


def test_bcrypt_runs_without_the_write_lock(
    sqlite_path: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Register, login and password change hash and check passwords with the lock free."""
    observed: list[bool] = []

    def probing(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            observed.append(write_lock_is_free(sqlite_path))
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(auth_service, "hash_password", probing(auth_service.hash_password))
    monkeypatch.setattr(auth_service, "verify_password", probing(auth_service.verify_password))
    email = unique_email()
    assert (
        client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        ).status_code
        == 201
    )
    token = login(client, email).json["access_token"]
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": PASSWORD + "!"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert changed.status_code == 204
    assert len(observed) == 4  # register hash, login check, password check and new hash
    assert all(observed)
