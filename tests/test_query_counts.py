"""Hot paths stay lean: a task by id is one statement (the session check folded into it); a
page is the session check plus one data query."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize("found", [True, False])
def test_a_task_by_id_is_one_statement(app: Flask, alice: User, bob: User, found: bool) -> None:
    """The session check and the task in one round trip, whether the task is there or not
    (another user's task is the same 404, from the same statement)."""
    task = (alice if found else bob).create_task(title="mine" if found else "bob's")
    with counted_statements(app) as statements:
        answer = alice.request("GET", f"/api/v1/tasks/{task['id']}")
    assert answer.status_code == (200 if found else 404)
    assert len(statements) == 1, statements
    assert "sessions" in statements[0] and "tasks" in statements[0]


def test_a_personal_token_reads_a_task_in_two_statements(app: Flask, alice: User) -> None:
    """A personal token's lookup folds nothing: the token, then the task."""
    task = alice.create_task(title="t")
    scoped = {"name": "cli", "scopes": ["tasks:read"]}
    made = alice.request("POST", "/api/v1/auth/tokens", json=scoped)
    headers = {"Authorization": f"Bearer {made.json['token']}"}
    with counted_statements(app) as statements:
        answer = alice.client.get(f"/api/v1/tasks/{task['id']}", headers=headers)
    assert answer.status_code == 200 and answer.json == alice.request(
        "GET", f"/api/v1/tasks/{task['id']}").json  # fmt: skip
    reads = [statement for statement in statements if statement.lstrip().startswith("SELECT")]
    assert len(reads) == 2, statements


@pytest.mark.parametrize("path", ["/api/v1/tasks?limit=5", "/api/v1/tasks?limit=5&cursor={cursor}"])
def test_pages_take_two_queries(app: Flask, alice: User, path: str) -> None:
    """One primary-key lookup of the session plus one query for the data, on any page."""
    for i in range(12):
        alice.create_task(title=f"t{i}")
    cursor = alice.request("GET", "/api/v1/tasks?limit=5").json["next_cursor"]
    url = path.format(cursor=cursor)
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


@contextmanager
def sent_statements(app: Flask) -> Iterator[list[tuple[str, Any, bool]]]:
    """Every statement the app's engine sends, its parameters, and whether the connection was
    in autocommit (psycopg sends a BEGIN before a statement otherwise)."""
    engine = engine_of(app)
    sent: list[tuple[str, Any, bool]] = []

    def record(conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        sent.append((statement, params, conn.connection.driver_connection.autocommit))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _owner_sets(statement: str) -> list[str]:
    """The columns the statement's owner CTE writes (SQLAlchemy would add a SET for every
    execution parameter named like a users column: the statements' parameters never are)."""
    found = re.search(r"UPDATE users SET (.*?) WHERE", statement, re.DOTALL)
    assert found is not None, statement
    return re.findall(r"(\w+)=", found.group(1))


def test_a_plain_patch_is_one_statement_on_postgresql(
    app: Flask, alice: User, database_url: str
) -> None:
    """Changing plain fields is the session check and one autocommit statement that takes
    the owner's row (and change number) before the task's, as every write does."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no data-modifying CTEs: its writes take the general path")
    task = alice.create_task(title="t")
    with sent_statements(app) as sent:
        answer = alice.request("PATCH", f"/api/v1/tasks/{task['id']}",
                               json={"completed": True, "title": "u"})  # fmt: skip
    assert answer.status_code == 200 and answer.json["version"] == 2
    assert answer.json["completed_at"] is not None and answer.json["title"] == "u"
    assert [(statement.split()[0], autocommit) for statement, _, autocommit in sent] == [
        ("SELECT", True), ("WITH", True)], sent  # fmt: skip
    statement, params, _ = sent[1]
    assert _owner_sets(statement) == ["change_seq"]
    with engine_of(app).connect() as connection:
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement,
                                                                      params))  # fmt: skip
    # The owner's UPDATE is an init plan checked once, before the tasks scan locks a row.
    tasks_scan = re.search(r"Scan .*on tasks", plan)
    assert tasks_scan is not None and "One-Time Filter" in plan, plan
    assert plan.index("One-Time Filter") < tasks_scan.start(), plan


def test_a_patch_the_one_statement_cannot_take_is_still_answered(
    app: Flask, alice: User, bob: User
) -> None:
    """A recurring task, another version, another user's task: the general path answers."""
    recurring = alice.create_task(title="r", due_at="2027-01-01T09:00:00Z",
                                  recurrence="FREQ=DAILY")  # fmt: skip
    path = f"/api/v1/tasks/{recurring['id']}"
    done = alice.request("PATCH", path, json={"completed": True})
    assert done.status_code == 200 and done.json["next_occurrence_id"] is not None
    stale = alice.request("PATCH", path, json={"notes": "x"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert bob.request("PATCH", path, json={"notes": "x"}).status_code == 404
    assert alice.request("GET", path).json["version"] == 2


def test_a_plain_create_is_two_statements_on_postgresql(
    app: Flask, alice: User, database_url: str
) -> None:
    """A create in the inbox: the session check reads the inbox's first position, then one
    autocommit statement takes the owner's row (change number and quota) and inserts the
    task first in the inbox."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no data-modifying CTEs: its writes take the general path")
    older = alice.create_task(title="older")
    with sent_statements(app) as sent:
        answer = alice.request("POST", "/api/v1/tasks", json={"title": "new", "completed": True})
    assert answer.status_code == 201 and answer.json["completed_at"] is not None
    assert [(statement.split()[0], autocommit) for statement, _, autocommit in sent] == [
        ("SELECT", True), ("WITH", True)], sent  # fmt: skip
    assert "sessions" in sent[0][0] and "lists" in sent[0][0]
    assert _owner_sets(sent[1][0]) == ["change_seq", "task_count"]
    assert answer.json["position"] < older["position"]
    inbox = alice.request("GET", f"/api/v1/lists/{older['list_id']}/tasks").json["items"]
    assert [task["title"] for task in inbox] == ["new", "older"]


def test_creates_the_one_statement_cannot_take_are_still_answered(
    make_app: Any, make_user: Any, database_url: str
) -> None:
    """At the quota the one statement inserts nothing and the general path answers 409; a
    personal token, whose check reads no inbox, creates first in the inbox too."""
    app = make_app(max_tasks_per_user=2)
    user = make_user(on=app.test_client())
    first = user.create_task(title="one")
    made = user.request("POST", "/api/v1/auth/tokens",
                        json={"name": "cli", "scopes": ["tasks:write"]})  # fmt: skip
    token = {"Authorization": f"Bearer {made.json['token']}"}
    second = user.client.post("/api/v1/tasks", json={"title": "two"}, headers=token)
    assert second.status_code == 201 and second.json["position"] < first["position"]
    refused = user.request("POST", "/api/v1/tasks", json={"title": "three"})
    assert refused.status_code == 409 and refused.json["code"] == "quota_exceeded"
    assert len(user.request("GET", "/api/v1/tasks").json["items"]) == 2
