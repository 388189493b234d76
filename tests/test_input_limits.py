"""Input limits of JSON bodies: numbers of at most 100 characters, finite, 32 levels of nesting."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import User

TASKS = "/api/v1/tasks"
JSON = {"Content-Type": "application/json"}
HUGE = b"9" * 5000


def post(user: User, raw: bytes) -> Any:
    """POST a raw JSON body to /tasks as ``user``."""
    return user.request("POST", TASKS, data=raw, headers=JSON)


def nested(levels: int) -> bytes:
    """``levels`` arrays, one inside the other."""
    return b"[" * levels + b"]" * levels


def test_huge_number_for_a_string_is_a_validation_error(alice: User) -> None:
    """5000 digits as notes (which could hold them as text) are refused as a number."""
    answer = post(alice, b'{"title": "x", "notes": ' + HUGE + b"}")
    assert (answer.status_code, answer.json["code"]) == (400, "validation_error")


def test_huge_number_names_its_field(alice: User) -> None:
    """The details point at the field holding the number."""
    answer = post(alice, b'{"title": "x", "notes": ' + HUGE + b"}")
    assert [d["field"] for d in answer.json["details"]] == ["notes"]


def test_huge_number_stores_nothing(alice: User) -> None:
    """No task with digits for notes is created."""
    post(alice, b'{"title": "x", "notes": ' + HUGE + b"}")
    assert alice.request("GET", TASKS).json["items"] == []


def test_huge_number_inside_an_array_names_its_item(alice: User) -> None:
    """A number in a list is named by its index."""
    answer = post(alice, b'{"title": "x", "tags": ["a", ' + b"1" * 101 + b"]}")
    assert answer.json["details"][0]["field"] == "tags.1"


@pytest.mark.parametrize(
    "number",
    [b"9" * 100, b"-" + b"9" * 99, b"0." + b"1" * 98, b"-1.5e" + b"0" * 94 + b"1", b"1e308"],
    ids=["100-digits", "negative-100-chars", "fraction-100-chars", "exponent-100-chars", "1e308"],
)
def test_numbers_up_to_the_limit_are_accepted(alice: User, number: bytes) -> None:
    """100 characters is still a number (here in a server-set field, which is ignored)."""
    answer = post(alice, b'{"title": "x", "version": ' + number + b"}")
    assert answer.status_code == 201


@pytest.mark.parametrize(
    "number",
    [b"9" * 101, b"-" + b"9" * 100, b"0." + b"1" * 99, b"1e999", b"-1e999", b"1" * 400 + b".0"],
    ids=["101-digits", "negative-101-chars", "fraction-101-chars", "1e999", "-1e999", "long-float"],
)
def test_numbers_past_the_limit_are_refused_even_where_ignored(alice: User, number: bytes) -> None:
    """Too long or infinite: 400 naming the field, even in a field that would be ignored."""
    answer = post(alice, b'{"title": "x", "version": ' + number + b"}")
    assert [d["field"] for d in answer.json["details"]] == ["version"]


def test_nesting_up_to_32_levels_is_accepted(alice: User) -> None:
    """The body's object and 31 arrays inside it make 32 levels."""
    answer = post(alice, b'{"title": "x", "id": ' + nested(31) + b"}")
    assert answer.status_code == 201


def test_nesting_past_32_levels_is_invalid_json(alice: User) -> None:
    """One level more is refused as a whole: 400 invalid_json."""
    answer = post(alice, b'{"title": "x", "id": ' + nested(32) + b"}")
    assert (answer.status_code, answer.json["code"]) == (400, "invalid_json")


def test_deeply_nested_objects_are_invalid_json(alice: User) -> None:
    """Objects count like arrays."""
    raw = b'{"title": "x", "id": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}"
    answer = post(alice, raw)
    assert (answer.status_code, answer.json["code"]) == (400, "invalid_json")


def test_nesting_beyond_the_parser_is_invalid_json(alice: User) -> None:
    """100,000 levels (past Python's recursion limit) get the same answer, not a 500."""
    answer = post(alice, b'{"title": "x", "id": ' + nested(100_000) + b"}")
    assert (answer.status_code, answer.json["code"]) == (400, "invalid_json")
