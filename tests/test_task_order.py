"""Manual order and subtasks through HTTP: new tasks first, moves (first, middle, last,
across lists, under parents), sort=position paging, random moves against a model kept in
the test, list moves, and the subtask rules."""

from __future__ import annotations

import random
import uuid
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.conftest import User
from tests.support import assert_error

LISTS = "/api/v1/lists"
TASKS = "/api/v1/tasks"
CHANGES = f"{TASKS}/changes"
MAX_KEY = 100  # positions.MAX_KEY: longer keys renumber their scope


def task_path(task: dict[str, Any] | str) -> str:
    """The URL of a task (given as its JSON or its id)."""
    return f"{TASKS}/{task['id'] if isinstance(task, dict) else task}"


def create_list(user: User, title: str = "a list") -> dict[str, Any]:
    """POST /lists and return the list."""
    answer = user.request("POST", LISTS, json={"title": title})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def walk(user: User, path: str, limit: int = 100) -> list[dict[str, Any]]:
    """Every item of a task or list listing, following next_cursor in pages of ``limit``."""
    items: list[dict[str, Any]] = []
    separator = "&" if "?" in path else "?"
    answer = user.request("GET", f"{path}{separator}limit={limit}")
    for _ in range(1000):
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        items += body["items"]
        if body["next_cursor"] is None:
            assert "Link" not in answer.headers
            return items
        assert body["next_cursor"] in unquote(answer.headers["Link"])
        cursor = quote(body["next_cursor"])
        answer = user.request("GET", f"{path}{separator}limit={limit}&cursor={cursor}")
    raise AssertionError("pagination did not end")


def order(user: User, list_id: str, limit: int = 100) -> list[str]:
    """The ids of a list's top-level tasks in their order."""
    return [t["id"] for t in walk(user, f"{LISTS}/{list_id}/tasks", limit)]


def subtasks(user: User, parent: dict[str, Any]) -> list[str]:
    """The ids of a task's subtasks in their order."""
    return [t["id"] for t in walk(user, f"{TASKS}?parent_id={parent['id']}")]


def move(user: User, task: dict[str, Any] | str, **body: Any) -> Any:
    """POST /tasks/<id>/move."""
    return user.request("POST", f"{task_path(task)}/move", json=body)


def moved(user: User, task: dict[str, Any] | str, **body: Any) -> dict[str, Any]:
    """A move that must succeed; the task's new state."""
    answer = move(user, task, **body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def get(user: User, task: dict[str, Any]) -> dict[str, Any]:
    """The task's current state."""
    answer = user.request("GET", task_path(task))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def inbox_id(user: User) -> str:
    """The user's inbox id."""
    (inbox,) = [row for row in walk(user, LISTS) if row["inbox"]]
    return str(inbox["id"])


def changes_since(user: User, token: str | None) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``token`` and the token to continue from."""
    found: list[dict[str, Any]] = []
    while True:
        query = f"?since={token}" if token else ""
        page = user.request("GET", f"{CHANGES}{query}").get_json()
        found += page["changes"]
        token = page["next"]
        if not page["has_more"]:
            return found, token


Places = dict[str, tuple[str, str | None, str]]


def replay(user: User, store: Places | None = None, token: str | None = None) -> tuple[Places, str]:
    """(list, parent, position) of every task: ``store`` (empty: from the beginning) with the
    feed's changes after ``token`` applied, and the token to continue from."""
    store = dict(store or {})
    found, token = changes_since(user, token)
    for change in found:
        if change["type"] != "task":
            continue
        if change["deleted"]:
            store.pop(change["id"], None)
        else:
            task = change["task"]
            store[change["id"]] = (task["list_id"], task["parent_id"], task["position"])
    return store, token


def places(tasks: list[dict[str, Any]]) -> Places:
    """(list, parent, position) of the given tasks, as listed."""
    return {t["id"]: (t["list_id"], t["parent_id"], t["position"]) for t in tasks}


# --- new tasks and simple moves --------------------------------------------------------------


def test_new_tasks_go_first(alice: User) -> None:
    """A new task is first in its list (inbox or named), and a new subtask first under its
    parent; the listing of a list is in position order by default."""
    inbox, other = inbox_id(alice), create_list(alice)["id"]
    a, b, c = (alice.create_task(title=n) for n in "abc")
    x, y = (alice.create_task(title=n, list_id=other) for n in "xy")
    assert order(alice, inbox) == [c["id"], b["id"], a["id"]]
    assert order(alice, other) == [y["id"], x["id"]]
    assert a["position"] > b["position"] > c["position"]
    s1 = alice.create_task(title="s1", parent_id=a["id"])
    s2 = alice.create_task(title="s2", parent_id=a["id"])
    assert subtasks(alice, a) == [s2["id"], s1["id"]]
    assert order(alice, inbox) == [c["id"], b["id"], a["id"]]  # subtasks are not top level


def test_move_first_middle_last(alice: User) -> None:
    """Moves to the first, a middle and the last place write only the moved task: its
    version and ETag change, every other task stays as it was."""
    list_id = create_list(alice)["id"]
    d, c, b, a = (alice.create_task(title=n, list_id=list_id) for n in "dcba")
    assert order(alice, list_id) == [a["id"], b["id"], c["id"], d["id"]]

    first = move(alice, d, after=None)
    assert first.status_code == 200 and first.headers["ETag"] == '"2"'
    assert first.get_json()["version"] == 2 and first.get_json()["list_id"] == list_id
    assert order(alice, list_id) == [d["id"], a["id"], b["id"], c["id"]]
    moved(alice, d, after=b["id"])
    assert order(alice, list_id) == [a["id"], b["id"], d["id"], c["id"]]
    moved(alice, a, after=c["id"])
    assert order(alice, list_id) == [b["id"], d["id"], c["id"], a["id"]]
    moved(alice, c, after=d["id"])  # already there: still a write
    assert order(alice, list_id) == [b["id"], d["id"], c["id"], a["id"]]
    assert [get(alice, t)["version"] for t in (a, b, c, d)] == [2, 1, 2, 3]
    assert get(alice, b) == b


def test_move_preconditions_and_bad_moves(alice: User) -> None:
    """If-Match guards a move; `after` must be another task of the same list and parent (400),
    an unknown one is 404; a move body needs `after` and nothing unknown."""
    list_id, other = create_list(alice)["id"], create_list(alice)["id"]
    b, a = (alice.create_task(title=n, list_id=list_id) for n in "ba")
    elsewhere = alice.create_task(title="elsewhere", list_id=other)
    sub = alice.create_task(title="sub", parent_id=a["id"])
    stale = alice.request(
        "POST", f"{task_path(a)}/move", json={"after": b["id"]}, headers={"If-Match": '"9"'}
    )
    assert_error(stale, 412, "precondition_failed")
    for body, field in [
        ({"after": a["id"]}, "after"),
        ({"after": elsewhere["id"]}, "after"),
        ({"after": sub["id"]}, "after"),
        ({"list_id": other, "after": b["id"]}, "after"),
        ({}, "after"),
        ({"after": b["id"], "position": "a0"}, "position"),
        ({"after": "not-a-uuid"}, "after"),
        ({"after": 5}, "after"),
    ]:
        details = assert_error(move(alice, a, **body), 400, "validation_error")["details"]
        assert [d["field"] for d in details] == [field], (body, details)
    assert_error(move(alice, a, after=str(uuid.uuid4())), 404, "not_found")
    assert_error(move(alice, str(uuid.uuid4()), after=None), 404, "not_found")
    assert order(alice, list_id) == [a["id"], b["id"]] and get(alice, a) == a
    ok = alice.request(
        "POST", f"{task_path(a)}/move", json={"after": b["id"]}, headers={"If-Match": '"1"'}
    )
    assert ok.status_code == 200 and order(alice, list_id) == [b["id"], a["id"]]


def test_move_across_lists_takes_the_subtasks(alice: User) -> None:
    """A task moved into another list lands after `after` there, top level, and its subtasks
    follow it (same parent, same order, new list, new versions reported by the feed)."""
    source, target = create_list(alice)["id"], create_list(alice)["id"]
    parent = alice.create_task(title="parent", list_id=source)
    s1 = alice.create_task(title="s1", parent_id=parent["id"])
    s2 = alice.create_task(title="s2", parent_id=parent["id"])
    y, x = (alice.create_task(title=n, list_id=target) for n in "yx")
    _, token = changes_since(alice, None)

    result = moved(alice, parent, list_id=target, after=x["id"])
    assert result["list_id"] == target and result["parent_id"] is None
    assert order(alice, target) == [x["id"], parent["id"], y["id"]]
    assert order(alice, source) == []
    assert subtasks(alice, parent) == [s2["id"], s1["id"]]
    for sub in (s1, s2):
        now = get(alice, sub)
        assert (now["list_id"], now["parent_id"], now["version"]) == (target, parent["id"], 2)
        assert now["updated_at"] == result["updated_at"] > sub["updated_at"]
    found, _ = changes_since(alice, token)
    assert sorted(c["id"] for c in found) == sorted([parent["id"], s1["id"], s2["id"]])
    assert all(c["task"]["list_id"] == target for c in found)

    # `after` must be in the destination: a task of the source list is 400, nothing moves.
    back = move(alice, parent, list_id=source, after=y["id"])
    assert [d["field"] for d in assert_error(back, 400, "validation_error")["details"]] == ["after"]
    assert get(alice, parent)["list_id"] == target
    moved(alice, parent, list_id=source, after=None)
    assert order(alice, source) == [parent["id"]]
    assert {get(alice, s)["list_id"] for s in (s1, s2)} == {source}


def test_move_under_a_parent_and_back(alice: User) -> None:
    """parent_id in a move makes a subtask (after a sibling), null brings it back to the top
    level of the parent's list; a parent in another list moves the task there."""
    home, away = create_list(alice)["id"], create_list(alice)["id"]
    loose = alice.create_task(title="loose", list_id=home)
    parent = alice.create_task(title="parent", list_id=away)
    sibling = alice.create_task(title="sibling", parent_id=parent["id"])
    under = moved(alice, loose, parent_id=parent["id"], after=sibling["id"])
    assert (under["list_id"], under["parent_id"]) == (away, parent["id"])
    assert subtasks(alice, parent) == [sibling["id"], loose["id"]]
    assert order(alice, home) == []
    top = moved(alice, loose, parent_id=None, after=parent["id"])
    assert (top["list_id"], top["parent_id"]) == (away, None)
    assert order(alice, away) == [parent["id"], loose["id"]]
    assert subtasks(alice, parent) == [sibling["id"]]


# --- sort=position and paging ----------------------------------------------------------------


def test_sort_position_is_the_default_in_a_list_and_pages(alice: User) -> None:
    """Inside a list position is the default sort, keyset-paginated: pages of 2 give the
    same order as one page; -position reverses it; outside a list position needs list_id."""
    list_id = create_list(alice)["id"]
    tasks = [alice.create_task(title=f"t{i}", list_id=list_id) for i in range(7)]
    rng = random.Random(7)
    for task in tasks:
        others = [t for t in tasks if t is not task]
        moved(alice, task, after=rng.choice([None, *[t["id"] for t in others]]))
    whole = order(alice, list_id)
    assert sorted(whole) == sorted(t["id"] for t in tasks)
    positions = [t["position"] for t in walk(alice, f"{LISTS}/{list_id}/tasks")]
    assert positions == sorted(positions) and len(set(positions)) == 7
    for limit in (1, 2, 3):
        assert order(alice, list_id, limit) == whole
        paged = walk(alice, f"{TASKS}?list_id={list_id}", limit)
        assert [t["id"] for t in paged] == whole
    explicit = walk(alice, f"{LISTS}/{list_id}/tasks?sort=position", 2)
    assert [t["id"] for t in explicit] == whole
    reverse = walk(alice, f"{LISTS}/{list_id}/tasks?sort=-position", 3)
    assert [t["id"] for t in reverse] == whole[::-1]
    by_title = walk(alice, f"{LISTS}/{list_id}/tasks?sort=title", 3)
    assert [t["title"] for t in by_title] == [f"t{i}" for i in range(7)]
    newest = walk(alice, TASKS, 3)  # outside a list: -created_at
    assert [t["id"] for t in newest] == [t["id"] for t in reversed(tasks)]
    body = assert_error(alice.request("GET", f"{TASKS}?sort=position"), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["sort"]
    other = inbox_id(alice)
    answer = alice.request("GET", f"{LISTS}/{list_id}/tasks?list_id={other}")
    assert [d["field"] for d in assert_error(answer, 400, "validation_error")["details"]] == [
        "list_id"
    ]


def test_a_cursor_is_bound_to_its_list(alice: User) -> None:
    """A position cursor of one list is 400 on another list of the same user."""
    one, two = create_list(alice)["id"], create_list(alice)["id"]
    for i in range(3):
        alice.create_task(title=f"a{i}", list_id=one)
        alice.create_task(title=f"b{i}", list_id=two)
    cursor = alice.request("GET", f"{LISTS}/{one}/tasks?limit=1").get_json()["next_cursor"]
    answer = alice.request("GET", f"{LISTS}/{two}/tasks?limit=1&cursor={cursor}")
    assert [d["field"] for d in assert_error(answer, 400, "validation_error")["details"]] == [
        "cursor"
    ]


# --- random moves against a model -----------------------------------------------------------


def _random_moves(user: User, lists: list[str], model: dict[str, list[str]], count: int,
                  rng: random.Random) -> None:  # fmt: skip
    """``count`` random moves (within and across lists), applied to the server and the model;
    the orders are compared every 100 moves, over small pages."""
    where = {task: list_id for list_id, tasks in model.items() for task in tasks}
    for step in range(1, count + 1):
        task = rng.choice(list(where))
        source = where[task]
        target = source if rng.random() < 0.7 else rng.choice(lists)
        siblings = [t for t in model[target] if t != task]
        after = rng.choice([None, *siblings]) if rng.random() < 0.9 else None
        if rng.random() < 0.2 and siblings:  # a hot spot: right after the first
            after = siblings[0]
        body: dict[str, Any] = {"after": after}
        if target != source or rng.random() < 0.3:
            body["list_id"] = target
        moved(user, task, **body)
        model[source].remove(task)
        model[target].insert(0 if after is None else model[target].index(after) + 1, task)
        where[task] = target
        if step % 100 == 0:
            for list_id in lists:
                assert order(user, list_id, limit=7) == model[list_id], step


def test_random_moves_match_a_model(alice: User, is_postgres: bool) -> None:
    """1,000 seeded random moves over 3 lists of 30 tasks: after every 100, each list's
    order (read in pages of 7) equals a plain Python list kept in the test; the positions
    stay short and the changes feed rebuilds every task's place."""
    rng = random.Random(20261122 + is_postgres)
    lists = [inbox_id(alice), create_list(alice)["id"], create_list(alice)["id"]]
    model: dict[str, list[str]] = {}
    for list_id in lists:
        model[list_id] = [alice.create_task(title=f"t{i}", list_id=list_id)["id"]
                          for i in range(10)][::-1]  # fmt: skip
    synced, token = replay(alice)
    _random_moves(alice, lists, model, 1000, rng)
    for list_id in lists:
        assert order(alice, list_id) == model[list_id]
    listed = [t for list_id in lists for t in walk(alice, f"{LISTS}/{list_id}/tasks")]
    assert max(len(t["position"]) for t in listed) <= MAX_KEY
    assert replay(alice, synced, token)[0] == places(listed)  # a client that kept up
    assert replay(alice)[0] == places(listed)  # a client starting now


def test_a_hot_spot_renumbers_and_keeps_the_order(alice: User) -> None:
    """Moving two tasks in turn right after the same task halves one gap each time, until
    the keys outgrow their bound and the list is renumbered: the order stays the model's,
    keys stay bounded, and the feed carries the renumbered keys."""
    list_id = create_list(alice)["id"]
    ids = [alice.create_task(title=f"t{i}", list_id=list_id)["id"] for i in range(6)][::-1]
    anchor, x, y = ids[0], ids[4], ids[5]
    model = list(ids)
    synced, token = replay(alice)
    longest = 0
    for step in range(650):
        task = x if step % 2 == 0 else y
        result = moved(alice, task, after=anchor)
        longest = max(longest, len(result["position"]))
        model.remove(task)
        model.insert(1, task)
    assert longest > 50  # the gap really was squeezed
    # A renumbering rewrote every other task of the list as a new version.
    assert [get(alice, t)["version"] for t in ids[:4]] == [2, 2, 2, 2]
    assert order(alice, list_id, limit=4) == model
    listed = walk(alice, f"{LISTS}/{list_id}/tasks")
    assert max(len(t["position"]) for t in listed) <= MAX_KEY
    assert replay(alice, synced, token)[0] == places(listed)  # renumbered keys reach the client


def test_list_moves_match_a_model(alice: User, bob: User, is_postgres: bool) -> None:
    """300 seeded random list moves (the inbox among them) against a model: GET /lists, read
    in pages of 4, keeps the model's order; bad moves are 400/404 and change nothing."""
    rng = random.Random(99 + is_postgres)
    model = [inbox_id(alice)] + [create_list(alice, f"l{i}")["id"] for i in range(8)]
    assert [row["id"] for row in walk(alice, LISTS, 4)] == model
    for step in range(300):
        row = rng.choice(model)
        others = [r for r in model if r != row]
        after = rng.choice([None, *others])
        answer = alice.request("POST", f"{LISTS}/{row}/move", json={"after": after})
        assert answer.status_code == 200, answer.get_json()
        model.remove(row)
        model.insert(0 if after is None else model.index(after) + 1, row)
        if step % 50 == 0:
            assert [r["id"] for r in walk(alice, LISTS, 4)] == model
    assert [r["id"] for r in walk(alice, LISTS, 4)] == model
    answer = alice.request("POST", f"{LISTS}/{model[0]}/move", json={"after": model[0]})
    assert [d["field"] for d in assert_error(answer, 400, "validation_error")["details"]] == [
        "after"
    ]
    bobs = inbox_id(bob)
    answer = alice.request("POST", f"{LISTS}/{model[0]}/move", json={"after": bobs})
    assert_error(answer, 404, "not_found")
    assert [r["id"] for r in walk(alice, LISTS)] == model


# --- subtasks --------------------------------------------------------------------------------


def test_subtask_lives_in_its_parents_list(alice: User) -> None:
    """A subtask takes its parent's list; naming that list is fine, naming another is 400."""
    home, other = create_list(alice)["id"], create_list(alice)["id"]
    parent = alice.create_task(title="parent", list_id=home)
    sub = alice.create_task(title="sub", parent_id=parent["id"])
    assert (sub["list_id"], sub["parent_id"]) == (home, parent["id"])
    named = alice.create_task(title="named", parent_id=parent["id"], list_id=home)
    assert (named["list_id"], named["parent_id"]) == (home, parent["id"])
    for list_id in (other, inbox_id(alice)):
        answer = alice.request(
            "POST", TASKS, json={"title": "x", "parent_id": parent["id"], "list_id": list_id}
        )
        details = assert_error(answer, 400, "validation_error")["details"]
        assert [d["field"] for d in details] == ["list_id"]
        answer = alice.request(
            "PATCH", task_path(sub), json={"list_id": list_id, "parent_id": parent["id"]}
        )
        assert [d["field"] for d in assert_error(answer, 400, "validation_error")["details"]] == [
            "list_id"
        ]  # fmt: skip
    assert subtasks(alice, parent) == [named["id"], sub["id"]]
    assert get(alice, sub) == sub


def test_subtask_rules(alice: User) -> None:
    """One level only: a subtask of a subtask, a task with subtasks becoming a subtask, and a
    task as its own parent are 400 on create, PUT, PATCH and move; nothing changes."""
    parent = alice.create_task(title="parent")
    sub = alice.create_task(title="sub", parent_id=parent["id"])
    loner = alice.create_task(title="loner")
    before = {t["id"]: get(alice, t) for t in (parent, sub, loner)}
    attempts = [
        ("POST", TASKS, {"title": "x", "parent_id": sub["id"]}),
        ("PATCH", task_path(loner), {"parent_id": sub["id"]}),
        ("PUT", task_path(loner), {"title": "loner", "parent_id": sub["id"]}),
        ("POST", f"{task_path(loner)}/move", {"parent_id": sub["id"], "after": None}),
        ("PATCH", task_path(parent), {"parent_id": loner["id"]}),
        ("PUT", task_path(parent), {"title": "parent", "parent_id": loner["id"]}),
        ("POST", f"{task_path(parent)}/move", {"parent_id": loner["id"], "after": None}),
        ("PATCH", task_path(loner), {"parent_id": loner["id"]}),
        ("PUT", task_path(loner), {"title": "loner", "parent_id": loner["id"]}),
        ("POST", f"{task_path(loner)}/move", {"parent_id": loner["id"], "after": None}),
        ("PATCH", task_path(sub), {"parent_id": sub["id"]}),
    ]
    for method, path, body in attempts:
        answer = alice.request(method, path, json=body)
        details = assert_error(answer, 400, "validation_error")["details"]
        assert [d["field"] for d in details] == ["parent_id"], (method, path, body)
    assert {t: get(alice, before[t]) for t in before} == before
    assert subtasks(alice, parent) == [sub["id"]]


def test_listing_shows_top_level_unless_parent_id(alice: User) -> None:
    """Listings show top-level tasks only; parent_id lists one task's subtasks, in order,
    also inside its list; a subtask PATCHed to parent_id null is top level again, first."""
    list_id = create_list(alice)["id"]
    parent = alice.create_task(title="parent", list_id=list_id)
    other = alice.create_task(title="other", list_id=list_id)
    s1 = alice.create_task(title="s1", parent_id=parent["id"])
    s2 = alice.create_task(title="s2", parent_id=parent["id"])
    assert order(alice, list_id) == [other["id"], parent["id"]]
    assert [t["id"] for t in walk(alice, TASKS)] == [other["id"], parent["id"]]
    assert subtasks(alice, parent) == [s2["id"], s1["id"]]
    inside = walk(alice, f"{LISTS}/{list_id}/tasks?parent_id={parent['id']}", 1)
    assert [t["id"] for t in inside] == [s2["id"], s1["id"]]
    assert walk(alice, f"{TASKS}?parent_id={other['id']}") == []
    freed = alice.request("PATCH", task_path(s1), json={"parent_id": None}).get_json()
    assert (freed["list_id"], freed["parent_id"]) == (list_id, None)
    assert order(alice, list_id) == [s1["id"], other["id"], parent["id"]]
    assert subtasks(alice, parent) == [s2["id"]]


@pytest.mark.parametrize("how", ["PATCH", "PUT", "move"])
def test_moving_a_parent_moves_its_subtasks(alice: User, how: str) -> None:
    """A new list_id for a parent (PATCH, PUT or move) takes its subtasks along."""
    home, away = create_list(alice)["id"], create_list(alice)["id"]
    parent = alice.create_task(title="parent", list_id=home)
    subs = [alice.create_task(title=f"s{i}", parent_id=parent["id"]) for i in range(2)]
    if how == "move":
        result = moved(alice, parent, list_id=away, after=None)
    else:
        body = {"list_id": away} if how == "PATCH" else {"title": "parent", "list_id": away}
        answer = alice.request(how, task_path(parent), json=body)
        assert answer.status_code == 200, answer.get_json()
        result = answer.get_json()
    assert (result["list_id"], result["parent_id"]) == (away, None)
    assert order(alice, away) == [parent["id"]] and order(alice, home) == []
    assert [get(alice, s)["list_id"] for s in subs] == [away, away]
    assert subtasks(alice, parent) == [subs[1]["id"], subs[0]["id"]]


def test_deleting_a_parent_deletes_its_subtasks(alice: User) -> None:
    """DELETE of a parent removes its subtasks, with a tombstone each in the feed."""
    parent = alice.create_task(title="parent")
    subs = [alice.create_task(title=f"s{i}", parent_id=parent["id"]) for i in range(3)]
    keep = alice.create_task(title="keep")
    _, token = changes_since(alice, None)
    assert alice.request("DELETE", task_path(parent)).status_code == 204
    for task in (parent, *subs):
        assert_error(alice.request("GET", task_path(task)), 404, "not_found")
    found, _ = changes_since(alice, token)
    assert sorted(found, key=lambda c: c["id"]) == sorted(
        ({"id": t["id"], "type": "task", "deleted": True} for t in (parent, *subs)),
        key=lambda c: c["id"],
    )
    assert [t["id"] for t in walk(alice, TASKS)] == [keep["id"]]


def test_another_users_parent_is_404(alice: User, bob: User) -> None:
    """Alice's task as a parent, or as a subtask listing, is Bob's 404; his task is untouched."""
    hers = alice.create_task(title="hers")
    his = bob.create_task(title="his")
    for method, path, body in [
        ("POST", TASKS, {"title": "x", "parent_id": hers["id"]}),
        ("PATCH", task_path(his), {"parent_id": hers["id"]}),
        ("PUT", task_path(his), {"title": "his", "parent_id": hers["id"]}),
        ("POST", f"{task_path(his)}/move", {"parent_id": hers["id"], "after": None}),
        ("GET", f"{TASKS}?parent_id={hers['id']}", None),
    ]:
        assert_error(bob.request(method, path, json=body), 404, "not_found")
    assert get(bob, his) == his
    assert subtasks(alice, hers) == []
