"""Task listing: keyset pagination, Link headers, sorts, filters and signed cursors."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask

from taskapi.services.cursors import open_token, seal
from tests.conftest import TEST_SECRET, User
from tests.support import assert_error

TASKS = "/api/v1/tasks"
PRIORITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
LINK = re.compile(r'^<([^>]+)>; rel="next"$')


def get_page(user: User, **params: Any) -> Any:
    """GET /tasks with query parameters."""
    query = urlencode(params)
    return user.request("GET", f"{TASKS}?{query}" if query else TASKS)


def walk(user: User, **params: Any) -> list[dict[str, Any]]:
    """Every task of a listing, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        answer = get_page(user, **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.get_json()
        items += answer.get_json()["items"]
        cursor = answer.get_json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def ids(tasks: list[dict[str, Any]]) -> list[str]:
    """The ids of tasks, in order."""
    return [t["id"] for t in tasks]


def test_walks_120_tasks_in_pages_of_50(alice: User, bob: User) -> None:
    """120 tasks come back exactly once over pages of 50, 50 and 20, with Link until the end."""
    created = [alice.create_task(title=f"task {i:03}") for i in range(120)]
    bob.create_task(title="bob's")
    pages: list[list[str]] = []
    answer = get_page(alice, limit=50)
    while True:
        assert answer.status_code == 200
        body = answer.get_json()
        assert set(body) == {"items", "next_cursor"}
        pages.append(ids(body["items"]))
        if body["next_cursor"] is None:
            assert "Link" not in answer.headers
            break
        link = LINK.match(answer.headers["Link"])
        assert link, answer.headers["Link"]
        query = parse_qs(urlsplit(link.group(1)).query)
        assert query["cursor"] == [body["next_cursor"]] and query["limit"] == ["50"]
        answer = alice.client.get(link.group(1), headers=alice.headers)
    assert [len(p) for p in pages] == [50, 50, 20]
    seen = [i for page in pages for i in page]
    assert len(set(seen)) == 120 and set(seen) == set(ids(created))
    assert seen == ids(created)[::-1]  # default sort: newest first
    assert walk(bob, limit=50)[0]["title"] == "bob's" and len(walk(bob)) == 1


def test_exact_multiple_of_limit_ends_with_null_cursor(alice: User) -> None:
    """When the last page is full, next_cursor is already null on it (no empty extra page)."""
    for i in range(4):
        alice.create_task(title=f"t{i}")
    first = get_page(alice, limit=2).get_json()
    second = get_page(alice, limit=2, cursor=first["next_cursor"])
    assert len(second.get_json()["items"]) == 2 and second.get_json()["next_cursor"] is None
    assert "Link" not in second.headers


def test_link_keeps_other_query_parameters(alice: User, bob: User) -> None:
    """The Link next URL carries the filters and sort, and following it continues the listing."""
    for i in range(5):
        alice.create_task(title=f"Match {i}", priority="high", tags=["x"])
    alice.create_task(title="Match but low", priority="low", tags=["x"])
    params = {"limit": 2, "priority": "high", "tag": "x", "q": "match", "sort": "title"}
    answer, titles = get_page(alice, **params), []
    while True:
        titles += [t["title"] for t in answer.get_json()["items"]]
        if "Link" not in answer.headers:
            break
        url = LINK.match(answer.headers["Link"]).group(1)  # type: ignore[union-attr]
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert {k: query[k] for k in params} == {k: str(v) for k, v in params.items()}
        answer = alice.client.get(url, headers=alice.headers)
        assert answer.status_code == 200
    assert titles == [f"Match {i}" for i in range(5)]
    assert get_page(bob, **params).get_json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "title", "-due_at"])
@pytest.mark.parametrize("victim", ["seen", "unseen"])
def test_changes_between_pages_neither_repeat_nor_skip(
    alice: User, bob: User, sort: str, victim: str
) -> None:
    """A task created and one deleted between pages do not make others repeat or vanish."""
    dues = [f"2026-01-{i + 1:02}T00:00:00Z" if i % 3 else None for i in range(12)]
    original = [alice.create_task(title=f"t{i:02}", due_at=due) for i, due in enumerate(dues)]
    first = get_page(alice, limit=4, sort=sort).get_json()
    seen = ids(first["items"])
    unseen = [i for i in ids(original) if i not in seen]
    gone = seen[1] if victim == "seen" else unseen[len(unseen) // 2]
    assert bob.request("DELETE", f"{TASKS}/{gone}").status_code == 404
    assert alice.request("DELETE", f"{TASKS}/{gone}").status_code == 204
    new = alice.create_task(title="t055", due_at="2026-01-05T12:00:00Z")
    cursor = first["next_cursor"]
    while cursor:
        page = get_page(alice, limit=4, sort=sort, cursor=cursor).get_json()
        seen += ids(page["items"])
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)), "a task was listed twice"
    expected = set(ids(original)) - ({gone} if victim == "unseen" else set())
    assert expected <= set(seen) <= expected | {new["id"]}


def python_order(tasks: list[dict[str, Any]], sort: str) -> list[str]:
    """The expected order: by the field, ties by id, descending reverses both; no due_at last."""
    name, descending = sort.lstrip("-"), sort.startswith("-")

    def key(task: dict[str, Any]) -> tuple[Any, str]:
        value = task[name]
        return (PRIORITY_RANK[value] if name == "priority" else value, task["id"])

    dated = [t for t in tasks if t[name] is not None]
    undated = [t for t in tasks if t[name] is None]
    ordered = sorted(dated, key=key, reverse=descending)
    ordered += sorted(undated, key=lambda t: t["id"], reverse=descending)
    return ids(ordered)


@pytest.fixture
def sortable(alice: User) -> list[dict[str, Any]]:
    """Tasks with tied and distinct titles, priorities, due dates and update times."""
    specs = [
        ("banana", "high", "2026-03-01T00:00:00Z"), ("apple", "none", None),
        ("cherry", "low", "2026-01-01T00:00:00Z"), ("apple", "medium", "2026-03-01T00:00:00Z"),
        ("banana", "none", None), ("date", "high", "2026-02-01T00:00:00Z"),
        ("apple", "low", "2025-12-31T23:00:00-02:00"), ("egg", "medium", None),
        ("fig", "none", "2026-01-01T01:00:00Z"), ("cherry", "high", None),
        ("grape", "low", "2026-03-01T00:00:00Z"), ("apple", "none", "2026-02-01T00:00:00Z"),
    ]  # fmt: skip
    created = [alice.create_task(title=t, priority=p, due_at=d) for t, p, d in specs]
    for task in (
        created[7],
        created[2],
        created[10],
        created[0],
    ):  # updated_at differs from created
        assert (
            alice.request("PATCH", f"{TASKS}/{task['id']}", json={"notes": "touched"}).status_code
            == 200
        )
    return walk(alice, limit=100)


SORTS = ["created_at", "updated_at", "due_at", "priority", "title"]


@pytest.mark.parametrize("sort", SORTS + [f"-{s}" for s in SORTS])
@pytest.mark.parametrize("limit", [100, 3])
def test_sort_orders(
    alice: User, bob: User, sortable: list[dict[str, Any]], sort: str, limit: int
) -> None:
    """Each sort matches a Python-sorted expectation, across page boundaries too."""
    listed = walk(alice, sort=sort, limit=limit)
    assert ids(listed) == python_order(sortable, sort)
    assert walk(bob, sort=sort, limit=limit) == []


def test_default_sort_is_newest_first(alice: User, sortable: list[dict[str, Any]]) -> None:
    """Without sort, the listing is -created_at."""
    assert ids(walk(alice, limit=5)) == python_order(sortable, "-created_at")


@pytest.fixture
def filterable(alice: User, bob: User) -> dict[str, str]:
    """Named tasks of Alice's covering every filter; Bob has look-alikes that must not show."""
    specs = {
        "done": {"title": "Done Thing", "completed": True, "priority": "high", "tags": ["work"]},
        "percent": {"title": "100% sure", "notes": "", "tags": ["workout"]},
        "zeros": {"title": "1000 sure", "notes": "fine print", "priority": "low"},
        "under": {"title": "snake_case", "due_at": "2026-05-01T00:00:00Z"},
        "plain": {"title": "snakeXcase", "due_at": "2026-06-01T00:00:00Z", "tags": ["Work"]},
        "notes": {"title": "x", "notes": "Call MOM about it", "due_at": "2026-07-01T00:00:00Z"},
        "unicode": {"title": "Caf\u00e9 Cr\u00e8me", "notes": "\u00c5ngstr\u00f6m"},
        "slash": {"title": "either/or"},  # "/" is the LIKE escape character
    }
    named = {name: alice.create_task(**fields)["id"] for name, fields in specs.items()}
    for fields in specs.values():
        bob.create_task(**fields)
    return named


FILTERS = [
    pytest.param({"completed": "true"}, {"done"}, id="completed-true"),
    pytest.param({"completed": "false"},
                 {"percent", "zeros", "under", "plain", "notes", "unicode", "slash"},
                 id="completed-false"),
    pytest.param({"priority": "high"}, {"done"}, id="priority-high"),
    pytest.param({"priority": "none"}, {"percent", "under", "plain", "notes", "unicode", "slash"},
                 id="priority-none"),
    pytest.param({"tag": "work"}, {"done"}, id="tag-exact-and-case"),
    pytest.param({"tag": "nothing"}, set(), id="tag-missing"),
    pytest.param({"q": "SURE"}, {"percent", "zeros"}, id="q-case-insensitive"),
    pytest.param({"q": "mom"}, {"notes"}, id="q-in-notes"),
    pytest.param({"q": "CR\u00c8ME"}, {"unicode"}, id="q-non-ascii-upper"),
    pytest.param({"q": "\u00e5ngstr\u00d6m"}, {"unicode"}, id="q-non-ascii-mixed"),
    pytest.param({"q": "0%"}, {"percent"}, id="q-percent-literal"),
    pytest.param({"q": "%"}, {"percent"}, id="q-percent-only"),
    pytest.param({"q": "e_c"}, {"under"}, id="q-underscore-literal"),
    pytest.param({"q": "_"}, {"under"}, id="q-underscore-only"),
    pytest.param({"q": "\\"}, set(), id="q-backslash"),
    pytest.param({"q": "r/o"}, {"slash"}, id="q-slash-literal"),
    pytest.param({"q": "/"}, {"slash"}, id="q-slash-only"),
    pytest.param({"q": "r/%"}, set(), id="q-slash-then-percent"),
    pytest.param({"due_before": "2026-05-31T00:00:00Z"}, {"under"}, id="due-before"),
    pytest.param({"due_after": "2026-06-02T00:00:00Z"}, {"notes"}, id="due-after"),
    pytest.param({"due_before": "2026-06-01T03:00:00+02:00"}, {"under", "plain"},
                 id="due-before-offset"),
    pytest.param({"due_after": "2026-04-01T00:00:00Z", "due_before": "2026-06-15T00:00:00Z"},
                 {"under", "plain"}, id="due-window"),
    pytest.param({"completed": "false", "q": "sure", "priority": "low"}, {"zeros"}, id="combined"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "expected"), FILTERS)
@pytest.mark.parametrize("limit", [100, 1])
def test_filters(
    alice: User, filterable: dict[str, str], params: dict[str, str], expected: set[str], limit: int
) -> None:
    """Each filter returns exactly the matching tasks of the user, over any page size."""
    listed = walk(alice, **params, limit=limit)
    assert sorted(ids(listed)) == sorted(filterable[name] for name in expected)


BAD_PARAMS = [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "abc"}, "limit"),
    ({"limit": "-1"}, "limit"), ({"limit": "2.5"}, "limit"), ({"limit": ""}, "limit"),
    ({"completed": "yes"}, "completed"), ({"completed": "True"}, "completed"),
    ({"completed": "1"}, "completed"), ({"priority": "urgent"}, "priority"),
    ({"sort": "bogus"}, "sort"), ({"sort": "--title"}, "sort"), ({"sort": "id"}, "sort"),
    ({"sort": "+title"}, "sort"), ({"due_before": "2026-01-01T00:00:00"}, "due_before"),
    ({"due_before": "2026-01-01"}, "due_before"), ({"due_after": "soon"}, "due_after"),
    ({"due_after": "1700000000"}, "due_after"), ({"tag": "x" * 51}, "tag"),
    ({"cursor": "garbage"}, "cursor"), ({"cursor": ""}, "cursor"), ({"page": "2"}, "page"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "field"), BAD_PARAMS, ids=[f"{p}" for p, _ in BAD_PARAMS])
def test_bad_query_values_are_400(alice: User, params: dict[str, str], field: str) -> None:
    """Every bad listing parameter is a 400 validation_error naming it, never ignored."""
    alice.create_task()
    body = assert_error(get_page(alice, **params), 400, "validation_error")
    assert field in [d["field"] for d in body["details"]]


@pytest.fixture
def cursor(alice: User) -> str:
    """A genuine next_cursor of Alice's listing sorted by title with q=task."""
    for i in range(3):
        alice.create_task(title=f"task {i}")
    token = get_page(alice, limit=1, sort="title", q="task").get_json()["next_cursor"]
    assert isinstance(token, str)
    return token


def _flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` changed."""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def _payload(token: str) -> dict[str, Any]:
    """The payload of a cursor, opened with the server's key (as only the server can)."""
    return open_token(token, key=TEST_SECRET.encode(), purpose="tasks-cursor", field="cursor")


TAMPERINGS = {
    "flip-body": lambda c: _flip(c, 30),
    "flip-mac": lambda c: _flip(c, len(c) - 5),
    "truncated": lambda c: c[:-10],
    "extra-part": lambda c: c + ".x",
    "forged-other-key": lambda c: seal(_payload(c), key=b"not the secret", purpose="tasks-cursor"),
    "forged-payload": lambda c: seal({**_payload(c), "k": ["zzz", "nope"]}, key=b"x", purpose="p"),
    "other-purpose": lambda c: seal(_payload(c), key=TEST_SECRET.encode(), purpose="sync-token"),
}


def test_cursor_carries_no_task_content(alice: User) -> None:
    """A title-sorted cursor is opaque: the title travels in no URL, encoded or not."""
    for title in ("confidential-plan-alpha", "confidential-plan-beta"):
        alice.create_task(title=title)
    cursor = get_page(alice, limit=1, sort="title").get_json()["next_cursor"]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"confidential" not in decoded and "confidential" not in cursor


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampered_cursor_is_400(alice: User, cursor: str, tamper: Any) -> None:
    """A modified or forged cursor is 400 validation_error on ``cursor``."""
    answer = get_page(alice, limit=1, sort="title", q="task", cursor=tamper(cursor))
    body = assert_error(answer, 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["cursor"]


MISMATCHES = [
    {"sort": "-title", "q": "task"}, {"sort": "created_at", "q": "task"}, {"sort": "title"},
    {"sort": "title", "q": "TASK 1"}, {"sort": "title", "q": "task", "completed": "false"},
    {"sort": "title", "q": "task", "priority": "none"}, {"sort": "title", "q": "task", "tag": "a"},
    {"sort": "title", "q": "task", "due_after": "2020-01-01T00:00:00Z"},
]  # fmt: skip


@pytest.mark.parametrize("params", MISMATCHES, ids=[urlencode(p) for p in MISMATCHES])
def test_cursor_is_bound_to_sort_and_filters(
    alice: User, cursor: str, params: dict[str, str]
) -> None:
    """A cursor reused with another sort or filter is 400."""
    answer = get_page(alice, limit=1, cursor=cursor, **params)
    assert_error(answer, 400, "validation_error")


def test_cursor_works_with_another_limit(alice: User, cursor: str) -> None:
    """The page size is not a filter: a cursor continues with a different limit."""
    answer = get_page(alice, limit=10, sort="title", q="task", cursor=cursor)
    assert [t["title"] for t in answer.get_json()["items"]] == ["task 1", "task 2"]


def test_bob_never_sees_alices_tasks(alice: User, bob: User, cursor: str) -> None:
    """Bob's listings, filtered or with Alice's cursor, never include Alice's tasks."""
    mine = bob.create_task(title="task of bob")
    alices = set(ids(walk(alice, limit=100)))
    for params in ({}, {"q": "task"}):
        answer = get_page(bob, **params)
        assert answer.status_code == 200
        assert not alices & set(ids(answer.get_json()["items"]))
    # A cursor is bound to its user, sort and filters: under Bob's token Alice's is refused.
    answer = get_page(bob, sort="title", q="task", limit=1, cursor=cursor)
    assert answer.status_code == 400 and answer.get_json()["details"][0]["field"] == "cursor"
    assert ids(walk(bob, q="task")) == [mine["id"]]


def test_each_request_parses_its_own_query(app: Flask, alice: User) -> None:
    """A listing's query is parsed once per request and kept with that request: requests
    made while one app context stays pushed (its g shared) still get their own."""
    for title in ("a", "b", "c"):
        alice.create_task(title=title)
    with app.app_context():
        one = alice.request("GET", f"{TASKS}?limit=1")
        two = alice.request("GET", f"{TASKS}?limit=2")
    assert (len(one.json["items"]), len(two.json["items"])) == (1, 2)
