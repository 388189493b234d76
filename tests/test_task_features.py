"""Task features: ETags and preconditions, versions, idempotency, bulk clear and delta sync."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from taskapi.services.cursors import open_token, seal
from tests.conftest import TEST_SECRET, User
from tests.support import apply, assert_error

TASKS = "/api/v1/tasks"
CHANGES = f"{TASKS}/changes"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
OK = {"PUT": 200, "PATCH": 200, "DELETE": 204}


def path_of(task: dict[str, Any]) -> str:
    """The URL of a task."""
    return f"{TASKS}/{task['id']}"


def write(user: User, method: str, task: dict[str, Any], **headers: str) -> Any:
    """A PUT, PATCH or DELETE of the task with the given headers."""
    body = None if method == "DELETE" else {"title": "changed"}
    return user.request(method, path_of(task), json=body, headers=headers)


def listing(user: User) -> list[dict[str, Any]]:
    """Every task of the user (at most 100 in these tests)."""
    answer = user.request("GET", f"{TASKS}?limit=100")
    assert answer.get_json()["next_cursor"] is None
    return answer.get_json()["items"]  # type: ignore[no-any-return]


# --- ETags and preconditions -----------------------------------------------------------------


def test_etag_is_strong_and_follows_version(alice: User, bob: User) -> None:
    """POST, GET and PATCH carry one strong ETag per version; an old one no longer gives 304."""
    created = alice.request("POST", TASKS, json={"title": "t"})
    tag, path = created.headers["ETag"], path_of(created.get_json())
    assert re.fullmatch(r'"[^"]+"', tag), tag
    assert alice.request("GET", path).headers["ETag"] == tag
    patched = alice.request("PATCH", path, json={"title": "t"})
    assert patched.headers["ETag"] not in (tag, None)
    again = alice.request("GET", path, headers={"If-None-Match": tag})
    assert again.status_code == 200 and again.headers["ETag"] == patched.headers["ETag"]
    assert_error(bob.request("GET", path), 404, "not_found")


@pytest.mark.parametrize(
    ("template", "status"),
    [
        ("{cur}", 304),
        ("*", 304),
        ('"999", {cur}', 304),
        ("W/{cur}", 304),
        ('"999"', 200),
        ("", 200),
    ],
    ids=["current", "star", "list", "weak", "other", "empty"],
)
def test_if_none_match(alice: User, bob: User, template: str, status: int) -> None:
    """GET with If-None-Match naming the current ETag is 304 without a body; otherwise 200."""
    task = alice.create_task()
    current = alice.request("GET", path_of(task)).headers["ETag"]
    answer = alice.request(
        "GET", path_of(task), headers={"If-None-Match": template.format(cur=current)}
    )
    assert answer.status_code == status
    assert answer.headers["ETag"] == current
    if status == 304:
        assert answer.get_data() == b""
    else:
        assert answer.get_json() == task
    assert_error(
        bob.request("GET", path_of(task), headers={"If-None-Match": current}), 404, "not_found"
    )


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("template", "matches"),
    [("{cur}", True), ("*", True), ('"999", {cur}', True), ('"999"', False),
     ("W/{cur}", False), ("garbage", False), ('""', False), ('"", {cur}', True)],
    ids=["current", "star", "list", "other", "weak-never-matches", "garbage", "empty-tag",
         "empty-tag-and-current"],
)  # fmt: skip
def test_if_match(alice: User, bob: User, method: str, template: str, matches: bool) -> None:
    """If-Match that matches lets the write through; otherwise 412 and the task is unchanged."""
    task = alice.create_task()
    header = template.format(cur=alice.request("GET", path_of(task)).headers["ETag"])
    assert_error(write(bob, method, task, **{"If-Match": header}), 404, "not_found")
    answer = write(alice, method, task, **{"If-Match": header})
    if matches:
        assert answer.status_code == OK[method]
        after = alice.request("GET", path_of(task))
        assert (after.status_code, after.get_json().get("version")) in ((404, None), (200, 2))
    else:
        assert_error(answer, 412, "precondition_failed")
        assert alice.request("GET", path_of(task)).get_json() == task


@pytest.fixture
def strict_app(make_app: Callable[..., Flask]) -> Flask:
    """An app that requires If-Match on every task write."""
    return make_app(require_if_match=True)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_required_if_match(strict_app: Flask, make_user: Any, method: str) -> None:
    """Without If-Match: 428, but 404 first for a missing or foreign task; with it: success."""
    alice, bob = (make_user(on=strict_app.test_client()) for _ in range(2))
    created = alice.request("POST", TASKS, json={"title": "t"})
    assert created.status_code == 201
    task = created.get_json()
    assert_error(write(alice, method, task), 428, "precondition_required")
    assert alice.request("GET", path_of(task)).get_json() == task
    assert_error(write(bob, method, task), 404, "not_found")
    assert_error(write(alice, method, {"id": uuid.uuid4()}), 404, "not_found")
    assert_error(write(alice, method, task, **{"If-Match": '"7"'}), 412, "precondition_failed")
    answer = write(alice, method, task, **{"If-Match": created.headers["ETag"]})
    assert answer.status_code == OK[method]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_version_increments_without_value_change(alice: User, bob: User, method: str) -> None:
    """Writing the same values still bumps version and ETag every time."""
    task = alice.create_task(title="same")
    tags = {alice.request("GET", path_of(task)).headers["ETag"]}
    for expected in (2, 3, 4):
        answer = alice.request(method, path_of(task), json={"title": "same"})
        assert answer.get_json()["version"] == expected
        tags.add(answer.headers["ETag"])
    assert len(tags) == 4
    assert_error(bob.request(method, path_of(task), json={"title": "same"}), 404, "not_found")
    assert alice.request("GET", path_of(task)).get_json()["version"] == 4


def test_completed_at_follows_completed(alice: User, bob: User) -> None:
    """completed_at is set when completed turns true, kept while true, cleared when false."""
    task = alice.create_task()
    assert task["completed_at"] is None
    done = alice.request("PATCH", path_of(task), json={"completed": True}).get_json()
    assert TIMESTAMP.match(done["completed_at"]) and done["completed_at"] >= task["created_at"]
    again = alice.request("PATCH", path_of(task), json={"completed": True, "notes": "x"}).get_json()
    assert again["completed_at"] == done["completed_at"] and again["version"] == 3
    undone = alice.request("PATCH", path_of(task), json={"completed": False}).get_json()
    assert undone["completed_at"] is None
    redone = alice.request("PUT", path_of(task), json={"title": "t", "completed": True}).get_json()
    assert (
        TIMESTAMP.match(redone["completed_at"]) and redone["completed_at"] >= done["completed_at"]
    )
    reset = alice.request("PUT", path_of(task), json={"title": "t"}).get_json()
    assert reset["completed"] is False and reset["completed_at"] is None
    born_done = alice.create_task(completed=True)
    assert TIMESTAMP.match(born_done["completed_at"])
    assert_error(bob.request("PATCH", path_of(task), json={"completed": True}), 404, "not_found")


# --- idempotency -----------------------------------------------------------------------------


def post(user: User, body: Any, key: str | None, **kwargs: Any) -> Any:
    """POST /tasks with an optional Idempotency-Key."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    return user.request("POST", TASKS, json=body, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "repeat",
    [{"json": {"title": "pay rent", "tags": ["home"]}},
     {"data": '{ "tags" : ["home"],\n "title": "pay rent" }', "content_type": "application/json"}],
    ids=["same-json", "same-object-other-formatting"],
)  # fmt: skip
def test_idempotent_replay(alice: User, bob: User, repeat: dict[str, Any]) -> None:
    """A repeated key and body replays status, body and Location, and creates nothing."""
    first = post(alice, {"title": "pay rent", "tags": ["home"]}, "key-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    alice.request("PATCH", path_of(first.get_json()), json={"notes": "later edit"})
    again = alice.request("POST", TASKS, headers={"Idempotency-Key": "key-1"}, **repeat)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert [t["id"] for t in listing(alice)] == [first.get_json()["id"]]
    assert listing(bob) == []


def test_idempotency_key_with_other_body_conflicts(alice: User) -> None:
    """The same key with a different body is 409 idempotency_conflict and creates nothing."""
    first = post(alice, {"title": "one"}, "k")
    assert_error(post(alice, {"title": "two"}, "k"), 409, "idempotency_conflict")
    assert_error(post(alice, {"title": "one", "priority": "low"}, "k"), 409, "idempotency_conflict")
    assert listing(alice) == [alice.request("GET", path_of(first.get_json())).get_json()]


def test_idempotency_keys_are_per_user(alice: User, bob: User) -> None:
    """Bob may use Alice's key, with her body or another, and gets his own new task."""
    alices = post(alice, {"title": "shared"}, "same-key").get_json()
    bobs = post(bob, {"title": "shared"}, "same-key")
    assert bobs.status_code == 201 and "Idempotent-Replayed" not in bobs.headers
    assert bobs.get_json()["id"] != alices["id"]
    assert [t["id"] for t in listing(bob)] == [bobs.get_json()["id"]]
    assert [t["id"] for t in listing(alice)] == [alices["id"]]
    assert_error(bob.request("GET", path_of(alices)), 404, "not_found")


@pytest.mark.parametrize(
    ("key", "created"), [("k" * 256, 0), ("", 0), ("k" * 255, 1), ("k", 1), (None, 2)]
)
def test_idempotency_key_length(alice: User, key: str | None, created: int) -> None:
    """Keys of 1-255 characters dedupe a repeat; no key creates twice; other keys are 400."""
    for _ in range(2):
        answer = post(alice, {"title": "t"}, key)
        if created:
            assert answer.status_code == 201
        else:
            assert_error(answer, 400, "validation_error")
    assert len(listing(alice)) == created


def test_rejected_request_does_not_use_up_a_key(alice: User, bob: User) -> None:
    """A 400 with a key stores nothing, so the key then works with a valid body."""
    assert_error(post(alice, {"title": ""}, "retry-me"), 400, "validation_error")
    created = post(alice, {"title": "fixed"}, "retry-me")
    assert created.status_code == 201 and "Idempotent-Replayed" not in created.headers
    assert [t["title"] for t in listing(alice)] == ["fixed"] and listing(bob) == []


def test_concurrent_requests_with_one_key_create_one_task(
    app: Flask, alice: User, bob: User
) -> None:
    """Five simultaneous POSTs with one key create exactly one task and answer it five times."""
    barrier, answers, lock = threading.Barrier(5), [], threading.Lock()
    headers = {**alice.headers, "Idempotency-Key": "race"}

    def send() -> None:
        http = app.test_client()
        barrier.wait(timeout=30)
        answer = http.post(TASKS, json={"title": "once"}, headers=headers)
        replayed = answer.headers.get("Idempotent-Replayed")
        with lock:
            answers.append((answer.status_code, answer.get_json(), replayed))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _, _ in answers] == [201] * 5, answers
    assert len({body["id"] for _, body, _ in answers}) == 1
    assert sorted(str(r) for _, _, r in answers) == ["None"] + ["true"] * 4
    assert [t["id"] for t in listing(alice)] == [answers[0][1]["id"]]
    assert listing(bob) == []


# --- clearing completed tasks ----------------------------------------------------------------


def test_clear_completed(alice: User, bob: User) -> None:
    """DELETE /tasks?completed=true removes only this user's completed tasks and counts them."""
    done = [alice.create_task(title=f"done {i}", completed=True) for i in range(3)]
    open_ = [alice.create_task(title=f"open {i}") for i in range(2)]
    alice.request("PATCH", path_of(open_[0]), json={"completed": True})
    alice.request("PATCH", path_of(open_[0]), json={"completed": False})
    bobs = [bob.create_task(completed=True) for _ in range(2)]
    answer = alice.request("DELETE", f"{TASKS}?completed=true")
    assert answer.status_code == 200 and answer.get_json() == {"deleted": 3}
    assert sorted(t["id"] for t in listing(alice)) == sorted(t["id"] for t in open_)
    assert all(alice.request("GET", path_of(t)).status_code == 404 for t in done)
    assert sorted(t["id"] for t in listing(bob)) == sorted(t["id"] for t in bobs)
    assert alice.request("DELETE", f"{TASKS}?completed=true").get_json() == {"deleted": 0}


@pytest.mark.parametrize("query", ["", "?completed=false", "?completed=yes", "?completed=TRUE"])
def test_clear_requires_completed_true(alice: User, query: str) -> None:
    """DELETE /tasks without completed=true is 400 and deletes nothing."""
    alice.create_task(completed=True)
    assert_error(alice.request("DELETE", f"{TASKS}{query}"), 400, "validation_error")
    assert len(listing(alice)) == 1


# --- delta sync ------------------------------------------------------------------------------


def changes(
    user: User, since: str | None = None, limit: int | None = None, http: Any = None
) -> Any:
    """GET /tasks/changes."""
    params = {k: v for k, v in (("since", since), ("limit", limit)) if v is not None}
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return (http or user.client).get(f"{CHANGES}?{query}", headers=user.headers)


def test_changes_from_the_beginning(alice: User, bob: User) -> None:
    """Without since: every task once in change order with its latest state, and deletions."""
    a, b, c = (alice.create_task(title=name) for name in "abc")
    a = alice.request("PATCH", path_of(a), json={"notes": "edited"}).get_json()
    assert alice.request("DELETE", path_of(b)).status_code == 204
    bob.create_task(title="bob")
    answer = changes(alice)
    assert answer.status_code == 200
    page = answer.get_json()
    assert set(page) == {"changes", "next", "has_more"} and page["has_more"] is False
    (inbox,) = alice.request("GET", "/api/v1/lists").get_json()["items"]
    assert page["changes"] == [
        {"id": inbox["id"], "type": "list", "deleted": False, "list": inbox},
        {"id": c["id"], "type": "task", "deleted": False, "task": c},
        {"id": a["id"], "type": "task", "deleted": False, "task": a},
        {"id": b["id"], "type": "task", "deleted": True},
    ]
    bobs = changes(bob).get_json()["changes"]
    assert [ch["task"]["title"] for ch in bobs if ch["type"] == "task"] == ["bob"]


def test_changes_since_a_token(alice: User, bob: User) -> None:
    """A token returns only later changes (to its user); a caught-up one returns none."""
    a, b = alice.create_task(title="a"), alice.create_task(title="b")
    token = changes(alice).get_json()["next"]
    b = alice.request("PATCH", path_of(b), json={"completed": True}).get_json()
    alice.request("DELETE", path_of(a))
    bob.create_task()
    page = changes(alice, since=token).get_json()
    assert page["changes"] == [
        {"id": b["id"], "type": "task", "deleted": False, "task": b},
        {"id": a["id"], "type": "task", "deleted": True},
    ]
    foreign = changes(bob, since=token)  # Alice's token is not Bob's: it shows him nothing
    body = assert_error(foreign, 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["since"] and a["id"] not in foreign.text
    idle = changes(alice, since=page["next"]).get_json()
    assert idle["changes"] == [] and idle["has_more"] is False and isinstance(idle["next"], str)
    c = alice.create_task(title="c")
    assert changes(alice, since=idle["next"]).get_json()["changes"] == [
        {"id": c["id"], "type": "task", "deleted": False, "task": c}
    ]


def test_paged_sync_rebuilds_the_listing(alice: User, bob: User) -> None:
    """Pages of 2, with edits between them, applied to an empty store equal the listing."""
    tasks = [alice.create_task(title=f"t{i}", completed=i % 3 == 0) for i in range(9)]
    for task in tasks[1:5]:
        alice.request("PATCH", path_of(task), json={"priority": "high"})
    alice.request("DELETE", path_of(tasks[2]))
    bob.create_task()
    store: dict[str, Any] = {}
    token, pages = None, 0
    while True:
        page = changes(alice, since=token, limit=2).get_json()
        assert len(page["changes"]) == 2 if page["has_more"] else len(page["changes"]) <= 2
        apply(store, page)
        token, pages = page["next"], pages + 1
        if pages == 2:  # the world moves on while the client pages
            alice.request("PATCH", path_of(tasks[1]), json={"title": "moved"})
            alice.request("DELETE", f"{TASKS}?completed=true")
            alice.create_task(title="late")
        if not page["has_more"]:
            break
        assert pages < 50
    assert store == {t["id"]: t for t in listing(alice)}
    assert {t["title"] for t in store.values()} >= {"moved", "late"}


def _resign(token: str, key: bytes, purpose: str) -> str:
    """The token's payload sealed again with ``key`` for ``purpose``."""
    payload = open_token(token, key=TEST_SECRET.encode(), purpose="sync-token", field="since")
    return seal(payload, key=key, purpose=purpose)


FORGERIES = {
    "garbage": lambda t: "garbage",
    "bad-mac": lambda t: t[:-6] + ("AAAA" if t[-6:-2] != "AAAA" else "BBBB") + t[-2:],
    "truncated": lambda t: t[:-12],
    "other-key": lambda t: _resign(t, b"wrong key", "sync-token"),
    "cursor-as-token": lambda t: _resign(t, TEST_SECRET.encode(), "tasks-cursor"),
}


@pytest.mark.parametrize("make_since", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_since_is_400(alice: User, make_since: Callable[[str], str]) -> None:
    """A forged or corrupted since token is 400 validation_error on ``since``."""
    alice.create_task()
    token = changes(alice).get_json()["next"]
    body = assert_error(changes(alice, since=make_since(token)), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["since"]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "since=", "colour=red"])
def test_bad_changes_query_is_400(alice: User, query: str) -> None:
    """Bad changes parameters are 400 validation_error."""
    assert_error(alice.request("GET", f"{CHANGES}?{query}"), 400, "validation_error")


@pytest.mark.parametrize(
    ("tombstone_days", "age", "status"),
    [(30, timedelta(days=31), 410), (30, timedelta(days=29), 200),
     (1, timedelta(days=2), 410), (1, timedelta(hours=12), 200)],
)  # fmt: skip
def test_old_sync_token_expires(
    make_app: Callable[..., Flask], alice: User, tombstone_days: int, age: timedelta, status: int
) -> None:
    """A token older than tombstone retention is 410 sync_token_expired; a younger one works."""
    app = make_app(tombstone_days=tombstone_days)
    alice.create_task()
    issued = int((datetime.now(UTC) - age).timestamp())
    token = seal(
        {"s": 0, "t": issued, "u": alice.id}, key=TEST_SECRET.encode(), purpose="sync-token"
    )
    answer = changes(alice, since=token, http=app.test_client())
    if status == 410:
        assert_error(answer, 410, "sync_token_expired")
    else:
        kinds = [change["type"] for change in answer.get_json()["changes"]]
        assert answer.status_code == 200 and kinds == ["list", "task"]  # the inbox, the task
