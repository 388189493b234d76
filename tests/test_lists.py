"""Task lists through HTTP: CRUD with ETags and idempotency, validation, paging, the inbox,
deletion with tombstones, the quota, and another user's list as the one 404 everywhere."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

import taskapi.services.lists
from tests.conftest import User
from tests.support import assert_error

LISTS = "/api/v1/lists"
TASKS = "/api/v1/tasks"
CHANGES = f"{TASKS}/changes"
LINK = re.compile(r'^<([^>]+)>; rel="next"$')
LIST_FIELDS = {"id", "title", "color", "position", "inbox", "created_at", "updated_at", "version"}


def list_path(row: dict[str, Any] | str) -> str:
    """The URL of a list (given as its JSON or its id)."""
    return f"{LISTS}/{row['id'] if isinstance(row, dict) else row}"


def task_path(task: dict[str, Any] | str) -> str:
    """The URL of a task (given as its JSON or its id)."""
    return f"{TASKS}/{task['id'] if isinstance(task, dict) else task}"


def create_list(user: User, **fields: Any) -> dict[str, Any]:
    """POST /lists and return the list."""
    answer = user.request("POST", LISTS, json={"title": "a list", **fields})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]


def all_lists(user: User) -> list[dict[str, Any]]:
    """Every list of the user, in order (at most 100 in these tests)."""
    answer = user.request("GET", f"{LISTS}?limit=100")
    assert answer.status_code == 200 and answer.get_json()["next_cursor"] is None
    return answer.get_json()["items"]  # type: ignore[no-any-return]


def inbox_of(user: User) -> dict[str, Any]:
    """The user's inbox."""
    (inbox,) = [row for row in all_lists(user) if row["inbox"]]
    return inbox


def task_ids_of(user: User, list_id: str) -> list[str]:
    """The ids of a list's top-level tasks in their order (at most 100)."""
    answer = user.request("GET", f"{LISTS}/{list_id}/tasks?limit=100")
    assert answer.status_code == 200 and answer.get_json()["next_cursor"] is None
    return [t["id"] for t in answer.get_json()["items"]]


def sync_token(user: User) -> str:
    """A changes token that is caught up now."""
    token = None
    while True:
        query = f"?since={token}" if token else ""
        page = user.request("GET", f"{CHANGES}{query}").get_json()
        token = page["next"]
        if not page["has_more"]:
            return token


def changes_since(user: User, token: str) -> list[dict[str, Any]]:
    """Every change after ``token``, in order, over pages of 3."""
    found: list[dict[str, Any]] = []
    while True:
        answer = user.request("GET", f"{CHANGES}?since={token}&limit=3")
        assert answer.status_code == 200, answer.get_json()
        page = answer.get_json()
        found += page["changes"]
        token = page["next"]
        if not page["has_more"]:
            return found


# --- the inbox -------------------------------------------------------------------------------


def test_every_new_user_has_exactly_one_inbox(alice: User, bob: User) -> None:
    """Registration makes one list, the inbox; tasks without a list_id land there."""
    (alices,) = all_lists(alice)
    assert set(alices) == LIST_FIELDS
    assert alices["inbox"] is True and alices["title"] == "Inbox" and alices["version"] == 1
    assert alices["color"] is None
    (bobs,) = all_lists(bob)
    assert bobs["inbox"] is True and bobs["id"] != alices["id"]
    assert alice.create_task()["list_id"] == alices["id"]
    assert bob.create_task()["list_id"] == bobs["id"]


def test_inbox_cannot_be_deleted_but_can_be_renamed_and_moved(alice: User) -> None:
    """DELETE of the inbox is 409 inbox_not_deletable (even with a matching If-Match); it
    keeps its tasks, can be renamed and moved, and a client cannot make a second inbox."""
    inbox = inbox_of(alice)
    task = alice.create_task()
    assert_error(alice.request("DELETE", list_path(inbox)), 409, "inbox_not_deletable")
    answer = alice.request("DELETE", list_path(inbox), headers={"If-Match": '"1"'})
    assert_error(answer, 409, "inbox_not_deletable")
    assert alice.request("GET", list_path(inbox)).get_json() == inbox
    assert alice.request("GET", task_path(task)).get_json() == task

    renamed = alice.request("PATCH", list_path(inbox), json={"title": "Eingang"}).get_json()
    assert renamed["title"] == "Eingang" and renamed["inbox"] is True and renamed["version"] == 2
    other = create_list(alice, title="other", inbox=True)  # inbox is server-set: ignored
    assert other["inbox"] is False
    moved = alice.request("POST", f"{list_path(inbox)}/move", json={"after": other["id"]})
    assert moved.status_code == 200 and moved.get_json()["version"] == 3
    assert [row["id"] for row in all_lists(alice)] == [other["id"], inbox["id"]]
    assert [row["inbox"] for row in all_lists(alice)] == [False, True]
    replaced = alice.request("PUT", list_path(other), json={**other, "inbox": True}).get_json()
    assert replaced["inbox"] is False
    assert_error(alice.request("DELETE", list_path(inbox)), 409, "inbox_not_deletable")


# --- CRUD, ETags and preconditions -----------------------------------------------------------


def test_list_crud_with_etags(alice: User) -> None:
    """POST, GET (304 with If-None-Match), PATCH, PUT and DELETE, each write a new version."""
    created = alice.request("POST", LISTS, json={"title": "  Groceries ", "color": "#A0B1C2"})
    assert created.status_code == 201
    row = created.get_json()
    assert set(row) == LIST_FIELDS
    assert (row["title"], row["color"], row["inbox"], row["version"]) == (
        "Groceries", "#a0b1c2", False, 1,
    )  # fmt: skip
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"].endswith(list_path(row))
    assert row["position"] > inbox_of(alice)["position"]  # a new list goes last

    got = alice.request("GET", list_path(row))
    assert got.status_code == 200 and got.get_json() == row and got.headers["ETag"] == '"1"'
    cached = alice.request("GET", list_path(row), headers={"If-None-Match": '"1"'})
    assert (
        cached.status_code == 304 and cached.get_data() == b"" and cached.headers["ETag"] == '"1"'
    )
    stale = alice.request("GET", list_path(row), headers={"If-None-Match": '"7"'})
    assert stale.status_code == 200 and stale.get_json() == row

    patched = alice.request("PATCH", list_path(row), json={"title": "Food"})
    assert patched.status_code == 200 and patched.headers["ETag"] == '"2"'
    body = patched.get_json()
    assert (body["title"], body["color"], body["version"]) == ("Food", "#a0b1c2", 2)
    assert body["position"] == row["position"] and body["created_at"] == row["created_at"]
    assert alice.request("GET", list_path(row), headers={"If-None-Match": '"1"'}).status_code == 200
    cleared = alice.request("PATCH", list_path(row), json={"color": None}).get_json()
    assert (cleared["title"], cleared["color"], cleared["version"]) == ("Food", None, 3)
    recolored = alice.request("PATCH", list_path(row), json={"color": "#00ff00"}).get_json()
    replaced = alice.request("PUT", list_path(row), json={"title": "Shopping"})
    assert replaced.status_code == 200 and replaced.headers["ETag"] == '"5"'
    assert recolored["color"] == "#00ff00" and replaced.get_json()["color"] is None  # default
    same = alice.request("PATCH", list_path(row), json={"title": "Shopping"}).get_json()
    assert same["version"] == 6  # a write without a change is still a new version
    assert_error(alice.request("PATCH", list_path(row), json={}), 400, "validation_error")

    assert alice.request("DELETE", list_path(row)).status_code == 204
    assert_error(alice.request("GET", list_path(row)), 404, "not_found")
    assert_error(alice.request("DELETE", list_path(row)), 404, "not_found")
    assert [r["inbox"] for r in all_lists(alice)] == [True]


def test_lists_in_the_changes_feed(alice: User) -> None:
    """Creating, changing and moving lists appear in the feed as type list, each once with
    its latest state, in the order of their last change."""
    inbox = inbox_of(alice)
    token = sync_token(alice)
    row = create_list(alice, title="new")
    alice.request("PATCH", list_path(row), json={"color": "#abcdef"})
    moved = alice.request("POST", f"{list_path(inbox)}/move", json={"after": row["id"]})
    renamed = alice.request("PATCH", list_path(row), json={"title": "renamed"})
    assert changes_since(alice, token) == [
        {"id": inbox["id"], "type": "list", "deleted": False, "list": moved.get_json()},
        {"id": row["id"], "type": "list", "deleted": False, "list": renamed.get_json()},
    ]


def _write(user: User, method: str, row: dict[str, Any], other: dict[str, Any], **h: str) -> Any:
    """One write of ``row`` by ``method`` (move puts it after ``other``)."""
    if method == "MOVE":
        return user.request("POST", f"{list_path(row)}/move", json={"after": other["id"]},
                            headers=h)  # fmt: skip
    body = None if method == "DELETE" else {"title": "changed"}
    return user.request(method, list_path(row), json=body, headers=h)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "MOVE"])
def test_list_if_match(alice: User, method: str) -> None:
    """A stale If-Match is 412 and changes nothing; the current one (or *) lets it through."""
    row, other = create_list(alice, title="mine"), create_list(alice, title="other")
    alice.request("PATCH", list_path(row), json={"title": "mine"})  # now version 2
    for stale in ('"1"', '"3"', 'W/"2"'):
        assert_error(_write(alice, method, row, other, **{"If-Match": stale}), 412,
                     "precondition_failed")  # fmt: skip
    before = alice.request("GET", list_path(row)).get_json()
    assert before["version"] == 2
    answer = _write(alice, method, row, other, **{"If-Match": '"1", "2"'})
    if method == "DELETE":
        assert answer.status_code == 204
        assert_error(alice.request("GET", list_path(row)), 404, "not_found")
    else:
        assert answer.status_code == 200 and answer.headers["ETag"] == '"3"'
        assert answer.get_json()["version"] == 3
        again = _write(alice, method, row, other, **{"If-Match": "*"})
        assert again.status_code == 200 and again.get_json()["version"] == 4


# --- idempotency -----------------------------------------------------------------------------


def _post(user: User, body: dict[str, Any], key: str, path: str = LISTS) -> Any:
    """POST with an Idempotency-Key."""
    return user.request("POST", path, json=body, headers={"Idempotency-Key": key})


def test_list_idempotent_replay(alice: User, bob: User) -> None:
    """The same key and body replays the first answer (even after an edit) and creates
    nothing; another body is 409; another user's key is their own."""
    first = _post(alice, {"title": "Work", "color": "#112233"}, "key-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    alice.request("PATCH", list_path(first.get_json()), json={"title": "Job"})
    again = _post(alice, {"color": "#112233", "title": "Work"}, "key-1")
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == '"1"'
    assert len(all_lists(alice)) == 2
    assert_error(_post(alice, {"title": "Work"}, "key-1"), 409, "idempotency_conflict")
    assert_error(_post(alice, {"title": "Other"}, "key-1"), 409, "idempotency_conflict")
    assert len(all_lists(alice)) == 2
    bobs = _post(bob, {"title": "Work", "color": "#112233"}, "key-1")
    assert bobs.status_code == 201 and "Idempotent-Replayed" not in bobs.headers
    assert bobs.get_json()["id"] != first.get_json()["id"] and len(all_lists(bob)) == 2


def test_one_key_for_a_task_and_a_list_is_a_conflict(alice: User) -> None:
    """A key used for a task, then for a list (or the other way round), is 409
    idempotency_conflict, never a replay of the other resource."""
    task = _post(alice, {"title": "same"}, "shared", TASKS)
    assert task.status_code == 201
    assert_error(_post(alice, {"title": "same"}, "shared"), 409, "idempotency_conflict")
    row = _post(alice, {"title": "same"}, "shared-2")
    assert row.status_code == 201
    assert_error(_post(alice, {"title": "same"}, "shared-2", TASKS), 409, "idempotency_conflict")
    assert len(all_lists(alice)) == 2
    assert [t["id"] for t in alice.request("GET", TASKS).get_json()["items"]] == [
        task.get_json()["id"]
    ]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({"title": "a\u0000b"}, "title"),
        ({"title": "ok", "color": "red"}, "color"),
        ({"title": "ok", "color": "#12345"}, "color"),
        ({"title": "ok", "color": "#1234567"}, "color"),
        ({"title": "ok", "color": "#gggggg"}, "color"),
        ({"title": "ok", "color": "123456"}, "color"),
        ({"title": "ok", "colour": "#123456"}, "colour"),
    ],
)
def test_list_validation(alice: User, body: dict[str, Any], field: str) -> None:
    """Bad list bodies are 400 validation_error naming the field, on POST and PUT alike."""
    for method, path in (("POST", LISTS), ("PUT", list_path(inbox_of(alice)))):
        answer = alice.request(method, path, json=body)
        details = assert_error(answer, 400, "validation_error")["details"]
        assert [d["field"] for d in details] == [field], details
    assert all_lists(alice) == [inbox_of(alice)] and inbox_of(alice)["version"] == 1


def test_list_title_bounds_after_trimming(alice: User) -> None:
    """1 and 100 characters after trimming are accepted; PATCH validates like POST."""
    longest = create_list(alice, title=f"  {'x' * 100}\t")
    assert longest["title"] == "x" * 100
    assert create_list(alice, title=" y ")["title"] == "y"
    for body in ({"title": " "}, {"title": "z" * 101}, {"color": "blue"}, {"inbox": 1, "x": 1}):
        assert_error(alice.request("PATCH", list_path(longest), json=body), 400,
                     "validation_error")  # fmt: skip
    assert_error(
        alice.request("PATCH", list_path(longest), json={"inbox": True}), 400, "validation_error"
    )  # only server-set fields: nothing to change
    assert alice.request("GET", list_path(longest)).get_json() == longest


# --- paging ----------------------------------------------------------------------------------


def test_lists_paging(alice: User, bob: User) -> None:
    """Pages of 2 follow next_cursor and Link to the end, in the users' order, exactly once;
    bad paging parameters are 400."""
    for i in range(4):
        create_list(alice, title=f"list {i}")
    create_list(bob, title="bob's")
    everything = all_lists(alice)
    assert [row["title"] for row in everything] == ["Inbox", "list 0", "list 1", "list 2", "list 3"]
    seen: list[dict[str, Any]] = []
    answer = alice.request("GET", f"{LISTS}?limit=2")
    for _ in range(10):
        body = answer.get_json()
        assert answer.status_code == 200 and len(body["items"]) <= 2
        seen += body["items"]
        if body["next_cursor"] is None:
            assert "Link" not in answer.headers
            break
        link = LINK.match(answer.headers["Link"])
        assert link, answer.headers["Link"]
        query = parse_qs(urlsplit(link.group(1)).query)
        assert query == {"limit": ["2"], "cursor": [body["next_cursor"]]}
        answer = alice.request("GET", f"{LISTS}?{urlsplit(link.group(1)).query}")
    assert seen == everything
    for query in ("limit=0", "limit=101", "limit=x", "cursor=", "cursor=garbage", "sort=title"):
        assert_error(alice.request("GET", f"{LISTS}?{query}"), 400, "validation_error")


# --- deletion --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [500, 2], ids=["one-batch", "batches-of-2"])
def test_deleting_a_list_deletes_its_tasks_with_tombstones(
    alice: User, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Every task and subtask of the list goes (404), with a tombstone each in the feed and
    then the list's own; other lists keep theirs."""
    monkeypatch.setattr(taskapi.services.lists, "DELETE_BATCH", batch)
    doomed, kept = create_list(alice, title="doomed"), create_list(alice, title="kept")
    plain = alice.create_task(title="plain", list_id=doomed["id"])
    parent = alice.create_task(title="parent", list_id=doomed["id"])
    subs = [alice.create_task(title=f"sub {i}", parent_id=parent["id"]) for i in range(3)]
    survivor = alice.create_task(title="survivor", list_id=kept["id"])
    in_inbox = alice.create_task(title="inbox")
    token = sync_token(alice)

    assert alice.request("DELETE", list_path(doomed)).status_code == 204
    gone = [plain, parent, *subs]
    for task in gone:
        assert_error(alice.request("GET", task_path(task)), 404, "not_found")
    assert_error(alice.request("GET", list_path(doomed)), 404, "not_found")
    assert_error(alice.request("GET", f"{list_path(doomed)}/tasks"), 404, "not_found")
    for task in (survivor, in_inbox):
        assert alice.request("GET", task_path(task)).get_json() == task
    found = changes_since(alice, token)
    assert found[-1] == {"id": doomed["id"], "type": "list", "deleted": True}
    assert sorted(found[:-1], key=lambda c: c["id"]) == sorted(
        ({"id": t["id"], "type": "task", "deleted": True} for t in gone), key=lambda c: c["id"]
    )
    tops = alice.request("GET", f"{TASKS}?limit=100").get_json()["items"]
    assert sorted(t["id"] for t in tops) == sorted([survivor["id"], in_inbox["id"]])


def test_a_task_added_during_a_list_deletion_gets_a_tombstone(
    make_app: Callable[..., Flask], make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task created in the list between the deletion's transactions is deleted with a
    tombstone too (never silently by cascade), and leaves the task quota."""
    user = make_user(on=make_app(max_tasks_per_user=3).test_client())
    row = create_list(user)
    first = user.create_task(list_id=row["id"])
    token = sync_token(user)
    real_write, late = taskapi.services.lists.write, []

    @contextmanager
    def interleaved(db: Any) -> Iterator[None]:
        """Before each of the deletion's transactions but the first, add a task to the list."""
        late.append(None)
        if len(late) > 1:
            answer = user.request("POST", TASKS, json={"title": "late", "list_id": row["id"]})
            late[-1] = answer.get_json()["id"] if answer.status_code == 201 else None
        with real_write(db):
            yield

    monkeypatch.setattr(taskapi.services.lists, "write", interleaved)
    assert user.request("DELETE", list_path(row)).status_code == 204
    monkeypatch.undo()
    added = [task_id for task_id in late if task_id is not None]
    assert added  # the interleaving really happened
    gone = [first["id"], *added]
    for task_id in gone:
        assert_error(user.request("GET", task_path(task_id)), 404, "not_found")
    found = changes_since(user, token)
    assert found[-1] == {"id": row["id"], "type": "list", "deleted": True}
    assert sorted(c["id"] for c in found[:-1]) == sorted(gone)
    for i in range(3):
        user.create_task(title=f"again {i}")
    assert_error(user.request("POST", TASKS, json={"title": "4th"}), 409, "quota_exceeded")


def test_deleted_tasks_leave_the_task_quota(make_app: Callable[..., Flask], make_user: Any) -> None:
    """Tasks deleted with their list no longer count against TASKAPI_MAX_TASKS_PER_USER."""
    user = make_user(on=make_app(max_tasks_per_user=3).test_client())
    row = create_list(user)
    parent = user.create_task(list_id=row["id"])
    user.create_task(parent_id=parent["id"])
    user.create_task(list_id=row["id"])
    assert_error(user.request("POST", TASKS, json={"title": "4th"}), 409, "quota_exceeded")
    assert user.request("DELETE", list_path(row)).status_code == 204
    for i in range(3):
        user.create_task(title=f"again {i}")
    assert_error(user.request("POST", TASKS, json={"title": "4th"}), 409, "quota_exceeded")


def test_list_quota(make_app: Callable[..., Flask], make_user: Any) -> None:
    """At most TASKAPI_MAX_LISTS_PER_USER lists, the inbox included: then 409
    quota_exceeded; a replay still answers; deleting one makes room; others are unaffected."""
    http = make_app(max_lists_per_user=3).test_client()
    user, other = make_user(on=http), make_user(on=http)
    first = _post(user, {"title": "one"}, "k1")
    create_list(user, title="two")
    assert_error(user.request("POST", LISTS, json={"title": "three"}), 409, "quota_exceeded")
    replay = _post(user, {"title": "one"}, "k1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(all_lists(user)) == 3
    create_list(other, title="theirs")
    assert user.request("DELETE", list_path(first.get_json())).status_code == 204
    create_list(user, title="three")
    assert_error(user.request("POST", LISTS, json={"title": "four"}), 409, "quota_exceeded")


# --- another user's list ---------------------------------------------------------------------


def test_another_users_list_is_the_same_404_everywhere(alice: User, bob: User) -> None:
    """Bob gets exactly the 404 of a list that does not exist wherever Alice's list id goes:
    path, body and query; nothing of hers changes."""
    hers = create_list(alice, title="secret")
    parent = alice.create_task(title="secret task", list_id=hers["id"])
    sub = alice.create_task(title="secret sub", parent_id=parent["id"])
    his_list, his_task = create_list(bob), bob.create_task()
    missing = str(uuid.uuid4())

    def probes(list_id: str, task_id: str) -> list[tuple[str, str, Any, dict[str, str]]]:
        """Bob's requests naming ``list_id`` (and ``task_id`` as a parent or neighbour)."""
        mine = task_path(his_task)
        return [
            ("GET", f"{LISTS}/{list_id}", None, {}),
            ("GET", f"{LISTS}/{list_id}", None, {"If-None-Match": '"1"'}),
            ("PUT", f"{LISTS}/{list_id}", {"title": "x"}, {}),
            ("PATCH", f"{LISTS}/{list_id}", {"title": "x"}, {}),
            ("PATCH", f"{LISTS}/{list_id}", {"title": "x"}, {"If-Match": '"999"'}),
            ("DELETE", f"{LISTS}/{list_id}", None, {}),
            ("DELETE", f"{LISTS}/{list_id}", None, {"If-Match": '"999"'}),
            ("POST", f"{LISTS}/{list_id}/move", {"after": None}, {}),
            ("GET", f"{LISTS}/{list_id}/tasks", None, {}),
            ("GET", f"{LISTS}/{list_id}/tasks?sort=title&limit=1", None, {}),
            ("POST", f"{LISTS}/{his_list['id']}/move", {"after": list_id}, {}),
            ("POST", TASKS, {"title": "x", "list_id": list_id}, {}),
            ("PUT", mine, {"title": "x", "list_id": list_id}, {}),
            ("PATCH", mine, {"list_id": list_id}, {}),
            ("POST", f"{mine}/move", {"list_id": list_id, "after": None}, {}),
            ("GET", f"{TASKS}?list_id={list_id}", None, {}),
            ("GET", f"{TASKS}?list_id={list_id}&sort=position", None, {}),
            ("POST", TASKS, {"title": "x", "parent_id": task_id}, {}),
            ("PATCH", mine, {"parent_id": task_id}, {}),
            ("POST", f"{mine}/move", {"parent_id": task_id, "after": None}, {}),
            ("POST", f"{mine}/move", {"after": task_id}, {}),
            ("GET", f"{TASKS}?parent_id={task_id}", None, {}),
            ("GET", f"{LISTS}/{his_list['id']}/tasks?parent_id={task_id}", None, {}),
        ]

    for foreign, unknown in zip(
        probes(hers["id"], parent["id"]), probes(missing, missing), strict=True
    ):
        method, path, body, headers = foreign
        theirs = bob.request(method, path, json=body, headers=headers)
        nothing = bob.request(unknown[0], unknown[1], json=unknown[2], headers=unknown[3])
        assert_error(theirs, 404, "not_found")
        assert (theirs.status_code, theirs.get_json()) == (
            nothing.status_code, nothing.get_json(),
        ), (method, path)  # fmt: skip
        assert "secret" not in theirs.get_data(as_text=True)
    assert alice.request("GET", list_path(hers)).get_json() == hers
    assert task_ids_of(alice, hers["id"]) == [parent["id"]]
    assert alice.request("GET", task_path(sub)).get_json() == sub
    assert bob.request("GET", task_path(his_task)).get_json() == his_task
    assert [row["id"] for row in all_lists(bob)][1:] == [his_list["id"]]


def test_another_users_cursor_reveals_nothing(alice: User, bob: User) -> None:
    """A cursor is bound to its user and listing: Bob replaying Alice's cursors gets the 404
    of a missing list on her list's path, and 400 validation_error on his own listings."""
    hers = create_list(alice, title="secret")
    for i in range(3):
        alice.create_task(title=f"secret {i}", list_id=hers["id"])
    create_list(alice, title="secret two")
    task_cursor = alice.request("GET", f"{list_path(hers)}/tasks?limit=1").get_json()
    list_cursor = alice.request("GET", f"{LISTS}?limit=1").get_json()["next_cursor"]
    cursor = task_cursor["next_cursor"]
    assert cursor and list_cursor
    assert alice.request("GET", f"{list_path(hers)}/tasks?limit=1&cursor={cursor}").status_code == (
        200
    )
    his_inbox = inbox_of(bob)
    bob.create_task(title="his")

    on_hers = bob.request("GET", f"{list_path(hers)}/tasks?limit=1&cursor={cursor}")
    on_none = bob.request("GET", f"{LISTS}/{uuid.uuid4()}/tasks?limit=1&cursor={cursor}")
    assert_error(on_hers, 404, "not_found")
    assert on_hers.get_json() == on_none.get_json()
    for path in (
        f"{list_path(his_inbox)}/tasks?limit=1&cursor={cursor}",
        f"{TASKS}?list_id={his_inbox['id']}&limit=1&cursor={cursor}",
        f"{LISTS}?limit=1&cursor={list_cursor}",
    ):
        answer = bob.request("GET", path)
        body = assert_error(answer, 400, "validation_error")
        assert [d["field"] for d in body["details"]] == ["cursor"], path
        text = answer.get_data(as_text=True)
        assert "secret" not in text and hers["id"] not in text
    # Alice's own cursor is bound to its list too.
    other = inbox_of(alice)
    answer = alice.request("GET", f"{list_path(other)}/tasks?limit=1&cursor={cursor}")
    assert_error(answer, 400, "validation_error")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "MOVE"])
def test_an_empty_if_match_tag_is_412_not_a_crash(alice: User, method: str) -> None:
    """``If-Match: ""`` names no version: 412 precondition_failed, and the list is unchanged."""
    row = create_list(alice, title="kept")
    headers = {"If-Match": '""'}
    if method == "MOVE":
        answer = alice.request("POST", f"{list_path(row)}/move", json={"after": None},
                               headers=headers)  # fmt: skip
    else:
        body = None if method == "DELETE" else {"title": "changed"}
        answer = alice.request(method, list_path(row), json=body, headers=headers)
    assert_error(answer, 412, "precondition_failed")
    assert alice.request("GET", list_path(row)).get_json() == row
