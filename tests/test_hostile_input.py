"""Regressions from fuzzing the live server: odd but possible input gets the contract's answer."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import User

TASKS = "/api/v1/tasks"
JSON = {"Content-Type": "application/json"}


def chunked(client: FlaskClient, path: str, body: bytes, **headers: str) -> Any:
    """POST a body with Transfer-Encoding: chunked and no Content-Length."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={**JSON, "Transfer-Encoding": "chunked", **headers},
    )


def test_chunked_body_over_the_limit_is_413_even_before_auth(client: FlaskClient) -> None:
    """Werkzeug would cut a chunked body at the limit; the client must get 413, not 400/401."""
    body = b'{"title": "x", "notes": "' + b"a" * 1_100_000 + b'"}'
    answer = chunked(client, TASKS, body)
    assert answer.status_code == 413
    assert answer.json["code"] == "payload_too_large"


def test_chunked_body_within_the_limit_works(alice: User) -> None:
    """A small chunked body is read as usual."""
    answer = chunked(alice.client, TASKS, b'{"title": "chunked"}', **alice.headers)
    assert answer.status_code == 201
    assert answer.json["title"] == "chunked"


@pytest.mark.parametrize(
    "raw",
    [b'{"title": "x", "version": NaN}', b'{"title": "x", "id": -Infinity}',
     b'{"title": "caf\xe9"}', b"\xef\xbb\xbf{}", b'{"title": "x"} trailing'],
    ids=["nan", "infinity", "invalid-utf8", "bom", "trailing"],
)  # fmt: skip
def test_non_json_is_invalid_json(alice: User, raw: bytes) -> None:
    """NaN, Infinity, invalid UTF-8 and trailing garbage are not JSON."""
    answer = alice.request("POST", TASKS, data=raw, headers=JSON)
    assert answer.status_code == 400
    assert answer.json["code"] == "invalid_json"
    assert alice.request("GET", TASKS).json["items"] == []


def test_lone_surrogate_names_its_field(alice: User) -> None:
    """Half a surrogate pair is valid JSON syntax but not Unicode text: 400 on that field."""
    answer = alice.request(
        "POST", TASKS, data=b'{"title": "ok", "tags": ["a\\ud800"]}', headers=JSON
    )
    assert answer.status_code == 400
    assert answer.json["details"][0]["field"] == "tags.0"


def test_huge_integer_in_an_ignored_field_is_refused(alice: User) -> None:
    """The number-length limit holds everywhere, even in a field that would be ignored."""
    raw = b'{"title": "big", "version": ' + b"9" * 5000 + b"}"
    answer = alice.request("POST", TASKS, data=raw, headers=JSON)
    assert answer.status_code == 400 and answer.json["code"] == "validation_error"
    assert [d["field"] for d in answer.json["details"]] == ["version"]


@pytest.mark.parametrize("query", ["q=%FF", "tag=%C0%80", "q=%ED%A0%80"])
def test_invalid_utf8_in_the_query_is_400(alice: User, query: str) -> None:
    """A bad query value is 400, never silently replaced."""
    answer = alice.request("GET", f"{TASKS}?{query}")
    assert answer.status_code == 400
    assert answer.json["code"] == "validation_error"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_auth_scheme_is_case_insensitive(alice: User, scheme: str) -> None:
    """RFC 9110: the scheme name is case-insensitive."""
    answer = alice.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"{scheme} {alice.access_token}"}
    )
    assert answer.status_code == 200


def test_other_auth_schemes_get_the_bare_challenge(client: FlaskClient) -> None:
    """Basic credentials are no bearer token: 401 with plain ``Bearer``."""
    answer = client.get(TASKS, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_changes_route_allows_only_get(alice: User, method: str) -> None:
    """/tasks/changes is not a task id: other methods are 405 with its own Allow header."""
    answer = alice.request(method, f"{TASKS}/changes", json={"title": "x"})
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_no_content_answers_have_no_content_type(alice: User) -> None:
    """204 answers carry no body and no (HTML) content type."""
    task = alice.create_task()
    answer = alice.request("DELETE", f"{TASKS}/{task['id']}")
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers


def test_many_fractional_digits_are_accepted(alice: User) -> None:
    """RFC 3339 allows any number of fractional digits; microseconds are kept."""
    task = alice.create_task(due_at="2026-11-22T12:00:00.1234567891Z")
    assert task["due_at"] == "2026-11-22T12:00:00.123456Z"
