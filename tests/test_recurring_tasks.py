"""Recurring tasks through HTTP: validation, the next occurrence across daylight-saving
changes (exact UTC instants), COUNT and UNTIL endings, and exactly one next occurrence
however the completion is retried."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.conftest import User
from tests.support import assert_error

LISTS = "/api/v1/lists"
TASKS = "/api/v1/tasks"
CHANGES = f"{TASKS}/changes"


def task_path(task: dict[str, Any] | str) -> str:
    """The URL of a task (given as its JSON or its id)."""
    return f"{TASKS}/{task['id'] if isinstance(task, dict) else task}"


def patch(user: User, task: dict[str, Any], body: dict[str, Any], **headers: str) -> Any:
    """PATCH /tasks/<id>."""
    return user.request("PATCH", task_path(task), json=body, headers=headers)


def complete(user: User, task: dict[str, Any], **headers: str) -> dict[str, Any]:
    """PATCH completed=true, which must succeed; the completed task."""
    answer = patch(user, task, {"completed": True}, **headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def get(user: User, task: dict[str, Any] | str) -> dict[str, Any]:
    """The task's current state."""
    answer = user.request("GET", task_path(task))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def every_task(user: User) -> list[dict[str, Any]]:
    """All of the user's top-level tasks, in every list (at most 100 here)."""
    answer = user.request("GET", f"{TASKS}?limit=100")
    assert answer.status_code == 200 and answer.get_json()["next_cursor"] is None
    return answer.get_json()["items"]  # type: ignore[no-any-return]


def sync_token(user: User) -> str:
    """A changes token that is caught up now."""
    token = None
    while True:
        query = f"?since={token}" if token else ""
        page = user.request("GET", f"{CHANGES}{query}").get_json()
        token = page["next"]
        if not page["has_more"]:
            return token


def recurring(user: User, rule: str, zone: str | None, due_at: str, **fields: Any) -> Any:
    """Create a recurring task and return it."""
    body = {"recurrence": rule, "due_at": due_at, **fields}
    if zone is not None:
        body["timezone"] = zone
    return user.create_task(**body)


# --- creating --------------------------------------------------------------------------------


def test_create_a_recurring_task(alice: User) -> None:
    """recurrence and timezone are kept (the rule in canonical form); UTC when no zone."""
    task = recurring(alice, "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=fr,mo", "Europe/Berlin",
                     "2026-03-02T08:00:00+00:00")  # fmt: skip
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,FR"
    assert (task["timezone"], task["due_at"]) == ("Europe/Berlin", "2026-03-02T08:00:00.000000Z")
    assert task["next_occurrence_id"] is None
    assert get(alice, task) == task
    plain = recurring(alice, "FREQ=DAILY;COUNT=3", None, "2026-03-02T08:00:00Z")
    assert (plain["recurrence"], plain["timezone"]) == ("FREQ=DAILY;COUNT=3", "UTC")
    one_off = alice.create_task(title="once")
    assert (one_off["recurrence"], one_off["timezone"], one_off["next_occurrence_id"]) == (
        None, None, None,
    )  # fmt: skip


DUE = "2026-03-02T08:00:00Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recurrence": "FREQ=DAILY"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY", "due_at": None}, "recurrence"),
        ({"recurrence": "FREQ=DAILY", "timezone": "Europe/Berlin"}, "recurrence"),
        ({"recurrence": "FREQ=HOURLY", "due_at": DUE}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;COUNT=2;UNTIL=20260401", "due_at": DUE}, "recurrence"),
        ({"recurrence": "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY", "due_at": DUE},
         "recurrence"),
        ({"recurrence": "FREQ=DAILY;BYHOUR=9", "due_at": DUE}, "recurrence"),
        ({"recurrence": "freq=daily", "due_at": DUE}, "recurrence"),
        ({"recurrence": "", "due_at": DUE}, "recurrence"),
        ({"recurrence": "F" * 501, "due_at": DUE}, "recurrence"),
        ({"recurrence": 5, "due_at": DUE}, "recurrence"),
        ({"recurrence": "FREQ=DAILY", "due_at": DUE, "timezone": "Mars/Olympus"}, "timezone"),
        ({"recurrence": "FREQ=DAILY", "due_at": DUE, "timezone": "localtime"}, "timezone"),
        ({"recurrence": "FREQ=DAILY", "due_at": DUE, "timezone": ""}, "timezone"),
        ({"recurrence": "FREQ=DAILY", "due_at": DUE, "timezone": "x" * 65}, "timezone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "Europe/Berlin ", "due_at": DUE}, "timezone"),
    ],
)  # fmt: skip
def test_invalid_recurrence_is_400(alice: User, body: dict[str, Any], field: str) -> None:
    """A rule without due_at, outside the subset, or with an unknown zone is 400 naming the
    field, on create and on PATCH; nothing is created or changed."""
    answer = alice.request("POST", TASKS, json={"title": "t", **body})
    details = assert_error(answer, 400, "validation_error")["details"]
    assert [d["field"] for d in details] == [field], details
    plain = alice.create_task(title="plain")
    details = assert_error(patch(alice, plain, body), 400, "validation_error")["details"]
    assert [d["field"] for d in details] == [field], details
    assert get(alice, plain) == plain and every_task(alice) == [plain]


def test_a_recurring_task_keeps_needing_a_due_date(alice: User) -> None:
    """Clearing due_at of a recurring task is 400 on recurrence; clearing both is fine."""
    task = recurring(alice, "FREQ=DAILY", "UTC", DUE)
    details = assert_error(patch(alice, task, {"due_at": None}), 400, "validation_error")
    assert [d["field"] for d in details["details"]] == ["recurrence"]
    assert get(alice, task) == task
    cleared = patch(alice, task, {"due_at": None, "recurrence": None}).get_json()
    assert (cleared["due_at"], cleared["recurrence"], cleared["timezone"]) == (None, None, None)


# --- the next occurrence ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "rule", "due_at", "next_due", "next_rule"),
    [
        # Berlin springs forward on Sunday 2026-03-29: 09:00 CET, then 09:00 CEST.
        ("Europe/Berlin", "FREQ=DAILY;COUNT=3", "2026-03-28T08:00:00Z",
         "2026-03-29T07:00:00.000000Z", "FREQ=DAILY;COUNT=2"),
        # ... and falls back on Sunday 2026-10-25: Mondays at 09:00 CEST, then CET.
        ("Europe/Berlin", "FREQ=WEEKLY;BYDAY=MO", "2026-10-19T07:00:00Z",
         "2026-10-26T08:00:00.000000Z", "FREQ=WEEKLY;BYDAY=MO"),
        # New York springs forward on Sunday 2026-03-08: 09:00 EST, then EDT.
        ("America/New_York", "FREQ=DAILY", "2026-03-07T14:00:00Z",
         "2026-03-08T13:00:00.000000Z", "FREQ=DAILY"),
        # ... and falls back on Sunday 2026-11-01: 09:00 EDT, then EST.
        ("America/New_York", "FREQ=DAILY;INTERVAL=1;COUNT=10", "2026-10-31T13:00:00Z",
         "2026-11-01T14:00:00.000000Z", "FREQ=DAILY;COUNT=9"),
        # Monthly on the 31st, every other month, across the fall-back: 17:30 local each time.
        ("America/New_York", "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=31", "2026-10-31T21:30:00Z",
         "2026-12-31T22:30:00.000000Z", "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=31"),
    ],
    ids=["berlin-spring", "berlin-fall", "new-york-spring", "new-york-fall", "monthly"],
)  # fmt: skip
def test_completing_makes_the_next_occurrence(
    alice: User, zone: str, rule: str, due_at: str, next_due: str, next_rule: str
) -> None:
    """PATCH completed=true returns next_occurrence_id: a new open task in the same list,
    right after the completed one, with the same title, notes, tags, priority, timezone, the
    rule (COUNT less one) and due_at advanced in local time (exact UTC instant)."""
    list_id = alice.request("POST", LISTS, json={"title": "chores"}).get_json()["id"]
    first = alice.create_task(title="last", list_id=list_id)
    task = recurring(alice, rule, zone, due_at, title="water plants", notes="the big ones",
                     tags=["home", "plants"], priority="high", list_id=list_id)  # fmt: skip
    done = complete(alice, task)
    assert done["completed"] is True and done["next_occurrence_id"] is not None
    assert (done["recurrence"], done["timezone"], done["due_at"]) == (
        task["recurrence"], zone, task["due_at"],
    )  # fmt: skip
    following = get(alice, done["next_occurrence_id"])
    expected = {
        "title": "water plants", "notes": "the big ones", "tags": ["home", "plants"],
        "priority": "high", "list_id": list_id, "parent_id": None, "timezone": zone,
        "recurrence": next_rule, "due_at": next_due, "completed": False, "completed_at": None,
        "next_occurrence_id": None, "version": 1,
    }  # fmt: skip
    assert {k: following[k] for k in expected} == expected
    assert following["id"] not in (task["id"], first["id"])
    listed = alice.request("GET", f"{LISTS}/{list_id}/tasks").get_json()["items"]
    assert [t["id"] for t in listed] == [task["id"], following["id"], first["id"]]


def test_the_next_occurrence_of_a_subtask_is_a_sibling(alice: User) -> None:
    """A recurring subtask's next occurrence has the same parent, right after it."""
    parent = alice.create_task(title="parent")
    older = alice.create_task(title="older", parent_id=parent["id"])
    sub = recurring(alice, "FREQ=DAILY", "UTC", DUE, parent_id=parent["id"])
    following = get(alice, complete(alice, sub)["next_occurrence_id"])
    assert (following["parent_id"], following["list_id"]) == (parent["id"], parent["list_id"])
    assert following["due_at"] == "2026-03-03T08:00:00.000000Z"
    listed = alice.request("GET", f"{TASKS}?parent_id={parent['id']}").get_json()["items"]
    assert [t["id"] for t in listed] == [sub["id"], following["id"], older["id"]]


@pytest.mark.parametrize(
    ("zone", "rule", "due_at"),
    [
        ("UTC", "FREQ=DAILY;COUNT=1", "2026-03-09T09:00:00Z"),
        ("UTC", "FREQ=DAILY;UNTIL=20260310T000000Z", "2026-03-09T09:00:00Z"),
        ("Europe/Berlin", "FREQ=WEEKLY;UNTIL=20260315", "2026-03-09T08:00:00Z"),
        ("America/New_York", "FREQ=DAILY;UNTIL=20260309T235959Z", "2026-03-09T13:00:00Z"),
    ],
    ids=["count-1", "until-time", "until-date", "until-just-before"],
)
def test_an_ended_rule_makes_no_next_task(alice: User, zone: str, rule: str, due_at: str) -> None:
    """When COUNT is used up or the next date is past UNTIL, completing makes nothing."""
    task = recurring(alice, rule, zone, due_at)
    done = complete(alice, task)
    assert done["completed"] is True and done["next_occurrence_id"] is None
    assert [t["id"] for t in every_task(alice)] == [task["id"]]


def test_until_keeps_the_rule_while_it_lasts(alice: User) -> None:
    """Before UNTIL the next task is made with the same rule (UNTIL unchanged), in local days:
    UNTIL as a date means through that day in the task's zone."""
    task = recurring(alice, "FREQ=DAILY;UNTIL=20260329", "Europe/Berlin", "2026-03-28T08:00:00Z")
    following = get(alice, complete(alice, task)["next_occurrence_id"])
    assert following["recurrence"] == "FREQ=DAILY;UNTIL=20260329"
    assert following["due_at"] == "2026-03-29T07:00:00.000000Z"
    assert complete(alice, following)["next_occurrence_id"] is None
    assert len(every_task(alice)) == 2


def test_retried_completion_makes_one_next_occurrence(alice: User, bob: User) -> None:
    """The same PATCH again (no If-Match), again with the old If-Match (412), un-complete and
    re-complete (PATCH and PUT): one next occurrence in all, always the same one."""
    task = recurring(alice, "FREQ=DAILY;COUNT=5", "Europe/Berlin", "2026-03-28T08:00:00Z")
    done = complete(alice, task, **{"If-Match": '"1"'})
    next_id = done["next_occurrence_id"]
    assert next_id is not None and done["version"] == 2
    again = complete(alice, task)
    assert again["next_occurrence_id"] == next_id and again["version"] == 3
    stale = patch(alice, task, {"completed": True}, **{"If-Match": '"1"'})
    assert_error(stale, 412, "precondition_failed")
    undone = patch(alice, task, {"completed": False}).get_json()
    assert undone["completed"] is False and undone["next_occurrence_id"] == next_id
    assert complete(alice, task)["next_occurrence_id"] == next_id
    body = {k: get(alice, task)[k] for k in ("title", "recurrence", "timezone", "due_at")}
    alice.request("PUT", task_path(task), json={**body, "completed": False})
    redone = alice.request("PUT", task_path(task), json={**body, "completed": True}).get_json()
    assert redone["completed"] is True and redone["next_occurrence_id"] == next_id
    assert sorted(t["id"] for t in every_task(alice)) == sorted([task["id"], next_id])
    assert get(alice, next_id)["recurrence"] == "FREQ=DAILY;COUNT=4"
    assert_error(patch(bob, task, {"completed": True}), 404, "not_found")


def test_completing_at_the_task_quota_is_409_and_changes_nothing(
    make_app: Callable[..., Flask], make_user: Any
) -> None:
    """The next occurrence counts against the quota; when it does not fit, the completion
    and the new task are one unit of work: 409 quota_exceeded, the task stays open."""
    user = make_user(on=make_app(max_tasks_per_user=1).test_client())
    task = recurring(user, "FREQ=DAILY", "UTC", DUE)
    assert_error(patch(user, task, {"completed": True}), 409, "quota_exceeded")
    assert get(user, task) == task and every_task(user) == [task]


def test_concurrent_completions_make_one_next_occurrence(app: Flask, alice: User) -> None:
    """Four simultaneous PATCH completed=true all succeed and agree on one next occurrence."""
    task = recurring(alice, "FREQ=DAILY", "UTC", DUE)
    barrier, answers, lock = threading.Barrier(4), [], threading.Lock()

    def send() -> None:
        http = app.test_client()
        barrier.wait(timeout=30)
        answer = http.patch(task_path(task), json={"completed": True}, headers=alice.headers)
        with lock:
            answers.append((answer.status_code, answer.get_json()))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in answers] == [200] * 4, answers
    assert len({body["next_occurrence_id"] for _, body in answers}) == 1
    assert len(every_task(alice)) == 2


def test_the_feed_reports_the_next_occurrence(alice: User) -> None:
    """The changes after a completion are the completed task and the new one, both whole."""
    task = recurring(alice, "FREQ=WEEKLY;BYDAY=MO", "America/New_York", "2026-03-02T14:00:00Z")
    token = sync_token(alice)
    done = complete(alice, task)
    following = get(alice, done["next_occurrence_id"])
    assert following["due_at"] == "2026-03-09T13:00:00.000000Z"
    page = alice.request("GET", f"{CHANGES}?since={token}").get_json()
    assert page["has_more"] is False
    assert sorted(page["changes"], key=lambda c: c["id"]) == sorted(
        [
            {"id": done["id"], "type": "task", "deleted": False, "task": done},
            {"id": following["id"], "type": "task", "deleted": False, "task": following},
        ],
        key=lambda c: c["id"],
    )
