"""Revision 0005 on a database populated at 0004: every user gets one inbox holding their tasks,
in today's default order (newest first, ties by id descending), and the app works afterwards.

The database is filled with plain Core inserts at revision 0004 (the tables below describe
the 0004 columns only, so nothing here depends on today's models), then upgraded in small
batches so that batch boundaries fall inside runs of equal ``created_at``. It is then
downgraded to 0004 and upgraded again with the default batch sizes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from flask.testing import FlaskClient
from sqlalchemy.dialects.postgresql import JSONB

from taskapi import create_app, migrate
from taskapi.db import UTCDateTime, make_engine
from taskapi.passwords import hash_password
from taskapi.services.cursors import seal
from taskapi.settings import Settings
from tests.conftest import PASSWORD, TEST_SECRET, fresh_postgres_database
from tests.support import bearer, engine_of

Time = UTCDateTime(timezone=True)
Tags = sa.JSON().with_variant(JSONB(), "postgresql")

USERS = sa.table(
    "users",
    sa.column("id", sa.Uuid()), sa.column("email", sa.String()), sa.column("name", sa.String()),
    sa.column("password_hash", sa.String()), sa.column("created_at", Time),
    sa.column("change_seq", sa.BigInteger()), sa.column("task_count", sa.Integer()),
    sa.column("email_verified", sa.Boolean()), sa.column("disabled_at", Time),
)  # fmt: skip
SESSIONS = sa.table(
    "sessions",
    sa.column("id", sa.Uuid()), sa.column("user_id", sa.Uuid()), sa.column("created_at", Time),
    sa.column("last_used_at", Time), sa.column("expires_at", Time),
    sa.column("revoked_at", Time), sa.column("user_agent", sa.String()),
    sa.column("current_jti", sa.String()), sa.column("previous_jti", sa.String()),
    sa.column("rotated_at", Time),
)  # fmt: skip
# The 0004 columns of a task: each must come through the migration unchanged (change_seq
# and version aside: renumbered and bumped on purpose, checked apart).
KEPT = ("owner_id", "title", "notes", "completed", "completed_at", "due_at", "priority", "tags",
        "created_at", "updated_at")  # fmt: skip
TASKS = sa.table(
    "tasks",
    sa.column("id", sa.Uuid()), sa.column("owner_id", sa.Uuid()), sa.column("title", sa.String()),
    sa.column("notes", sa.Text()), sa.column("completed", sa.Boolean()),
    sa.column("completed_at", Time), sa.column("due_at", Time),
    sa.column("priority", sa.SmallInteger()), sa.column("tags", Tags),
    sa.column("created_at", Time), sa.column("updated_at", Time),
    sa.column("version", sa.Integer()), sa.column("change_seq", sa.BigInteger()),
)  # fmt: skip
TOMBSTONES = sa.table(
    "task_tombstones",
    sa.column("id", sa.Uuid()), sa.column("owner_id", sa.Uuid()),
    sa.column("deleted_at", Time), sa.column("change_seq", sa.BigInteger()),
)  # fmt: skip
# Read after the upgrade only.
LISTS = sa.table(
    "lists",
    sa.column("id", sa.Uuid()), sa.column("owner_id", sa.Uuid()), sa.column("title", sa.String()),
    sa.column("inbox", sa.Boolean()), sa.column("change_seq", sa.BigInteger()),
)  # fmt: skip
TASKS_AT_HEAD = sa.table(
    "tasks",
    sa.column("id", sa.Uuid()), sa.column("owner_id", sa.Uuid()),
    sa.column("change_seq", sa.BigInteger()), sa.column("list_id", sa.Uuid()),
    sa.column("parent_id", sa.Uuid()), sa.column("position", sa.String()),
    sa.column("recurrence", sa.String()), sa.column("timezone", sa.String()),
    sa.column("next_occurrence_id", sa.Uuid()),
)  # fmt: skip
NEW_TASK_COLUMNS = {"list_id", "parent_id", "position", "recurrence", "timezone",
                    "next_occurrence_id"}  # fmt: skip
BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CHANGES = "/api/v1/tasks/changes"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own: a temporary SQLite file, or a fresh PostgreSQL database
    created on the test server and dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrating.db'}"
        return
    with fresh_postgres_database("taskapi_m") as url:
        yield url


def alembic(engine: sa.Engine, action: str, revision: str, **attributes: Any) -> None:
    """``alembic upgrade|downgrade revision`` on ``engine`` (as ``migrate.upgrade`` runs it),
    with extra config attributes for the migration scripts."""
    config = migrate.alembic_config()
    with engine.connect() as connection:
        config.attributes.update(connection=connection, **attributes)
        getattr(command, action)(config, revision)
        connection.commit()


# --- the database at 0004 --------------------------------------------------------------------


def task_row(owner: uuid.UUID, i: int, created_at: datetime) -> dict[str, Any]:
    """One task as 0004 stores it, with every field varied."""
    completed = i % 5 == 0
    return {
        "id": uuid.uuid4(), "owner_id": owner, "title": f"task {i} of {str(owner)[:8]}",
        "notes": "" if i % 2 else f"notes {i}\nsecond line", "completed": completed,
        "completed_at": created_at + timedelta(hours=1) if completed else None,
        "due_at": BASE + timedelta(days=i % 40, minutes=i) if i % 3 else None,
        "priority": i % 4, "tags": [f"t{i % 7}", "shared"][: i % 3],
        "created_at": created_at, "updated_at": created_at + timedelta(minutes=i % 11),
        "version": 1 + i % 4, "change_seq": i + 1,
    }  # fmt: skip


def populate(engine: sa.Engine) -> dict[str, Any]:
    """Three users (2,000, 1,500 and no tasks) with runs of tasks sharing ``created_at``, a
    session and a tombstone; returns what was stored, as read back."""
    password_hash = hash_password(PASSWORD, rounds=4)
    users = [uuid.uuid4() for _ in range(3)]
    emails = [f"migrated-{n}-{uuid.uuid4().hex[:8]}@example.com" for n in range(3)]
    tasks: list[dict[str, Any]] = []
    # User 0: runs of three equal timestamps (inserted oldest first); user 1: equal
    # timestamps scattered through the insertion order; user 2: nothing.
    tasks += [task_row(users[0], i, BASE - timedelta(seconds=i // 3)) for i in range(2_000)]
    tasks += [task_row(users[1], i, BASE - timedelta(seconds=i * 7919 % 500, microseconds=17))
              for i in range(1_500)]  # fmt: skip
    counts = {owner: sum(t["owner_id"] == owner for t in tasks) for owner in users}
    tombstone = {"id": uuid.uuid4(), "owner_id": users[0], "deleted_at": BASE,
                 "change_seq": counts[users[0]] + 1}  # fmt: skip
    seqs = {users[0]: counts[users[0]] + 1, users[1]: counts[users[1]], users[2]: 0}
    session = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(sa.insert(USERS), [
            {"id": owner, "email": email, "name": f"user {n}", "password_hash": password_hash,
             "created_at": BASE - timedelta(days=30), "change_seq": seqs[owner],
             "task_count": counts[owner], "email_verified": True, "disabled_at": None}
            for n, (owner, email) in enumerate(zip(users, emails, strict=True))
        ])  # fmt: skip
        for start in range(0, len(tasks), 1_000):
            connection.execute(sa.insert(TASKS), tasks[start : start + 1_000])
        connection.execute(sa.insert(TOMBSTONES), [tombstone])
        connection.execute(sa.insert(SESSIONS), [
            {"id": session, "user_id": users[0], "created_at": BASE, "last_used_at": BASE,
             "expires_at": BASE + timedelta(days=3650), "revoked_at": None, "user_agent": "old",
             "current_jti": str(uuid.uuid4()), "previous_jti": None, "rotated_at": BASE}
        ])  # fmt: skip
    return {"users": users, "emails": emails, "seqs": seqs, "tombstone": tombstone["id"],
            "session": session, "tasks": stored_tasks(engine),
            "versions": versions(engine)}  # fmt: skip


def stored_tasks(engine: sa.Engine) -> dict[uuid.UUID, dict[str, Any]]:
    """Every task's 0004 columns, as the database hands them back, by id."""
    with engine.connect() as connection:
        found = connection.execute(sa.select(TASKS.c.id, *(TASKS.c[name] for name in KEPT)))
        return {row.id: {name: getattr(row, name) for name in KEPT} for row in found}


def versions(engine: sa.Engine) -> dict[uuid.UUID, int]:
    """Every task's version, by id."""
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(TASKS.c.id, TASKS.c.version)).all())


def old_order(tasks: dict[uuid.UUID, dict[str, Any]], owner: uuid.UUID) -> list[uuid.UUID]:
    """Today's default order of an owner's tasks: ``-created_at``, ties by id descending."""
    mine = [(task["created_at"], task_id) for task_id, task in tasks.items()
            if task["owner_id"] == owner]  # fmt: skip
    return [task_id for _, task_id in sorted(mine, reverse=True)]


# --- checks at head --------------------------------------------------------------------------


def check_migrated(engine: sa.Engine, before: dict[str, Any]) -> dict[uuid.UUID, uuid.UUID]:
    """Every invariant the migration promises; returns each user's inbox id."""
    tasks_before: dict[uuid.UUID, dict[str, Any]] = before["tasks"]
    after = stored_tasks(engine)
    assert after == tasks_before  # every task, its owner and fields; nothing added or lost
    # A new version for each (its body gained list_id and position): no stale 304.
    assert versions(engine) == {task: v + 1 for task, v in before["versions"].items()}
    tasks = TASKS_AT_HEAD
    inboxes: dict[uuid.UUID, uuid.UUID] = {}
    with engine.connect() as connection:
        for owner in before["users"]:
            lists = connection.execute(sa.select(LISTS).where(LISTS.c.owner_id == owner)).all()
            assert [(row.title, row.inbox) for row in lists] == [("Inbox", True)], lists
            inboxes[owner] = inbox = lists[0].id
            rows = connection.execute(
                sa.select(tasks).where(tasks.c.owner_id == owner)
                .order_by(tasks.c.position, tasks.c.id)
            ).all()  # fmt: skip
            assert [row.id for row in rows] == old_order(tasks_before, owner)
            assert {row.list_id for row in rows} <= {inbox}
            assert all(row.parent_id is None and row.recurrence is None and row.timezone is None
                       and row.next_occurrence_id is None for row in rows)  # fmt: skip
            keys = [row.position for row in rows]
            assert all(a < b for a, b in pairwise(keys)), "positions tie"
            # Change numbers: unique across the user's tasks, lists and tombstones, and the
            # user's counter is their maximum; every task and the inbox is newer than what a
            # client synced before the migration.
            tombstones = connection.scalars(
                sa.select(TOMBSTONES.c.change_seq).where(TOMBSTONES.c.owner_id == owner)
            ).all()
            seqs = [row.change_seq for row in rows] + [lists[0].change_seq] + list(tombstones)
            assert len(seqs) == len(set(seqs))
            counter = connection.scalar(sa.select(USERS.c.change_seq).where(USERS.c.id == owner))
            assert counter == max(seqs)
            fresh = [row.change_seq for row in rows] + [lists[0].change_seq]
            assert min(fresh) > before["seqs"][owner]
        kinds = connection.execute(sa.text("SELECT DISTINCT kind FROM task_tombstones")).all()
        assert [tuple(kind) for kind in kinds] == [("task",)]
        assert before["session"] in connection.scalars(sa.select(SESSIONS.c.id)).all()
    return inboxes


def changed_since(client: FlaskClient, headers: dict[str, str], token: str | None) -> list[Any]:
    """Every change of the feed after ``token``, page by page."""
    changes: list[Any] = []
    while True:
        query = {"limit": "500", **({"since": token} if token else {})}
        page = client.get(CHANGES, query_string=query, headers=headers).json
        changes += page["changes"]
        token = page["next"]
        if not page["has_more"]:
            return changes


def check_the_app(url: str, tmp_path: Path, before: dict[str, Any],
                  inboxes: dict[uuid.UUID, uuid.UUID]) -> None:  # fmt: skip
    """The app on the migrated database: a client that synced before the migration learns
    every task's list and position; a new task lands first in the inbox, then the old order."""
    app = create_app(Settings(database_url=url, secret_key=TEST_SECRET, bcrypt_rounds=4,
                              data_dir=tmp_path, ratelimit_enabled=False))  # fmt: skip
    app.config["TESTING"] = True
    try:
        client = app.test_client()
        owner, email = before["users"][0], before["emails"][0]
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.json
        headers = bearer(login.json["access_token"])
        inbox = str(inboxes[owner])
        (listed,) = client.get("/api/v1/lists", headers=headers).json["items"]
        assert (listed["id"], listed["inbox"]) == (inbox, True)

        synced_before = seal(
            {"s": before["seqs"][owner], "t": datetime.now(UTC).timestamp(), "u": str(owner)},
            key=TEST_SECRET.encode(), purpose="sync-token",
        )  # fmt: skip
        changes = changed_since(client, headers, synced_before)
        mine = {str(t) for t, task in before["tasks"].items() if task["owner_id"] == owner}
        assert {c["id"] for c in changes if c["type"] == "task"} == mine
        assert [c["id"] for c in changes if c["type"] == "list"] == [inbox]
        assert all(c["task"]["list_id"] == inbox for c in changes if c["type"] == "task")
        everything = changed_since(client, headers, None)
        deleted = [c["id"] for c in everything if c["deleted"]]
        assert deleted == [str(before["tombstone"])]

        created = client.post("/api/v1/tasks", json={"title": "after the migration"},
                              headers=headers)  # fmt: skip
        assert created.status_code == 201, created.json
        assert created.json["list_id"] == inbox
        seen, cursor = [], None
        while True:
            query = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/api/v1/lists/{inbox}/tasks", query_string=query, headers=headers)
            assert page.status_code == 200, page.json
            seen += [item["id"] for item in page.json["items"]]
            cursor = page.json["next_cursor"]
            if cursor is None:
                break
        expected = [str(task_id) for task_id in old_order(before["tasks"], owner)]
        assert seen == [created.json["id"], *expected]
        positions = {c["task"]["position"] for c in changes if c["type"] == "task"}
        assert len(positions) == len(mine)
    finally:
        engine_of(app).dispose()


def test_0005_moves_every_task_into_its_owners_inbox_in_the_old_order(
    empty_url: str, tmp_path: Path
) -> None:
    """Upgrade from a populated 0004 to 0005 (in small batches) and check; upgrade to head and
    use the app; downgrade to 0004 and upgrade to head again (default batches), check again."""
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine, "0004")
        before = populate(engine)
        alembic(engine, "upgrade", "0005", taskapi_batch_sizes={"users": 2, "tasks": 128})
        inboxes = check_migrated(engine, before)
        migrate.upgrade(engine)  # any later revision, for today's app
        check_the_app(empty_url, tmp_path, before, inboxes)

        alembic(engine, "downgrade", "0004")
        with engine.connect() as connection:
            names = set(sa.inspect(connection).get_table_names())
            columns = {c["name"] for c in sa.inspect(connection).get_columns("tasks")}
        assert "lists" not in names and not columns & NEW_TASK_COLUMNS
        again = {**before, "tasks": stored_tasks(engine), "versions": versions(engine)}
        assert len(again["tasks"]) == len(before["tasks"]) + 1  # the task the app made
        with engine.connect() as connection:
            again["seqs"] = dict(
                connection.execute(sa.select(USERS.c.id, USERS.c.change_seq)).all()
            )
        migrate.upgrade(engine)
        second = check_migrated(engine, again)
        assert set(second.values()).isdisjoint(inboxes.values())
    finally:
        engine.dispose()
