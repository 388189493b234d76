"""Security headers suitable for a JSON API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.conftest import TEST_SECRET, User


@pytest.mark.parametrize("path", ["/api/health", "/api/v1/tasks", "/api/v1/nope"])
def test_every_response_has_nosniff_and_referrer_policy(app: Flask, path: str) -> None:
    """Success and error responses alike."""
    answer = app.test_client().get(path)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in answer.headers


def test_auth_responses_are_not_cached(alice: User) -> None:
    """Token-bearing answers carry Cache-Control: no-store."""
    answer = alice.client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {alice.refresh_token}"}
    )
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("env", "hsts", "expected"), [
    ("production", True, True), ("production", False, False), ("development", True, False),
])  # fmt: skip
def test_hsts_only_in_production_when_enabled(
    make_app: Callable[..., Flask], env: str, hsts: bool, expected: bool
) -> None:
    """TASKAPI_HSTS=true adds Strict-Transport-Security in production."""
    app = make_app(
        env=env, hsts=hsts, secret_key=TEST_SECRET, allowed_hosts="localhost",
        allow_sqlite_in_production=True,  # this test runs on SQLite too
    )  # fmt: skip
    answer = app.test_client().get("/api/health")
    assert ("Strict-Transport-Security" in answer.headers) is expected
