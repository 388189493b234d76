"""Delta sync stays consistent under concurrent writes and across slow paging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from taskapi.services.cursors import open_token
from tests.conftest import TEST_SECRET, User
from tests.support import apply, engine_of

CHANGES = "/api/v1/tasks/changes"


def payload_of(token: str) -> dict[str, Any]:
    """The payload of a sync token, opened with the server's key."""
    return open_token(token, key=TEST_SECRET.encode(), purpose="sync-token", field="since")


def sync_all(user: User, store: dict[str, Any], since: str | None) -> str:
    """Fetch and apply pages until caught up; return the last token."""
    while True:
        query = f"?since={since}" if since else ""
        page = user.request("GET", f"{CHANGES}{query}").json
        apply(store, page)
        since = page["next"]
        if not page["has_more"]:
            return since


def test_writes_between_the_sync_queries_are_not_half_seen(
    app: Flask, alice: User, is_postgres: bool
) -> None:
    """An update and a delete landing between the task and tombstone reads are not lost."""
    if not is_postgres:
        pytest.skip("SQLite reads one snapshot per transaction; the race needs PostgreSQL")
    a, b = alice.create_task(title="A v1"), alice.create_task(title="B")
    store: dict[str, Any] = {}
    since = sync_all(alice, store, None)
    alice.request("PATCH", f"/api/v1/tasks/{a['id']}", json={"notes": "touch"})
    engine = engine_of(app)
    fired: list[bool] = []

    def interleave(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fired or "FROM tasks" not in statement or "change_seq" not in statement:
            return
        fired.append(True)  # another device writes right after the task query ran
        other = app.test_client()
        headers = alice.headers
        other.patch(f"/api/v1/tasks/{a['id']}", json={"title": "A v2"}, headers=headers)
        other.delete(f"/api/v1/tasks/{b['id']}", headers=headers)

    event.listen(engine, "after_cursor_execute", interleave)
    try:
        page = alice.request("GET", f"{CHANGES}?since={since}").json
    finally:
        event.remove(engine, "after_cursor_execute", interleave)
    assert fired
    apply(store, page)
    sync_all(alice, store, page["next"])
    listed = alice.request("GET", "/api/v1/tasks").json["items"]
    assert sorted(t["title"] for t in store.values()) == sorted(t["title"] for t in listed)
    assert sorted(t["title"] for t in listed) == ["A v2"]


def test_token_age_is_when_the_view_was_last_whole(alice: User) -> None:
    """While paging, the token keeps the start time; once caught up it moves forward."""
    for i in range(3):
        alice.create_task(title=f"t{i}")
    first = alice.request("GET", f"{CHANGES}?limit=1").json
    assert first["has_more"]
    second = alice.request("GET", f"{CHANGES}?limit=1&since={first['next']}").json
    assert second["has_more"]
    assert payload_of(second["next"])["t"] == payload_of(first["next"])["t"]
    last = alice.request("GET", f"{CHANGES}?limit=10&since={second['next']}").json
    assert not last["has_more"]
    assert payload_of(last["next"])["t"] >= payload_of(first["next"])["t"] - 301
    started = payload_of(first["next"])["t"]
    assert abs(started - datetime.now(UTC).timestamp()) < 60
