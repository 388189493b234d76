"""Hot paths stay lean: a task by id and a page of tasks are each one statement, the session
check folded into it; plain writes on PostgreSQL are the session check and one statement."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from taskapi.api.deps import state
from taskapi.db import driver_rows
from taskapi.services import listing
from taskapi.services import tasks as tasks_service
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


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tasks?limit=5", "/api/v1/tasks?limit=5&cursor={cursor}",
     "/api/v1/tasks?limit=5&sort=due_at&cursor={cursor}", "/api/v1/tasks?limit=5&q=t1"],
)  # fmt: skip
def test_a_page_is_one_statement(app: Flask, alice: User, path: str) -> None:
    """The session check and the page in one statement, on any page and sort, with no OFFSET
    pagination."""
    for i in range(12):
        alice.create_task(title=f"t{i}", due_at=f"2027-01-{i + 1:02d}T00:00:00Z" if i % 2 else None)
    sort = "&sort=due_at" if "due_at" in path else ""
    cursor = alice.request("GET", f"/api/v1/tasks?limit=5{sort}").json["next_cursor"]
    url = path.format(cursor=cursor)
    expected = alice.request("GET", url).json
    with counted_statements(app) as statements:
        answer = alice.request("GET", url)
    assert answer.status_code == 200 and answer.json["items"] == expected["items"]
    assert expected["items"] and (answer.json["next_cursor"] is None) == (
        expected["next_cursor"] is None)  # fmt: skip
    assert len(statements) == 1, statements
    assert "sessions" in statements[0] and "tasks" in statements[0]
    assert "SKIPPED" not in " ".join(statements)
    if "postgresql" in str(engine_of(app).url):
        assert "OFFSET" not in " ".join(statements).upper()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/v1/tasks?limit=0", 400), ("/api/v1/tasks?cursor=forged", 400),
     ("/api/v1/tasks?sort=position", 400)],
)  # fmt: skip
def test_a_refused_listing_is_checked_the_usual_way(
    app: Flask, alice: User, path: str, status: int
) -> None:
    """A query the view refuses is not folded: the session check alone, then the 400."""
    with counted_statements(app) as statements:
        answer = alice.request("GET", path)
    assert answer.status_code == status and answer.json["code"] == "validation_error"
    assert len(statements) == 1 and "tasks" not in statements[0].split("FROM", 1)[1], statements


def test_a_lists_page_looks_the_list_up_first(app: Flask, alice: User) -> None:
    """A page of one list: the session check, the list's ownership, then the page."""
    task = alice.create_task(title="t")
    with counted_statements(app) as statements:
        answer = alice.request("GET", f"/api/v1/tasks?list_id={task['list_id']}")
    assert answer.status_code == 200 and answer.json["items"][0]["id"] == task["id"]
    assert len(statements) == 3, statements


def test_listing_has_no_n_plus_one(app: Flask, alice: User) -> None:
    """A page of 50 tasks with tags is still one statement."""
    for i in range(50):
        alice.create_task(title=f"t{i}", tags=["a", "b"])
    with counted_statements(app) as statements:
        answer = alice.request("GET", "/api/v1/tasks?limit=50")
    assert len(answer.json["items"]) == 50
    assert len(statements) == 1


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


def test_a_patch_with_if_match_is_one_statement_on_postgresql(
    app: Flask, alice: User, database_url: str
) -> None:
    """If-Match naming several versions is one statement too (the versions are one bound
    array); none of them current: the general path answers 412."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no data-modifying CTEs: its writes take the general path")
    path = f"/api/v1/tasks/{alice.create_task(title='t')['id']}"
    with sent_statements(app) as sent:
        answer = alice.request("PATCH", path, json={"notes": "x"}, headers={"If-Match": '"7", "1"'})
    assert answer.status_code == 200 and answer.json["version"] == 2
    assert [statement.split()[0] for statement, _, _ in sent] == ["SELECT", "WITH"], sent
    stale = alice.request("PATCH", path, json={"notes": "y"}, headers={"If-Match": '"1", "3"'})
    assert stale.status_code == 412
    assert alice.request("GET", path).json["notes"] == "x"


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


@pytest.mark.parametrize(
    "sort", ["-created_at", "created_at", "due_at", "-due_at", "title", "-priority", "updated_at"]
)
def test_a_folded_page_is_the_page_read_the_usual_way(alice: User, sort: str) -> None:
    """Every page, walked with a session (the page read with the session check) and with a
    personal token (read on its own), holds the same tasks in the same order."""
    for i in range(14):
        due = f"2027-01-{i % 4 + 1:02d}T00:00:00Z" if i % 3 else None
        alice.create_task(title=f"t{i % 5}", priority=["none", "low", "high"][i % 3], due_at=due)
    made = alice.request(
        "POST", "/api/v1/auth/tokens", json={"name": "r", "scopes": ["tasks:read"]}
    )
    token = {"Authorization": f"Bearer {made.json['token']}"}

    def walk(send: Any) -> list[str]:
        seen, cursor = [], None
        while True:
            query = {"limit": "4", "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = send(query).json
            seen += [task["id"] for task in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    folded = walk(lambda query: alice.request("GET", "/api/v1/tasks", query_string=query))
    usual = walk(lambda query: alice.client.get("/api/v1/tasks", query_string=query,
                                                headers=token))  # fmt: skip
    assert len(folded) == 14 and folded == usual


@pytest.mark.parametrize("filters", [{}, {"tag": "home", "completed": False}, {"q": "a/b%"}])
@pytest.mark.parametrize("sort", ["-created_at", "due_at", "title"])
def test_driver_reads_answer_what_sqlalchemy_answers(
    app: Flask, alice: User, filters: dict[str, Any], sort: str, is_postgres: bool
) -> None:
    """Hot reads run through the driver's cursor on PostgreSQL (``db.driver_rows``): their rows
    equal SQLAlchemy's own execution of the same statement, every column and type, for
    tasks with every field set and unset."""
    if not is_postgres:
        pytest.skip("SQLite's reads run through SQLAlchemy")
    parent = alice.create_task(title="a/b% parent", tags=["home", "x"], priority="high",
                               due_at="2026-12-01T09:00:00.5Z", recurrence="FREQ=DAILY",
                               timezone="Europe/Berlin")  # fmt: skip
    alice.create_task(title="child", parent_id=parent["id"], notes="n")
    alice.create_task(title="done", completed=True, tags=["home"])
    alice.create_task(title="plain")
    owner = uuid.UUID(alice.id)
    task_filters = listing.TaskFilters(**filters)
    with app.app_context():
        session = state().session_factory()
        try:
            dialect = session.get_bind().dialect.name
            params = {**listing._parameters(task_filters, owner, dialect), "p_limit": 10}
            shape = listing._Shape(dialect, sort, frozenset(k for k in filters if k != "completed"),
                                   filters.get("completed"), None, False)  # fmt: skip
            for statement, values in [
                (listing._statement(shape), params),
                (tasks_service._TASK_ROW, {"tid": uuid.UUID(parent["id"]), "uid": owner}),
            ]:
                by_sqlalchemy = [
                    tuple(row) for row in session.connection().execute(statement, values)
                ]
                assert by_sqlalchemy, "the statement should find rows to compare"
                assert [
                    tuple(row) for row in driver_rows(session, statement, values)
                ] == by_sqlalchemy
        finally:
            session.close()
