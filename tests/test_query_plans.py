"""Every listing query has an index path on PostgreSQL: no sequential scan of ``tasks``.

The statements a listing runs are captured as the app sends them and explained with
sequential scans disabled: the planner then falls back to one only when no index can serve
the query. A test table is small, so without that setting the planner would rightly prefer
a sequential scan and the plan would say nothing about the indexes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, insert, text, update

from taskapi.models import Task, TaskList, TaskTombstone
from taskapi.models import User as UserRow
from taskapi.services.positions import spread
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
    owner_free = statement.replace("tasks.owner_id = %(p_owner)s::UUID AND ", "")
    assert owner_free != statement, statement
    # Top-level tasks only (the default): any index on top-level tasks could serve that part.
    top_level = owner_free.replace("tasks.parent_id IS NULL AND ", "")
    assert top_level != owner_free, owner_free
    owner_free = top_level
    with engine_of(app).connect() as connection:
        for setting in ("enable_seqscan", "enable_indexscan"):
            connection.execute(text(f"SET {setting} = off"))
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql("EXPLAIN " + owner_free, parameters)
        )
    assert index in plan, plan


# --- lists, manual order, subtasks and the changes feed ----------------------------------------

LIST_TASKS, SUBTASKS, EXTRA_LISTS = 400, 300, 150
NEIGHBOUR_TOMBSTONES = 3000


@dataclass(frozen=True)
class Seeded:
    """A user with a list of ``LIST_TASKS`` top-level tasks, a parent in it with ``SUBTASKS``
    subtasks, and ``EXTRA_LISTS`` more lists."""

    user: User
    list_id: str
    parent_id: str


@pytest.fixture
def seeded(app: Flask, alice: User, is_postgres: bool) -> Seeded:
    """Alice's rows, inserted directly (through HTTP this would take seconds), then ANALYZEd
    so that the planner weighs real row counts: the plans below are PostgreSQL's own choice,
    with no planner setting changed."""
    if not is_postgres:
        pytest.skip("query plans are checked on PostgreSQL")
    owner, now = uuid.UUID(alice.id), datetime.now(UTC)
    lists = [uuid.uuid4() for _ in range(EXTRA_LISTS)]
    parent = uuid.uuid4()
    seq = iter(range(10, 10**6))
    task = {"owner_id": owner, "title": "seeded", "notes": "", "completed": False,
            "priority": 0, "tags": [], "updated_at": now, "version": 1}  # fmt: skip
    rows = [{**task, "id": parent, "created_at": now, "list_id": lists[0], "parent_id": None,
             "position": "a0", "change_seq": next(seq)}]  # fmt: skip
    rows += [{**task, "id": uuid.uuid4(), "created_at": now - timedelta(seconds=i),
              "list_id": lists[0], "parent_id": None, "position": key, "change_seq": next(seq)}
             for i, key in enumerate(spread(LIST_TASKS - 1, "a0"))]  # fmt: skip
    rows += [{**task, "id": uuid.uuid4(), "created_at": now, "list_id": lists[0],
              "parent_id": parent, "position": key, "change_seq": next(seq)}
             for key in spread(SUBTASKS)]  # fmt: skip
    with engine_of(app).begin() as connection:
        connection.execute(insert(TaskList), [
            {"id": list_id, "owner_id": owner, "title": f"list {i}", "position": key,
             "inbox": False, "created_at": now, "updated_at": now, "version": 1,
             "change_seq": next(seq)}
            for i, (list_id, key) in enumerate(zip(lists, spread(EXTRA_LISTS, "a0"), strict=True))
        ])  # fmt: skip
        connection.execute(insert(Task), rows)
        connection.execute(
            update(UserRow).where(UserRow.id == owner)
            .values(change_seq=next(seq), task_count=len(rows))
        )  # fmt: skip
        # Someone else's deletions: the tombstone table must not be so small (as when this
        # test runs alone) that reading all of it beats its index, whatever ran before.
        neighbour = uuid.uuid4()
        connection.execute(insert(UserRow).values(
            id=neighbour, email=f"neighbour-{neighbour.hex}@example.com", password_hash="x",
            created_at=now, change_seq=NEIGHBOUR_TOMBSTONES))  # fmt: skip
        connection.execute(insert(TaskTombstone), [
            {"id": uuid.uuid4(), "kind": "task", "owner_id": neighbour, "deleted_at": now,
             "change_seq": i + 1} for i in range(NEIGHBOUR_TOMBSTONES)])  # fmt: skip
    with engine_of(app).connect() as connection:
        connection.execute(text("ANALYZE tasks"))
        connection.execute(text("ANALYZE lists"))
        connection.execute(text("ANALYZE task_tombstones"))
        connection.commit()
    return Seeded(alice, str(lists[0]), str(parent))


def _plans(
    app: Flask, user: User, path: str, query: dict[str, str], method: str = "GET", **body: Any
) -> tuple[Any, list[str]]:
    """The answer to one request, and the planner's own EXPLAIN of every SELECT it sent that
    reads tasks, lists or tombstones."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and any(
            f"FROM {table}" in statement for table in ("tasks", "lists", "task_tombstones")
        ):
            seen.append((statement, parameters))

    engine = engine_of(app)
    event.listen(engine, "before_cursor_execute", capture)
    try:
        answer = user.request(method, path, query_string=query, **body)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert answer.status_code in (200, 201), answer.json
    assert seen
    with engine.connect() as connection:
        plans = [
            "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + s, p))
            for s, p in seen
        ]
        # An index path exists for every statement (the lists table is small here, so for a
        # lookup by id the planner rightly prefers reading its few pages).
        connection.execute(text("SET enable_seqscan = off"))
        for statement, parameters in seen:
            plan = "\n".join(
                row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "Seq Scan" not in plan, plan
    return answer.json, plans


def _page_plan(plans: list[str], index: str) -> str:
    """The plan that reads the page through ``index``: an ordered range scan, never a sort
    of everything the user (or the list) holds."""
    found = [plan for plan in plans if re.search(rf"\b{index}\b", plan)]
    assert len(found) == 1, f"{index} not used once:\n\n" + "\n\n".join(plans)
    assert "Sort" not in found[0], found[0]
    return found[0]


def _second_page(app: Flask, user: User, path: str, query: dict[str, str]) -> list[str]:
    """The plans of the page after the first (a real cursor)."""
    first = user.request("GET", path, query_string=query)
    assert first.status_code == 200 and first.json["next_cursor"], first.json
    return _plans(app, user, path, {**query, "cursor": first.json["next_cursor"]})[1]


@pytest.mark.parametrize("sort", [None, "position", "-position"])
def test_a_lists_tasks_in_manual_order_are_an_index_range(
    app: Flask, seeded: Seeded, sort: str | None
) -> None:
    """The first page and a cursor page of a list's top-level tasks, by position (the
    default there), read the top-level partial index from the right place: the list's
    size does not matter."""
    query = {"limit": "10", **({"sort": sort} if sort else {})}
    for path, extra in [(f"/api/v1/lists/{seeded.list_id}/tasks", {}),
                        ("/api/v1/tasks", {"list_id": seeded.list_id})]:  # fmt: skip
        body, plans = _plans(app, seeded.user, path, {**query, **extra})
        assert len(body["items"]) == 10
        _page_plan(plans, "ix_tasks_list_position")
        plan = _page_plan(_second_page(app, seeded.user, path, {**query, **extra}),
                          "ix_tasks_list_position")  # fmt: skip
        assert "Index Cond: ((list_id = " in plan and "ROW(" in plan.split("Filter")[0], plan


def test_a_parents_subtasks_are_an_index_range(app: Flask, seeded: Seeded) -> None:
    """``?parent_id=`` (sorted by position) reads the subtasks' partial index, first page and
    cursor page alike."""
    query = {"parent_id": seeded.parent_id, "limit": "10"}
    body, plans = _plans(app, seeded.user, "/api/v1/tasks", query)
    assert len(body["items"]) == 10
    _page_plan(plans, "ix_tasks_parent_position")
    plan = _page_plan(_second_page(app, seeded.user, "/api/v1/tasks", query),
                      "ix_tasks_parent_position")  # fmt: skip
    assert "Index Cond: ((parent_id = " in plan and "ROW(" in plan.split("Filter")[0], plan


def test_the_lists_pages_are_read_in_index_order(app: Flask, seeded: Seeded) -> None:
    """GET /lists, first page and a cursor page: the owner's lists in (position, id) order
    straight from their index."""
    body, plans = _plans(app, seeded.user, "/api/v1/lists", {"limit": "10"})
    assert len(body["items"]) == 10
    _page_plan(plans, "ix_lists_owner_position")
    plan = _page_plan(_second_page(app, seeded.user, "/api/v1/lists", {"limit": "10"}),
                      "ix_lists_owner_position")  # fmt: skip
    # The cursor is in the index condition: a deep page starts where it left off.
    assert "Index Cond: ((owner_id = " in plan and "ROW(" in plan.split("Filter")[0], plan


def test_the_changes_feed_reads_each_table_by_owner_and_change_number(
    app: Flask, seeded: Seeded
) -> None:
    """The feed's three queries (tasks, lists, tombstones), from the start and from a token,
    are index ranges on (owner, change number)."""
    user = seeded.user
    user.request("DELETE", f"/api/v1/tasks/{seeded.parent_id}")  # tombstones to read
    body, plans = _plans(app, user, "/api/v1/tasks/changes", {"limit": "10"})
    assert body["has_more"]
    later = _plans(app, user, "/api/v1/tasks/changes", {"limit": "10", "since": body["next"]})[1]
    for found in (plans, later):
        for index in ("ix_tasks_owner_change", "ix_lists_owner_change",
                      "ix_task_tombstones_owner_change"):  # fmt: skip
            plan = _page_plan(found, index)
            assert "Index Cond: ((owner_id = " in plan and "change_seq >=" in plan, plan


def test_placing_a_task_reads_its_neighbours_through_the_index(app: Flask, seeded: Seeded) -> None:
    """Creating a task first in a big list, moving one after a task in the middle, and adding
    a subtask look up the neighbouring keys with one index probe each, never by sorting the
    list (or the parent's subtasks)."""
    user, tasks = seeded.user, "/api/v1/tasks"
    middle = every_item(user, f"/api/v1/lists/{seeded.list_id}/tasks")[LIST_TASKS // 2]
    writes = [
        ({"json": {"title": "first", "list_id": seeded.list_id}}, tasks, "ix_tasks_list_position"),
        ({"json": {"title": "sub", "parent_id": seeded.parent_id}}, tasks,
         "ix_tasks_parent_position"),
    ]  # fmt: skip
    created = []
    for body, path, index in writes:
        answer, plans = _plans(app, user, path, {}, "POST", **body)
        created.append(answer)
        neighbours = [plan for plan in plans if re.search(rf"\b{index}\b", plan)]
        assert neighbours, "\n\n".join(plans)
        assert all("Sort" not in plan for plan in neighbours), neighbours
    moved, plans = _plans(app, user, f"{tasks}/{created[0]['id']}/move", {}, "POST",
                          json={"after": middle["id"]})  # fmt: skip
    assert moved["position"] > middle["position"]
    neighbours = [plan for plan in plans if "ix_tasks_list_position" in plan]
    assert neighbours, "\n\n".join(plans)
    assert all("Sort" not in plan for plan in neighbours), neighbours


def every_item(user: User, path: str) -> list[dict[str, Any]]:
    """Every item of a collection, 100 a page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = user.request("GET", path, query_string=query).json
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_the_planner_knows_a_tasks_list_and_parent_decide_its_owner(
    app: Flask, is_postgres: bool
) -> None:
    """Migration 0007's dependency statistics, so a parent's or a list's page is not taken
    for a few rows (the owner's condition counted twice) and sorted instead of range-read."""
    if not is_postgres:
        pytest.skip("extended statistics are PostgreSQL's")
    with engine_of(app).connect() as connection:
        kinds = connection.execute(
            text("SELECT stxkind FROM pg_statistic_ext WHERE stxname = 'st_tasks_placement_owner'")
        ).scalar()
    assert kinds is not None and "f" in kinds
