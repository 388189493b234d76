"""``taskapi db prune``: dead sessions, day-old idempotency keys and old tombstones go.

The data is made through HTTP on a freshly migrated database of each backend (so that the
printed counts are exact), some rows are aged in the database, and the real command runs
as a process. Rows just inside each limit must stay.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import TEST_SECRET, User, fresh_postgres_database, login
from tests.support import (
    AUTH,
    IDEMPOTENCY_KEYS,
    SESSIONS,
    TASKS,
    TOMBSTONES,
    assert_error,
    bearer,
    current_session_id,
    me,
    refresh,
    rows,
    run_cli,
    shift_back,
)

RETENTION_DAYS = 30


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A new database on this run's backend, migrated by ``taskapi db upgrade``."""

    def migrated(url: str) -> str:
        result = run_cli("db", "upgrade", env=cli_env(url), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return url

    if database_url.startswith("sqlite"):
        yield migrated(f"sqlite:///{tmp_path / 'prune.db'}")
    else:
        with fresh_postgres_database("taskapi_prune") as url:
            yield migrated(url)


def cli_env(url: str) -> dict[str, str]:
    """What the command needs: the database, the secret, and the tombstone retention."""
    return {
        "TASKAPI_DATABASE_URL": url,
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_TOMBSTONE_DAYS": str(RETENTION_DAYS),
    }


def counts(stdout: str) -> dict[str, int]:
    """``sessions: 2, idempotency_keys: 1, tombstones: 1`` as a dict."""
    return {name: int(n) for name, n in re.findall(r"([a-z_]+): (\d+)", stdout)}


def new_session(user: User) -> dict[str, Any]:
    """Log the user in once more: another session, with its tokens and id."""
    answer = login(user.client, user.email)
    assert answer.status_code == 200, answer.json
    tokens: dict[str, Any] = answer.json
    tokens["id"] = current_session_id(user.client, tokens["access_token"])
    return tokens


def deleted_task(user: User, title: str) -> uuid.UUID:
    """Create and delete a task, leaving its tombstone; its id."""
    task = user.create_task(title=title)
    assert user.request("DELETE", f"{TASKS}/{task['id']}").status_code == 204
    return uuid.UUID(task["id"])


def test_prune_deletes_exactly_what_has_expired(
    make_app: Callable[..., Flask],
    make_user: Callable[..., User],
    empty_url: str,
    tmp_path: Path,
) -> None:
    """Revoked and expired sessions, keys over 24 h and tombstones over retention go."""
    app = make_app(database_url=empty_url)
    alice = make_user("Alice", on=app.test_client())
    bob = make_user("Bob", on=app.test_client())
    alice_id, bob_id = uuid.UUID(alice.id), uuid.UUID(bob.id)

    # Sessions: both first logins live; Alice logs out of a second one; her third expired a
    # day ago; Bob's second has a day left.
    alice_live = current_session_id(alice.client, alice.access_token)
    bob_live = current_session_id(bob.client, bob.access_token)
    logged_out = new_session(alice)
    logout = alice.client.post(f"{AUTH}/logout", headers=bearer(logged_out["access_token"]))
    assert logout.status_code == 204
    expired = new_session(alice)
    ending = new_session(bob)
    days = timedelta(days=1)
    shift_back(app, SESSIONS.c.expires_at, 31 * days, SESSIONS.c.id == expired["id"])
    shift_back(app, SESSIONS.c.expires_at, 29 * days, SESSIONS.c.id == ending["id"])

    # Idempotency keys: one over 24 hours old, one of 23 hours, one new.
    for user, key in ((alice, "old"), (alice, "recent"), (bob, "new")):
        answer = user.request("POST", TASKS, json={"title": key}, headers={"Idempotency-Key": key})
        assert answer.status_code == 201
    for key, age in (("old", timedelta(hours=24, seconds=1)), ("recent", timedelta(hours=23))):
        where = (IDEMPOTENCY_KEYS.c.owner_id == alice_id) & (IDEMPOTENCY_KEYS.c.key == key)
        shift_back(app, IDEMPOTENCY_KEYS.c.created_at, age, where)

    # Tombstones: one past retention, one a day inside it, one new.
    gone, kept = deleted_task(alice, "gone"), deleted_task(alice, "kept")
    bobs = deleted_task(bob, "bob's")
    shift_back(app, TOMBSTONES.c.deleted_at, (RETENTION_DAYS + 1) * days, TOMBSTONES.c.id == gone)
    shift_back(app, TOMBSTONES.c.deleted_at, (RETENTION_DAYS - 1) * days, TOMBSTONES.c.id == kept)

    result = run_cli("db", "prune", env=cli_env(empty_url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = {"sessions": 2, "idempotency_keys": 1, "tombstones": 1}
    assert counts(result.stdout) == {**expected, "outbox": 0, "account_tokens": 0}

    sessions = rows(app, SESSIONS.c.id)
    assert sessions == {(alice_live,), (bob_live,), (ending["id"],)}
    keys = rows(app, IDEMPOTENCY_KEYS.c.owner_id, IDEMPOTENCY_KEYS.c.key)
    assert keys == {(alice_id, "recent"), (bob_id, "new")}
    assert rows(app, TOMBSTONES.c.id) == {(kept,), (bobs,)}

    # What is left still works; what went is refused.
    assert me(alice.client, alice.access_token).status_code == 200
    assert me(bob.client, ending["access_token"]).status_code == 200
    assert refresh(bob.client, bob.refresh_token).status_code == 200
    for gone_tokens in (logged_out, expired):
        assert_error(me(alice.client, gone_tokens["access_token"]), 401, "token_revoked")
    replay = alice.request("POST", TASKS, json={"title": "recent"},
                           headers={"Idempotency-Key": "recent"})  # fmt: skip
    assert replay.headers.get("Idempotent-Replayed") == "true"
