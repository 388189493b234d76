"""End-to-end happy path through every task endpoint, on both databases."""

from __future__ import annotations

from tests.conftest import User


def test_task_lifecycle(alice: User, bob: User) -> None:
    """Create, read, list, patch, replace and delete a task; Bob never sees it."""
    created = alice.request(
        "POST", "/api/v1/tasks", json={"title": "  Buy milk  ", "tags": ["x", " x"]}
    )
    assert created.status_code == 201
    task = created.json
    assert task["title"] == "Buy milk" and task["tags"] == ["x"] and task["version"] == 1
    assert created.headers["Location"].endswith(f"/api/v1/tasks/{task['id']}")
    assert created.headers["ETag"] == '"1"'
    path = f"/api/v1/tasks/{task['id']}"

    assert alice.request("GET", path).json == task
    assert alice.request("GET", "/api/v1/tasks").json["items"] == [task]
    patched = alice.request("PATCH", path, json={"completed": True})
    assert patched.status_code == 200 and patched.json["version"] == 2
    assert patched.json["completed_at"] is not None
    replaced = alice.request("PUT", path, json={"title": "Buy oat milk"})
    assert replaced.json["completed"] is False and replaced.json["completed_at"] is None
    assert replaced.headers["ETag"] == '"3"'

    for method in ("GET", "PUT", "PATCH", "DELETE"):
        answer = bob.request(method, path, json={"title": "mine now"})
        assert answer.status_code == 404, method
    assert bob.request("GET", "/api/v1/tasks").json["items"] == []

    assert alice.request("DELETE", path).status_code == 204
    assert alice.request("GET", path).status_code == 404
