"""Hot paths stay lean: an authenticated read is the session check plus one data query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from tests.conftest import User
from tests.support import engine_of


@contextmanager
def counted_statements(app: Flask) -> Iterator[list[str]]:
    """Collect the SQL statements the app's engine runs (BEGIN/COMMIT excluded).

    SQLite's dialect always renders ``LIMIT ? OFFSET ?``; a non-zero offset is recorded as
    the word ``SKIPPED`` so that the tests can tell real OFFSET pagination apart.
    """
    engine = engine_of(app)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        if statement.split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            skipped = "OFFSET" in statement.upper() and params and params[-1] != 0
            statements.append(statement + (" SKIPPED" if skipped else ""))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tasks/{id}", "/api/v1/tasks?limit=5", "/api/v1/tasks?limit=5&cursor={cursor}"],
)
def test_authenticated_reads_take_two_queries(app: Flask, alice: User, path: str) -> None:
    """One primary-key lookup of the session plus one query for the data, on any page."""
    tasks = [alice.create_task(title=f"t{i}") for i in range(12)]
    cursor = alice.request("GET", "/api/v1/tasks?limit=5").json["next_cursor"]
    url = path.format(id=tasks[0]["id"], cursor=cursor)
    with counted_statements(app) as statements:
        answer = alice.request("GET", url)
    assert answer.status_code == 200
    assert len(statements) == 2, statements
    assert "sessions" in statements[0]
    assert "SKIPPED" not in " ".join(statements)
    if "postgresql" in str(engine_of(app).url):
        assert "OFFSET" not in " ".join(statements).upper()


def test_listing_has_no_n_plus_one(app: Flask, alice: User) -> None:
    """A page of 50 tasks with tags is still two statements."""
    for i in range(50):
        alice.create_task(title=f"t{i}", tags=["a", "b"])
    with counted_statements(app) as statements:
        answer = alice.request("GET", "/api/v1/tasks?limit=50")
    assert len(answer.json["items"]) == 50
    assert len(statements) == 2
