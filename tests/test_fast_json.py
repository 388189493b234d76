"""The hot path's hand-written task serializers say exactly what the declared models say.

Task answers and pages are written by ``schemas.tasks.task_document`` (``FAST_JSON``), not by
validating into ``TaskPublic``: these tests hold the two equal, key order included, for every
kind of task, and check that the server's answers are the fast ones.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from taskapi.models import Task
from taskapi.schemas.common import FAST_JSON
from taskapi.schemas.tasks import PRIORITIES, ROW_COLUMNS, TaskPage, TaskPublic, task_document
from tests.conftest import User

UTC_TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
TEXT = st.text(max_size=40)  # any Unicode: quotes, backslashes, controls, astral characters


def _task(draw: Any) -> Task:
    """A task entity with every field drawn, as the database could return it."""
    optional_id = st.none() | st.uuids()
    task = Task(
        id=draw(st.uuids()),
        owner_id=uuid.uuid4(),
        title=draw(TEXT),
        notes=draw(TEXT),
        completed=draw(st.booleans()),
        completed_at=draw(st.none() | UTC_TIMES),
        due_at=draw(st.none() | UTC_TIMES),
        priority=draw(st.integers(0, len(PRIORITIES) - 1)),
        tags=draw(st.lists(TEXT, max_size=4)),
        created_at=draw(UTC_TIMES),
        updated_at=draw(UTC_TIMES),
        version=draw(st.integers(1, 2**31 - 1)),
        list_id=draw(st.uuids()),
        parent_id=draw(optional_id),
        position=draw(st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=8)),
        recurrence=draw(st.none() | TEXT),
        timezone=draw(st.none() | st.sampled_from(["UTC", "Europe/Paris"])),
        next_occurrence_id=draw(optional_id),
    )
    return task


tasks = st.composite(_task)


def _pairs(text: bytes | str) -> list[tuple[str, Any]]:
    """The JSON's keys and values in their order (dict equality ignores order)."""
    return json.loads(text, object_pairs_hook=list)  # type: ignore[no-any-return]


@settings(max_examples=300, deadline=None)
@given(tasks())
def test_a_task_is_written_as_its_model_writes_it(task: Task) -> None:
    """Same keys, same order, same values (timestamps to the microsecond, with Z)."""
    fast = FAST_JSON[TaskPublic](task)
    assert _pairs(fast) == _pairs(TaskPublic.model_validate(task).model_dump_json())


@settings(max_examples=50, deadline=None)
@given(st.lists(tasks(), max_size=5), st.none() | st.text(min_size=1, max_size=20))
def test_a_page_is_written_as_its_model_writes_it(items: list[Task], cursor: str | None) -> None:
    """A page of entities (or rows), with or without a next cursor."""
    body = {"items": items, "next_cursor": cursor}
    expected = _pairs(TaskPage.model_validate(body, from_attributes=True).model_dump_json())
    assert _pairs(FAST_JSON[TaskPage](body)) == expected
    rows = [tuple(getattr(task, name) for name in ROW_COLUMNS) for task in items]
    assert _pairs(FAST_JSON[TaskPage]({"items": rows, "next_cursor": cursor})) == expected


def test_a_page_row_holds_the_columns_the_listing_selects() -> None:
    """Rows are unpacked by position: the listing's columns are ROW_COLUMNS, in order."""
    from taskapi.services.listing import COLUMNS

    assert tuple(column.key for column in COLUMNS) == ROW_COLUMNS
    assert set(ROW_COLUMNS) == {column.key for column in Task.__table__.columns}


def test_a_whole_second_keeps_its_six_digits() -> None:
    """A timestamp on a whole second is ``...:00.000000Z``, as the contract shows."""
    moment = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    task = Task(id=uuid.uuid4(), title="t", notes="", completed=True, completed_at=moment,
                due_at=None, priority=0, tags=[], created_at=moment - timedelta(days=1),
                updated_at=moment, version=1, list_id=uuid.uuid4(), parent_id=None,
                position="a0", recurrence=None, timezone=None, next_occurrence_id=None)  # fmt: skip
    assert task_document(task)["completed_at"] == "2026-12-01T08:00:00.000000Z"
    assert orjson.loads(FAST_JSON[TaskPublic](task))["created_at"] == "2026-11-30T08:00:00.000000Z"
    row = tuple(getattr(task, name) for name in ROW_COLUMNS)  # orjson writes a row's datetimes
    assert orjson.loads(FAST_JSON[TaskPublic](row))["completed_at"] == "2026-12-01T08:00:00.000000Z"


def test_a_row_timestamp_in_another_zone_is_written_in_utc() -> None:
    """A row's aware timestamp that is not in UTC (a session in another time zone) is still
    written in UTC with ``Z``."""
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 12, 1, 9, 30, 0, 250000, tzinfo=paris)
    values = {name: None for name in ROW_COLUMNS} | {
        "id": uuid.uuid4(), "title": "t", "notes": "", "completed": True, "completed_at": moment,
        "priority": 0, "tags": [], "created_at": moment, "updated_at": moment, "version": 1,
        "list_id": uuid.uuid4(), "position": "a0"}  # fmt: skip
    written = orjson.loads(FAST_JSON[TaskPublic](tuple(values[name] for name in ROW_COLUMNS)))
    assert written["completed_at"] == written["updated_at"] == "2026-12-01T08:30:00.250000Z"


def _stored(app: Flask, user: User, task_id: str) -> list[tuple[str, Any]]:
    """The model's own serialization of the task as stored now."""
    from taskapi.api.deps import state
    from taskapi.services.tasks import get_task

    with app.app_context():
        session = state().session_factory()
        try:
            task = get_task(session, user_id=uuid.UUID(user.id), task_id=uuid.UUID(task_id))
            return _pairs(TaskPublic.model_validate(task).model_dump_json())
        finally:
            session.close()


def test_the_server_answers_match_the_models(app: Flask, alice: User) -> None:
    """Through HTTP: a created, fetched, patched and listed task, each equal to the model's
    own serialization of the stored task."""
    created = alice.request("POST", "/api/v1/tasks", json={
        "title": 'Ünïcode "quoted" \\ task', "notes": "n", "tags": ["x", "y"],
        "due_at": "2027-03-04T05:06:07Z", "priority": "high"})  # fmt: skip
    task_id = created.json["id"]
    assert _pairs(created.get_data()) == _stored(app, alice, task_id)
    fetched = alice.request("GET", f"/api/v1/tasks/{task_id}")
    assert _pairs(fetched.get_data()) == _stored(app, alice, task_id)
    patched = alice.request("PATCH", f"/api/v1/tasks/{task_id}", json={"completed": True})
    assert patched.json["completed"] is True
    assert _pairs(patched.get_data()) == _stored(app, alice, task_id)
    page = alice.request("GET", "/api/v1/tasks?limit=10")
    assert _pairs(page.get_data()) == [("items", [_stored(app, alice, task_id)]),
                                       ("next_cursor", None)]  # fmt: skip
