"""Task input validation: every field rule, body parsing, media types, size and query rules."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from tests.conftest import User
from tests.support import assert_error

TASKS = "/api/v1/tasks"
JSON = "application/json"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def fields_of(body: dict[str, Any]) -> list[str]:
    """The field names a validation error's details point at."""
    return [d["field"] for d in body["details"]]


def names_field(body: dict[str, Any], name: str) -> bool:
    """Whether some detail is about ``name`` or an element of it (``tags.3``)."""
    return any(f == name or f.startswith(f"{name}.") for f in fields_of(body))


@pytest.fixture
def task(alice: User) -> dict[str, Any]:
    """One task of Alice's that rejected writes must leave alone."""
    fields = {"notes": "n", "tags": ["a"], "priority": "low", "due_at": "2026-01-01T00:00:00Z"}
    return alice.create_task(title="keep me", **fields)


def assert_untouched(alice: User, bob: User, task: dict[str, Any]) -> None:
    """The stored task is exactly as created, it is Alice's only task, and Bob cannot see it."""
    path = f"{TASKS}/{task['id']}"
    assert alice.request("GET", path).get_json() == task
    assert [t["id"] for t in alice.request("GET", TASKS).get_json()["items"]] == [task["id"]]
    assert_error(bob.request("GET", path), 404, "not_found")


def send(user: User, method: str, task: dict[str, Any], **kwargs: Any) -> Any:
    """POST to the collection, or PUT/PATCH the task."""
    path = TASKS if method == "POST" else f"{TASKS}/{task['id']}"
    return user.request(method, path, **kwargs)


T201 = " " + "x" * 201 + " "
TWENTY = [f"t{i}" for i in range(20)]
SMILE, E_ACUTE = "\U0001f600", "\u00e9"
BAD_FIELDS = [
    pytest.param({"title": ""}, "title", id="title-empty"),
    pytest.param({"title": " \t\n "}, "title", id="title-whitespace"),
    pytest.param({"title": T201}, "title", id="title-201-after-trim"),
    pytest.param({"title": SMILE * 201}, "title", id="title-201-astral"),
    pytest.param({"title": 5}, "title", id="title-number"),
    pytest.param({"title": ["x"]}, "title", id="title-array"),
    pytest.param({"title": None}, "title", id="title-null"),
    pytest.param({"title": "a\u0000b"}, "title", id="title-nul"),
    pytest.param({"notes": "x" * 10_001}, "notes", id="notes-10001"),
    pytest.param({"notes": None}, "notes", id="notes-null"),
    pytest.param({"notes": 1}, "notes", id="notes-number"),
    pytest.param({"notes": "\u0000"}, "notes", id="notes-nul"),
    pytest.param({"completed": "true"}, "completed", id="completed-string"),
    pytest.param({"completed": 1}, "completed", id="completed-number"),
    pytest.param({"completed": None}, "completed", id="completed-null"),
    pytest.param({"due_at": "2026-11-22T12:00:00"}, "due_at", id="due-naive"),
    pytest.param({"due_at": 1_790_000_000}, "due_at", id="due-number"),
    pytest.param({"due_at": "2026-11-22"}, "due_at", id="due-date-only"),
    pytest.param({"due_at": "2026-02-30T12:00:00Z"}, "due_at", id="due-feb-30"),
    pytest.param({"due_at": "2026-13-01T25:00:00Z"}, "due_at", id="due-out-of-range"),
    pytest.param({"due_at": "tomorrow"}, "due_at", id="due-words"),
    pytest.param({"due_at": "22 Nov 2026 12:00:00 +0000"}, "due_at", id="due-rfc2822"),
    pytest.param({"priority": "urgent"}, "priority", id="priority-unknown"),
    pytest.param({"priority": "HIGH"}, "priority", id="priority-case"),
    pytest.param({"priority": 2}, "priority", id="priority-number"),
    pytest.param({"priority": None}, "priority", id="priority-null"),
    pytest.param({"tags": [*TWENTY, "t20"]}, "tags", id="tags-21-distinct"),
    pytest.param({"tags": [*TWENTY, " t20 ", "t0"]}, "tags", id="tags-21-after-trim"),
    pytest.param({"tags": ["x" * 51]}, "tags", id="tag-51"),
    pytest.param({"tags": [SMILE * 51]}, "tags", id="tag-51-astral"),
    pytest.param({"tags": ["ok", "  "]}, "tags", id="tag-blank"),
    pytest.param({"tags": [""]}, "tags", id="tag-empty"),
    pytest.param({"tags": ["ok", 5]}, "tags", id="tag-number"),
    pytest.param({"tags": [None]}, "tags", id="tag-null"),
    pytest.param({"tags": "a,b"}, "tags", id="tags-string"),
    pytest.param({"tags": None}, "tags", id="tags-null"),
    pytest.param({"tags": ["a\u0000"]}, "tags", id="tag-nul"),
    pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"Title": "x"}, "Title", id="unknown-field-case"),
]  # fmt: skip


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(("fields", "field"), BAD_FIELDS)
def test_bad_field_is_rejected(
    alice: User, bob: User, task: dict[str, Any], method: str, fields: dict[str, Any], field: str
) -> None:
    """Each bad field value is a 400 validation_error naming the field, and nothing changes."""
    body = fields if method == "PATCH" or "title" in fields else {"title": "t", **fields}
    answer = assert_error(send(alice, method, task, json=body), 400, "validation_error")
    assert names_field(answer, field), answer
    assert_untouched(alice, bob, task)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_title_is_required(alice: User, bob: User, task: dict[str, Any], method: str) -> None:
    """POST and PUT without a title are 400 with details on ``title``."""
    answer = send(alice, method, task, json={"notes": "no title"})
    assert fields_of(assert_error(answer, 400, "validation_error")) == ["title"]
    assert_untouched(alice, bob, task)


DUE = "2026-11-22T12:00:00"
GOOD_FIELDS = [
    pytest.param({"title": " " + "y" * 200 + "\t"}, {"title": "y" * 200}, id="title-200-trim"),
    pytest.param({"notes": "n" * 10_000}, None, id="notes-10000"),
    pytest.param({"due_at": None}, None, id="due-null-clears"),
    pytest.param({"due_at": "2026-11-22T14:00:00+02:00"}, {"due_at": f"{DUE}.000000Z"},
                 id="due-utc"),
    pytest.param({"due_at": f"{DUE}.5Z"}, {"due_at": f"{DUE}.500000Z"}, id="due-fraction"),
    pytest.param({"tags": [*TWENTY, "t0", " t1", "t2 ", "t3", "t19"]}, {"tags": TWENTY},
                 id="tags-25-collapse-to-20"),
    pytest.param({"tags": [" b ", "a", "b", "a "]}, {"tags": ["b", "a"]}, id="tags-trim-dedupe"),
    pytest.param({"tags": ["z" * 50]}, None, id="tag-50"),
    pytest.param({"title": SMILE * 200, "tags": [E_ACUTE * 50]}, None, id="astral-200-tag-50"),
    pytest.param({"tags": []}, None, id="tags-empty"),
    pytest.param({"priority": "high"}, None, id="priority-high"),
    pytest.param({"title": f"caf{E_ACUTE} {SMILE}"}, None, id="unicode"),
]  # fmt: skip


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(("fields", "expected"), GOOD_FIELDS)
def test_boundary_values_are_accepted(
    alice: User,
    bob: User,
    task: dict[str, Any],
    method: str,
    fields: dict[str, Any],
    expected: dict[str, Any] | None,
) -> None:
    """Values at the limits are accepted and normalised as the contract says."""
    body = fields if method == "PATCH" or "title" in fields else {"title": "t", **fields}
    answer = send(alice, method, task, json=body)
    assert answer.status_code == (201 if method == "POST" else 200), answer.get_json()
    stored = alice.request("GET", f"{TASKS}/{answer.get_json()['id']}").get_json()
    expected = expected or fields
    assert {k: stored[k] for k in expected} == expected
    assert_error(bob.request("GET", f"{TASKS}/{stored['id']}"), 404, "not_found")


SERVER_SET = {
    "id": str(uuid.uuid4()),
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
    "version": 99,
    "completed_at": "2000-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "server_fields",
    [SERVER_SET, {"id": 5, "version": "abc", "created_at": None, "completed_at": True}],
    ids=["plausible", "garbage"],
)
def test_server_set_fields_are_ignored_on_create(
    alice: User, bob: User, server_fields: dict[str, Any]
) -> None:
    """POST ignores id, timestamps, version and completed_at sent by the client."""
    created = alice.request("POST", TASKS, json={"title": "t", **server_fields})
    assert created.status_code == 201, created.get_json()
    task = created.get_json()
    assert task["id"] != server_fields["id"] and task["version"] == 1
    assert task["completed_at"] is None and not task["created_at"].startswith("2000")
    assert task["updated_at"] == task["created_at"] and TIMESTAMP.match(task["created_at"])
    assert_error(bob.request("GET", f"{TASKS}/{task['id']}"), 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_client_may_send_back_what_it_read(
    alice: User, bob: User, task: dict[str, Any], method: str
) -> None:
    """PUT/PATCH of a read task with edits keeps server-set fields server-controlled."""
    sent = {**task, **SERVER_SET, "title": "edited"}
    answer = send(alice, method, task, json=sent)
    assert answer.status_code == 200, answer.get_json()
    updated = answer.get_json()
    assert updated["id"] == task["id"] and updated["version"] == 2
    assert updated["created_at"] == task["created_at"] and updated["completed_at"] is None
    assert updated["title"] == "edited" and updated["tags"] == ["a"]
    assert_error(send(bob, method, task, json=sent), 404, "not_found")


@pytest.mark.parametrize(
    "body", [{}, {"version": 7, "id": str(uuid.uuid4())}], ids=["empty", "ignored-only"]
)
def test_patch_without_changes_is_rejected(
    alice: User, bob: User, task: dict[str, Any], body: dict[str, Any]
) -> None:
    """PATCH {} (or only ignored fields) is 400 and does not bump the version."""
    assert_error(send(alice, "PATCH", task, json=body), 400, "validation_error")
    assert_untouched(alice, bob, task)


SURROGATES = [
    pytest.param(b'{"title": "a\\ud800b"}', id="title"),
    pytest.param(b'{"title": "t", "notes": "\\udfff"}', id="notes-low"),
    pytest.param(b'{"title": "t", "tags": ["\\ud83d"]}', id="tag-unpaired-high"),
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("raw", SURROGATES)
def test_lone_surrogates_are_rejected(
    alice: User, bob: User, task: dict[str, Any], method: str, raw: bytes
) -> None:
    """A lone UTF-16 surrogate escape is not valid Unicode text: 400, nothing stored."""
    answer = send(alice, method, task, data=raw, content_type=JSON)
    code = answer.get_json()["code"]
    assert code in ("validation_error", "invalid_json")
    assert_error(answer, 400, code)
    assert_untouched(alice, bob, task)


def test_surrogate_pair_escape_is_accepted(alice: User, bob: User) -> None:
    """A properly paired surrogate escape decodes to one character."""
    raw = b'{"title": "\\ud83d\\ude00"}'
    created = alice.request("POST", TASKS, data=raw, content_type=JSON)
    assert created.status_code == 201 and created.get_json()["title"] == "\U0001f600"
    assert_error(bob.request("GET", f"{TASKS}/{created.get_json()['id']}"), 404, "not_found")


NOT_AN_OBJECT = [
    pytest.param(b'{"title": ', id="truncated"),
    pytest.param(b"{'title': 'x'}", id="single-quotes"),
    pytest.param(b'{"title": "x",}', id="trailing-comma"),
    pytest.param(b'{"title": "\xff"}', id="invalid-utf8"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'[{"title": "x"}]', id="array-of-object"),
    pytest.param(b'"title"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b"42", id="number"),
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("raw", NOT_AN_OBJECT)
def test_body_that_is_not_a_json_object(
    alice: User, bob: User, task: dict[str, Any], method: str, raw: bytes
) -> None:
    """Broken JSON, an empty body or a non-object is 400 invalid_json."""
    assert_error(send(alice, method, task, data=raw, content_type=JSON), 400, "invalid_json")
    assert_untouched(alice, bob, task)


WRONG_TYPES = [
    pytest.param({"data": '{"title": "x"}', "content_type": "text/plain"}, id="text-plain"),
    pytest.param({"data": {"title": "x"}}, id="form-urlencoded"),
    pytest.param({"data": {"title": "x"}, "content_type": "multipart/form-data"}, id="multipart"),
    pytest.param({"data": b'{"title": "x"}'}, id="no-content-type"),
    pytest.param({"data": "{broken", "content_type": "text/plain"}, id="415-before-400"),
]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("kwargs", WRONG_TYPES)
def test_wrong_media_type_is_415(
    alice: User, bob: User, task: dict[str, Any], method: str, kwargs: dict[str, Any]
) -> None:
    """Any body type but JSON is 415 unsupported_media_type, before body validation."""
    assert_error(send(alice, method, task, **kwargs), 415, "unsupported_media_type")
    assert_untouched(alice, bob, task)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_merge_patch_type_only_for_patch(
    alice: User, bob: User, task: dict[str, Any], method: str
) -> None:
    """application/merge-patch+json is 415 on POST and PUT."""
    raw = json.dumps({"title": "x"})
    answer = send(alice, method, task, data=raw, content_type="application/merge-patch+json")
    assert_error(answer, 415, "unsupported_media_type")
    assert_untouched(alice, bob, task)


@pytest.mark.parametrize(
    ("method", "content_type"),
    [("PATCH", "application/merge-patch+json"), ("PATCH", "application/json; charset=utf-8"),
     ("PUT", "application/json; charset=utf-8"), ("POST", "application/json; charset=utf-8")],
)  # fmt: skip
def test_accepted_media_types(
    alice: User, bob: User, task: dict[str, Any], method: str, content_type: str
) -> None:
    """PATCH takes merge-patch+json; a charset parameter on application/json is fine."""
    raw = json.dumps({"title": "via " + content_type})
    answer = send(alice, method, task, data=raw, content_type=content_type)
    assert answer.status_code == (201 if method == "POST" else 200), answer.get_json()
    assert answer.get_json()["title"] == "via " + content_type
    assert_error(send(bob, "PATCH", answer.get_json(), data=raw, content_type=content_type),
                 404, "not_found")  # fmt: skip


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("authenticated", [True, False], ids=["auth", "anonymous"])
def test_body_over_limit_is_413(
    alice: User, bob: User, task: dict[str, Any], method: str, authenticated: bool
) -> None:
    """A body over 1 MiB is 413 payload_too_large, even before authentication."""
    raw = json.dumps({"title": "big", "notes": "x" * (1024 * 1024)})
    if authenticated:
        answer = send(alice, method, task, data=raw, content_type=JSON)
    else:
        path = TASKS if method == "POST" else f"{TASKS}/{task['id']}"
        answer = alice.client.open(path, method=method, data=raw, content_type=JSON)
    assert_error(answer, 413, "payload_too_large")
    assert_untouched(alice, bob, task)


def test_body_limit_is_configurable(make_app: Callable[..., Flask], make_user: Any) -> None:
    """With max_body_bytes=2048 a 3 KB body is 413 while a small one is created."""
    small_app = make_app(max_body_bytes=2048)
    user = make_user(on=small_app.test_client())
    raw = json.dumps({"title": "t", "notes": "x" * 3000})
    assert_error(user.request("POST", TASKS, data=raw, content_type=JSON), 413, "payload_too_large")
    assert user.request("POST", TASKS, json={"title": "t", "notes": "x" * 1500}).status_code == 201
    assert len(user.request("GET", TASKS).get_json()["items"]) == 1


QUERY_ROUTES = {
    "list": ("GET", TASKS, None), "create": ("POST", TASKS, {"title": "new"}),
    "clear": ("DELETE", f"{TASKS}?completed=true", None),
    "changes": ("GET", f"{TASKS}/changes", None),
    "get": ("GET", "{one}", None), "put": ("PUT", "{one}", {"title": "new"}),
    "patch": ("PATCH", "{one}", {"title": "new"}), "delete": ("DELETE", "{one}", None),
}  # fmt: skip


@pytest.mark.parametrize("route", QUERY_ROUTES.values(), ids=QUERY_ROUTES.keys())
def test_unknown_query_parameter_is_400(
    alice: User, bob: User, task: dict[str, Any], route: tuple[str, str, Any]
) -> None:
    """An unknown query parameter is 400 validation_error naming it, on every task route."""
    method, path, body = route
    path = path.format(one=f"{TASKS}/{task['id']}")
    joiner = "&" if "?" in path else "?"
    answer = alice.request(method, f"{path}{joiner}colour=red", json=body)
    assert fields_of(assert_error(answer, 400, "validation_error")) == ["colour"]
    assert_untouched(alice, bob, task)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("task_id", ["not-a-uuid", "123", str(uuid.uuid4())])
def test_unknown_or_malformed_id_is_404(alice: User, method: str, task_id: str) -> None:
    """A path id that is not a UUID, or no task, is 404 not_found."""
    answer = alice.request(method, f"{TASKS}/{task_id}", json={"title": "x"})
    assert_error(answer, 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_validation_ranks_before_resource_404(
    alice: User, bob: User, task: dict[str, Any], method: str
) -> None:
    """Bob's invalid write to Alice's task is 400 (before 404); his valid one is 404."""
    assert_error(send(bob, method, task, json={"title": ""}), 400, "validation_error")
    assert_error(send(bob, method, task, json={"title": "mine"}), 404, "not_found")
    assert_untouched(alice, bob, task)


EDGE_TIMESTAMPS = [
    pytest.param("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z", id="year-1"),
    pytest.param("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z", id="year-9999"),
]
# Instants that fall outside years 1 to 9999 once converted to UTC cannot be stored.
UNWRITABLE_TIMESTAMPS = [
    pytest.param("9999-12-31T23:59:59-01:00", id="utc-year-10000"),
    pytest.param("0001-01-01T00:00:00+01:00", id="utc-year-0"),
]


@pytest.mark.parametrize(("due", "utc"), EDGE_TIMESTAMPS)
def test_edge_of_calendar_timestamps(alice: User, bob: User, due: str, utc: str) -> None:
    """Extreme writable instants are echoed as RFC 3339 UTC and accepted as listing filters."""
    answer = alice.request("POST", TASKS, json={"title": "t", "due_at": due})
    assert answer.status_code == 201, answer.text
    path = f"{TASKS}/{answer.get_json()['id']}"
    assert alice.request("GET", path).get_json()["due_at"] == utc
    assert_error(bob.request("GET", path), 404, "not_found")
    for name in ("due_before", "due_after"):
        listed = alice.request("GET", f"{TASKS}?{urlencode({name: due})}")
        assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("due", UNWRITABLE_TIMESTAMPS)
def test_unwritable_timestamps_are_400(alice: User, due: str) -> None:
    """An instant past either end of the calendar in UTC is 400, as a field and as a filter."""
    answer = alice.request("POST", TASKS, json={"title": "t", "due_at": due})
    assert names_field(assert_error(answer, 400, "validation_error"), "due_at")
    for name in ("due_before", "due_after"):
        listed = alice.request("GET", f"{TASKS}?{urlencode({name: due})}")
        assert names_field(assert_error(listed, 400, "validation_error"), name)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/tasks/{id}"), ("PUT", TASKS), ("PATCH", TASKS)],
)
def test_unsupported_method_is_405(
    alice: User, task: dict[str, Any], method: str, path: str
) -> None:
    """A method a task route does not support is 405 with an Allow header."""
    answer = alice.request(method, path.format(id=task["id"]), json={"title": "x"})
    assert_error(answer, 405, "method_not_allowed")
    assert method not in {m.strip() for m in answer.headers["Allow"].split(",")}
