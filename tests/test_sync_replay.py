"""Replaying the changes feed reproduces the user's lists and tasks, field by field.

Random operations through HTTP (lists created, changed, moved and deleted; tasks created,
PATCHed, PUT, moved within and across lists, made subtasks and back, recurring ones completed,
deleted, completed ones cleared) are interleaved with incremental syncs in pages of random
size. At checkpoints, the incrementally synced store, a store replayed from scratch and what
the API lists (every list via GET /lists, every list's tasks via GET /lists/<id>/tasks, every
parent's subtasks via ?parent_id=) must be equal, body for body and in the same order.

A seeded ``random.Random`` drives each run, so a failure names its seed and the operations
that led to it. One run shrinks the positions' key budget so that the rare internal
renumbering of a scope happens all the time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskapi.services import positions
from tests.conftest import User

CHANGES = "/api/v1/tasks/changes"
LISTS = "/api/v1/lists"
TASKS = "/api/v1/tasks"
RULES = ["FREQ=DAILY", "FREQ=DAILY;COUNT=2", "FREQ=WEEKLY;BYDAY=MO,TH", "FREQ=MONTHLY;INTERVAL=2",
         "FREQ=YEARLY;UNTIL=20300101T000000Z"]  # fmt: skip
ZONES = ["Europe/Berlin", "America/New_York", "UTC"]
START = datetime(2027, 3, 20, 9, 30, tzinfo=UTC)
DEFAULT_MAX_KEY = positions.MAX_KEY


# --- the client-side store -------------------------------------------------------------------


@dataclass
class Store:
    """What a sync client keeps: lists and tasks by id, and where it left off."""

    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    token: str | None = None

    def apply(self, page: dict[str, Any]) -> None:
        """Apply one page of the feed, checking each change's shape."""
        ids = [change["id"] for change in page["changes"]]
        assert len(ids) == len(set(ids)), "an id appears twice in one page"
        for change in page["changes"]:
            kind = change["type"]
            assert kind in ("task", "list"), change
            kept = self.tasks if kind == "task" else self.lists
            if change["deleted"]:
                assert change == {"id": change["id"], "type": kind, "deleted": True}, change
                kept.pop(change["id"], None)
            else:
                assert set(change) == {"id", "type", "deleted", kind}, change
                assert change[kind]["id"] == change["id"], change
                kept[change["id"]] = change[kind]

    def sync(self, user: User, rng: random.Random) -> None:
        """Fetch and apply pages (of random size) until caught up."""
        while True:
            query = {"limit": str(rng.choice([1, 2, 3, 7, 50, 500]))}
            if self.token is not None:
                query["since"] = self.token
            answer = user.request("GET", CHANGES, query_string=query)
            assert answer.status_code == 200, answer.json
            self.apply(answer.json)
            self.token = answer.json["next"]
            if not answer.json["has_more"]:
                return


def ordered(rows: dict[str, dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """The rows matching ``where`` in their manual order (position, then id)."""
    chosen = [row for row in rows.values() if all(row[k] == v for k, v in where.items())]
    return sorted(chosen, key=lambda row: (row["position"].encode(), row["id"]))


def every_page(user: User, path: str, **query: str) -> list[dict[str, Any]]:
    """All items of a paginated collection, following next_cursor (small pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "7", **query, **({"cursor": cursor} if cursor else {})}
        answer = user.request("GET", path, query_string=params)
        assert answer.status_code == 200, (path, answer.json)
        items += answer.json["items"]
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return items


def listed(user: User) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """What the API lists: the lists in order, and each list's and each parent's tasks in
    order (keys: ``list:<id>`` and ``parent:<id>``)."""
    lists = every_page(user, LISTS)
    scopes: dict[str, list[dict[str, Any]]] = {}
    for task_list in lists:
        top = every_page(user, f"{LISTS}/{task_list['id']}/tasks")
        scopes[f"list:{task_list['id']}"] = top
        for task in top:
            scopes[f"parent:{task['id']}"] = every_page(user, TASKS, parent_id=task["id"])
    return lists, scopes


def check(user: User, store: Store, rng: random.Random) -> None:
    """The incremental store, a from-scratch replay and the API agree exactly."""
    store.sync(user, rng)
    fresh = Store()
    fresh.sync(user, rng)
    assert fresh.lists == store.lists
    assert fresh.tasks == store.tasks
    lists, scopes = listed(user)
    assert ordered(store.lists) == lists
    seen: dict[str, dict[str, Any]] = {}
    for task_list in lists:
        top = scopes[f"list:{task_list['id']}"]
        assert ordered(store.tasks, list_id=task_list["id"], parent_id=None) == top
        for task in top:
            subtasks = scopes[f"parent:{task['id']}"]
            assert ordered(store.tasks, parent_id=task["id"]) == subtasks
            assert all(sub["list_id"] == task["list_id"] for sub in subtasks)
            seen.update((sub["id"], sub) for sub in subtasks)
        seen.update((task["id"], task) for task in top)
    assert seen == store.tasks  # nothing in the store that the API does not list


# --- random operations -----------------------------------------------------------------------


@dataclass
class Run:
    """One random session of one user: what the test knows from the API's answers."""

    user: User
    rng: random.Random
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    refused: int = 0

    def call(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> Any:
        """Send a request; anything but the expected statuses (or a 4xx the test's
        knowledge could not rule out) fails the test, with the log."""
        answer = self.user.request(method, path, **kwargs)
        self.log.append(f"{method} {path} {kwargs.get('json', '')} -> {answer.status_code}")
        if answer.status_code not in expect:
            self.log.append(f"  refused: {answer.json}")
            assert answer.status_code in (400, 404), (answer.status_code, answer.json, self.log)
            self.refused += 1
            return None
        return answer

    # knowledge kept from answers

    def learn(self, task: dict[str, Any]) -> None:
        """Remember a task's latest state; its subtasks follow it to another list."""
        self.tasks[task["id"]] = task
        for other in self.tasks.values():
            if other["parent_id"] == task["id"]:
                other["list_id"] = task["list_id"]

    def forget_task(self, task_id: str) -> None:
        """A deleted task takes its subtasks with it."""
        for gone in [t for t in self.tasks.values() if task_id in (t["id"], t["parent_id"])]:
            del self.tasks[gone["id"]]

    def some(self, rows: dict[str, dict[str, Any]], **where: Any) -> dict[str, Any] | None:
        """A random known row matching ``where``."""
        found = [r for r in rows.values() if all(r[k] == v for k, v in where.items())]
        return self.rng.choice(found) if found else None

    def random_task_fields(self) -> dict[str, Any]:
        """A valid body: sometimes due, sometimes recurring, with tags and a priority."""
        rng = self.rng
        body: dict[str, Any] = {"title": f"task {rng.randrange(10**6)}"}
        if rng.random() < 0.5:
            body["notes"] = rng.choice(["", "some notes", "línea\nsecond"])
        if rng.random() < 0.5:
            body["priority"] = rng.choice(["none", "low", "medium", "high"])
        if rng.random() < 0.4:
            body["tags"] = rng.sample(["home", "work", "errand", "x"], rng.randrange(1, 3))
        if rng.random() < 0.6:
            body["due_at"] = (START + timedelta(hours=rng.randrange(2_000))).isoformat()
            if rng.random() < 0.5:
                body["recurrence"] = rng.choice(RULES)
                body["timezone"] = rng.choice(ZONES)
        return body

    # operations

    def create_list(self) -> None:
        """POST /lists."""
        body: dict[str, Any] = {"title": f"list {self.rng.randrange(1000)}"}
        if self.rng.random() < 0.5:
            body["color"] = f"#{self.rng.randrange(16**6):06x}"
        answer = self.call("POST", LISTS, (201,), json=body)
        if answer is not None:
            self.lists[answer.json["id"]] = answer.json

    def change_list(self) -> None:
        """PATCH or PUT a list (the inbox included)."""
        row = self.some(self.lists)
        assert row is not None
        method = self.rng.choice(["PATCH", "PUT"])
        body = {"title": f"renamed {self.rng.randrange(1000)}"}
        if method == "PATCH" and self.rng.random() < 0.5:
            body = {"color": self.rng.choice([None, "#00ff00"])}  # type: ignore[dict-item]
        answer = self.call(method, f"{LISTS}/{row['id']}", (200,), json=body)
        if answer is not None:
            self.lists[row["id"]] = answer.json

    def move_list(self) -> None:
        """POST /lists/<id>/move after another list, or first."""
        row, after = self.some(self.lists), self.some(self.lists)
        assert row is not None and after is not None
        target = None if after["id"] == row["id"] else after["id"]
        answer = self.call("POST", f"{LISTS}/{row['id']}/move", (200,), json={"after": target})
        if answer is not None:
            self.lists[row["id"]] = answer.json

    def delete_list(self) -> None:
        """DELETE a list that is not the inbox, with its tasks."""
        row = self.some(self.lists, inbox=False)
        if row is None:
            return self.create_list()
        if self.call("DELETE", f"{LISTS}/{row['id']}", (204,)) is not None:
            del self.lists[row["id"]]
            for task in [t for t in self.tasks.values() if t["list_id"] == row["id"]]:
                self.tasks.pop(task["id"], None)
        return None

    def create_task(self) -> None:
        """POST /tasks: in the inbox, in a given list, or as a subtask."""
        body = self.random_task_fields()
        roll = self.rng.random()
        if roll < 0.3:
            parent = self.some(self.tasks, parent_id=None)
            if parent is not None:
                body["parent_id"] = parent["id"]
        elif roll < 0.8:
            body["list_id"] = self.rng.choice(list(self.lists))
        answer = self.call("POST", TASKS, (201,), json=body)
        if answer is not None:
            self.learn(answer.json)

    def patch_task(self) -> None:
        """PATCH some fields, sometimes the list (a move across lists) or the parent."""
        task = self.some(self.tasks)
        if task is None:
            return self.create_task()
        rng = self.rng
        body: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.2:
            body["list_id"] = rng.choice(list(self.lists))
        elif roll < 0.35:
            parent = self.some(self.tasks, parent_id=None)
            has_children = any(t["parent_id"] == task["id"] for t in self.tasks.values())
            if parent is not None and parent["id"] != task["id"] and not has_children:
                body["parent_id"] = parent["id"]
            else:
                body["parent_id"] = None
        if rng.random() < 0.5 or not body:
            body["title"] = f"patched {rng.randrange(10**6)}"
        if rng.random() < 0.3:
            body["completed"] = rng.random() < 0.6
        if rng.random() < 0.2:
            body["tags"] = ["patched"]
        answer = self.call("PATCH", f"{TASKS}/{task['id']}", (200,), json=body)
        if answer is not None:
            self.learn(answer.json)
        return None

    def put_task(self) -> None:
        """PUT a full replacement, sometimes into another list."""
        task = self.some(self.tasks)
        if task is None:
            return self.create_task()
        body = self.random_task_fields()
        if task["parent_id"] is None and self.rng.random() < 0.3:
            body["list_id"] = self.rng.choice(list(self.lists))
        answer = self.call("PUT", f"{TASKS}/{task['id']}", (200,), json=body)
        if answer is not None:
            self.learn(answer.json)
        return None

    def move_task(self) -> None:
        """POST /tasks/<id>/move: after a sibling or first, into another list, or under a
        parent or back to the top level."""
        task = self.some(self.tasks)
        if task is None:
            return self.create_task()
        rng = self.rng
        body: dict[str, Any] = {}
        roll = rng.random()
        has_children = any(t["parent_id"] == task["id"] for t in self.tasks.values())
        if roll < 0.25:
            body["list_id"] = rng.choice(list(self.lists))
            place = (body["list_id"], None)
        elif roll < 0.4 and not has_children:
            parent = self.some(self.tasks, parent_id=None)
            if parent is None or parent["id"] == task["id"]:
                body["parent_id"], place = None, (task["list_id"], None)
            else:
                body["parent_id"], place = parent["id"], (parent["list_id"], parent["id"])
        else:
            place = (task["list_id"], task["parent_id"])
        siblings = [
            t for t in self.tasks.values()
            if (t["list_id"], t["parent_id"]) == place and t["id"] != task["id"]
        ]  # fmt: skip
        after = rng.choice(siblings) if siblings else None
        body["after"] = None if after is None or rng.random() < 0.2 else after["id"]
        answer = self.call("POST", f"{TASKS}/{task['id']}/move", (200,), json=body)
        if answer is not None:
            self.learn(answer.json)
        return None

    def crowd(self) -> None:
        """Move many tasks of the biggest scope, in turn, right after the same task: the keys
        of that gap grow, and with a small key budget the scope gets renumbered."""
        scopes: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        for task in self.tasks.values():
            scopes.setdefault((task["list_id"], task["parent_id"]), []).append(task)
        crowded = max(scopes.values(), key=len, default=[])
        if len(crowded) < 3:
            return self.create_task()
        anchor, *others = self.rng.sample(crowded, len(crowded))
        for task in others[: self.rng.randrange(6, 14)]:
            answer = self.call("POST", f"{TASKS}/{task['id']}/move", (200,),
                               json={"after": anchor["id"]})  # fmt: skip
            if answer is not None:
                self.learn(answer.json)
        return None

    def complete_recurring(self) -> None:
        """Complete a recurring task (its next occurrence appears), sometimes twice."""
        task = self.some(self.tasks, completed=False)
        recurring = [t for t in self.tasks.values() if t["recurrence"] and not t["completed"]]
        if recurring:
            task = self.rng.choice(recurring)
        if task is None:
            return self.create_task()
        for _ in range(self.rng.choice([1, 1, 2])):  # a retried completion makes no second
            answer = self.call("PATCH", f"{TASKS}/{task['id']}", (200,), json={"completed": True})
            if answer is None:
                return None
            self.learn(answer.json)
        following = answer.json["next_occurrence_id"]
        if following is not None:  # made now, or earlier (and maybe deleted since)
            fetched = self.call("GET", f"{TASKS}/{following}", (200,))
            if fetched is not None:
                self.learn(fetched.json)
        return None

    def delete_task(self) -> None:
        """DELETE a task (with its subtasks)."""
        task = self.some(self.tasks)
        if task is not None and self.call("DELETE", f"{TASKS}/{task['id']}", (204,)):
            self.forget_task(task["id"])

    def clear_completed(self) -> None:
        """DELETE /tasks?completed=true."""
        if self.call("DELETE", TASKS, (200,), query_string={"completed": "true"}) is not None:
            for task in [t for t in self.tasks.values() if t["completed"]]:
                if task["id"] in self.tasks:
                    self.forget_task(task["id"])


OPERATIONS: list[tuple[Callable[[Run], None], float]] = [
    (Run.create_list, 3), (Run.change_list, 3), (Run.move_list, 3), (Run.delete_list, 1),
    (Run.create_task, 20), (Run.patch_task, 10), (Run.put_task, 5), (Run.move_task, 12),
    (Run.crowd, 3), (Run.complete_recurring, 5), (Run.delete_task, 3),
    (Run.clear_completed, 0.3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "steps", "max_key"),
    [(1, 250, DEFAULT_MAX_KEY), (2, 250, DEFAULT_MAX_KEY), (3, 250, 3)],
    ids=["seed1", "seed2", "seed3-renumbering"],
)
def test_replaying_the_feed_reproduces_lists_and_tasks(
    make_user: Callable[..., User],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    steps: int,
    max_key: int,
) -> None:
    """Random operations and incremental syncs; at checkpoints, the incremental store, a
    replay from scratch and the API's listings are equal, in the same order."""
    monkeypatch.setattr(positions, "MAX_KEY", max_key)
    renumbered: list[int] = []
    renumber = positions._renumber

    def counted(*args: Any, **kwargs: Any) -> None:
        renumbered.append(1)
        renumber(*args, **kwargs)

    monkeypatch.setattr(positions, "_renumber", counted)
    rng = random.Random(seed)
    run = Run(make_user(f"replay {seed}"), rng)
    (inbox,) = every_page(run.user, LISTS)
    run.lists[inbox["id"]] = inbox
    store = Store()
    operations, weights = zip(*OPERATIONS, strict=True)
    for step in range(steps):
        rng.choices(operations, weights)[0](run)
        if rng.random() < 0.15:
            store.sync(run.user, rng)
        if step % 40 == 39:
            check(run.user, store, rng)
    check(run.user, store, rng)
    assert len(run.tasks) >= 10 and len(run.lists) >= 2, run.log
    assert run.refused < steps // 4, run.log  # the operations were mostly valid ones
    assert any(task["parent_id"] for task in store.tasks.values()), "no subtask was made"
    assert any(task["next_occurrence_id"] for task in store.tasks.values()), "nothing recurred"
    assert bool(renumbered) == (max_key < DEFAULT_MAX_KEY), len(renumbered)
