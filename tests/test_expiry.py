"""Promises that end with time: the refresh-token grace and idempotency keys.

Time is moved by ageing rows in the database (as if the clock had run), then the API is
asked again through HTTP.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import Flask

from tests.conftest import User
from tests.support import (
    IDEMPOTENCY_KEYS,
    SESSIONS,
    TASKS,
    assert_error,
    current_session_id,
    me,
    refresh,
    shift_back,
)

PAST_THE_GRACE = timedelta(seconds=10)  # the contract's grace is at most 5 seconds
PAST_A_DAY = timedelta(hours=24, seconds=1)
REPLAYED = "Idempotent-Replayed"


# --- the refresh grace -----------------------------------------------------------------------


def test_refresh_grace_ends_and_late_reuse_revokes_the_session(app: Flask, alice: User) -> None:
    """R1 reused within the grace gets R2 again; 10 s later it is reuse: the session ends."""
    r1 = alice.refresh_token
    rotated = refresh(alice.client, r1)
    assert rotated.status_code == 200, rotated.json
    r2, access = rotated.json["refresh_token"], rotated.json["access_token"]
    assert r2 != r1

    second_tab = refresh(alice.client, r1)
    assert second_tab.status_code == 200, second_tab.json
    assert second_tab.json["refresh_token"] == r2
    assert me(alice.client, second_tab.json["access_token"]).status_code == 200

    session = current_session_id(alice.client, access)
    shift_back(app, SESSIONS.c.rotated_at, PAST_THE_GRACE, SESSIONS.c.id == session)

    assert_error(refresh(alice.client, r1), 401, "token_revoked")
    assert_error(refresh(alice.client, r2), 401, "token_revoked")
    for token in (access, second_tab.json["access_token"], alice.access_token):
        assert_error(me(alice.client, token), 401, "token_revoked")


# --- idempotency keys ------------------------------------------------------------------------


def create(user: User, key: str, body: dict[str, Any]) -> Any:
    """POST /tasks with an Idempotency-Key."""
    return user.request("POST", TASKS, json=body, headers={"Idempotency-Key": key})


def age_key(app: Flask, user: User, key: str) -> None:
    """Make the user's idempotency key 24 hours and 1 second old."""
    where = (IDEMPOTENCY_KEYS.c.owner_id == uuid.UUID(user.id)) & (IDEMPOTENCY_KEYS.c.key == key)
    shift_back(app, IDEMPOTENCY_KEYS.c.created_at, PAST_A_DAY, where)


def test_idempotency_key_expires_after_24_hours(app: Flask, alice: User) -> None:
    """Within 24 h the key replays; after it, the same request creates a new task."""
    body = {"title": "Pay the rent", "priority": "high", "tags": ["home"]}
    first = create(alice, "rent-june", body)
    assert first.status_code == 201 and REPLAYED not in first.headers

    replay = create(alice, "rent-june", body)
    assert replay.status_code == 201
    assert replay.headers[REPLAYED] == "true"
    assert replay.json == first.json

    age_key(app, alice, "rent-june")
    fresh = create(alice, "rent-june", body)
    assert fresh.status_code == 201, fresh.json
    assert REPLAYED not in fresh.headers
    assert fresh.json["id"] != first.json["id"]
    assert fresh.json["title"] == "Pay the rent"
    for task in (first.json, fresh.json):
        assert alice.request("GET", f"{TASKS}/{task['id']}").status_code == 200

    again = create(alice, "rent-june", body)  # the key now belongs to the new task
    assert again.headers[REPLAYED] == "true" and again.json["id"] == fresh.json["id"]


def test_aged_idempotency_key_accepts_another_body(app: Flask, alice: User) -> None:
    """Another body under a used key is 409 within 24 h, and creates a task after them."""
    assert create(alice, "groceries", {"title": "Buy milk"}).status_code == 201
    assert_error(create(alice, "groceries", {"title": "Buy bread"}), 409, "idempotency_conflict")

    age_key(app, alice, "groceries")
    other = create(alice, "groceries", {"title": "Buy bread"})
    assert other.status_code == 201, other.json
    assert REPLAYED not in other.headers
    assert other.json["title"] == "Buy bread"
