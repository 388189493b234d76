"""Every listing query has an index path on PostgreSQL: no sequential scan of ``tasks``.

The statements a listing runs are captured as the app sends them and explained with
sequential scans disabled: the planner then falls back to one only when no index can serve
the query. A test table is small, so without that setting the planner would rightly prefer
a sequential scan and the plan would say nothing about the indexes.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text

from tests.conftest import User
from tests.support import engine_of

SORTS = ["created_at", "-created_at", "updated_at", "due_at", "-due_at", "priority", "title"]
FILTERS: list[dict[str, str]] = [
    {}, {"completed": "true"}, {"priority": "high"}, {"tag": "home"}, {"q": "milk"},
    {"due_before": "2030-01-01T00:00:00Z"}, {"due_after": "2020-01-01T00:00:00Z"},
]  # fmt: skip


def _captured(app: Flask, alice: User, query: dict[str, str]) -> list[tuple[str, Any]]:
    """The SELECTs on tasks that one listing request sends."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM tasks" in statement:
            seen.append((statement, parameters))

    engine = engine_of(app)
    event.listen(engine, "before_cursor_execute", capture)
    try:
        answer = alice.request("GET", "/api/v1/tasks", query_string=query)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert answer.status_code == 200, answer.json
    return seen


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_listing_queries_use_an_index(
    app: Flask, alice: User, is_postgres: bool, sort: str, filters: dict[str, str]
) -> None:
    """The plan of each listing query reads tasks through an index."""
    if not is_postgres:
        pytest.skip("query plans are checked on PostgreSQL")
    alice.create_task(title="buy milk", tags=["home"], due_at="2026-12-01T09:00:00Z")
    statements = _captured(app, alice, {"limit": "10", "sort": sort, **filters})
    assert statements
    with engine_of(app).connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            plan = "\n".join(
                row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "Seq Scan on tasks" not in plan, plan


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({"tag": "home"}, "ix_tasks_tags_gin"),
        ({"q": "milk"}, "ix_tasks_title_trgm"),
    ],
)
def test_tag_and_text_filters_have_their_own_index(
    app: Flask, alice: User, is_postgres: bool, query: dict[str, str], index: str
) -> None:
    """The tag and q conditions as the app writes them can be answered by their GIN indexes
    alone (without the owner's index), so a rare tag or word is found without reading every
    task of a user who has a million."""
    if not is_postgres:
        pytest.skip("query plans are checked on PostgreSQL")
    alice.create_task(title="buy milk", tags=["home"])
    statement, parameters = _captured(app, alice, {"limit": "10", **query})[0]
    owner_free = statement.replace("tasks.owner_id = %(owner_id_1)s::UUID AND ", "")
    assert owner_free != statement, statement
    with engine_of(app).connect() as connection:
        for setting in ("enable_seqscan", "enable_indexscan"):
            connection.execute(text(f"SET {setting} = off"))
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql("EXPLAIN " + owner_free, parameters)
        )
    assert index in plan, plan
