"""Concurrent writers: no deadlock answers (503) and no 500s, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from tests.conftest import PASSWORD, User, login

COOKIE = "taskapi_refresh"


def delete_account_while_writing(app: Flask, user: User) -> tuple[Any, list[int]]:
    """Four threads PATCH the user's tasks while the account is deleted."""
    tasks = [user.create_task(title=f"t{i}") for i in range(4)]
    stop, statuses = threading.Event(), []
    barrier = threading.Barrier(len(tasks) + 1)

    def write(task: dict[str, Any]) -> None:
        http = app.test_client()
        barrier.wait()
        while not stop.is_set():
            answer = http.patch(f"/api/v1/tasks/{task['id']}", json={"notes": "x"},
                                headers=user.headers)  # fmt: skip
            statuses.append(answer.status_code)
            if answer.status_code != 200:
                return

    writers = [threading.Thread(target=write, args=(task,)) for task in tasks]
    for writer in writers:
        writer.start()
    barrier.wait()
    deleted = app.test_client().delete(
        "/api/v1/auth/me", json={"password": PASSWORD}, headers=user.headers
    )
    stop.set()
    for writer in writers:
        writer.join(30)
    return deleted, statuses


def test_account_deletion_while_tasks_are_written(
    app: Flask, make_user: Callable[..., User]
) -> None:
    """Deleting an account races task writes: one lock order, so no deadlock and no 5xx."""
    for _trial in range(4):
        deleted, statuses = delete_account_while_writing(app, make_user())
        assert deleted.status_code == 204, deleted.json
        assert set(statuses) <= {200, 401, 404}, statuses


def test_non_ascii_csrf_header_is_403_not_500(client: Any, alice: User) -> None:
    """With the refresh cookie, a CSRF header that cannot match is refused with 403."""
    body = login(client, alice.email, refresh_cookie=True).json
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    for path, headers in (("/api/v1/auth/refresh", {}), ("/api/v1/auth/logout", bearer)):
        answer = client.post(path, headers={**headers, "X-CSRF-TOKEN": "\xe9t\xe9"})
        assert answer.status_code == 403, (path, answer.json)
        assert answer.json["code"] == "csrf_failed"


def test_extra_spaces_after_bearer_still_count_per_user(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """``Bearer  <token>`` is authenticated and counted against the user, not the address."""
    app = make_app(ratelimit_enabled=True, ratelimit_default="100/minute")
    http = app.test_client()
    user = make_user(on=http)
    spaced = {"Authorization": f"Bearer   {user.access_token}"}
    remaining = [http.get("/api/v1/tasks", headers=spaced).headers["RateLimit-Remaining"]
                 for _ in range(2)]  # fmt: skip
    anonymous = http.get("/api/v1/tasks").headers["RateLimit-Remaining"]
    assert remaining == ["99", "98"]
    assert anonymous == "97"  # the address's own budget: register, login, and this request
