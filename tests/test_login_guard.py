"""The password-check budgets survive a Redis outage with one warning, not one per call."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from taskapi.errors import ApiError, InvalidCredentials
from taskapi.limits import Counters, PasswordGuard
from taskapi.settings import Settings
from tests.conftest import TEST_SECRET, free_port


def _fail_once(guard: PasswordGuard, email: str) -> None:
    """One wrong password through the guard."""
    with pytest.raises(InvalidCredentials), guard.attempt(email):
        raise InvalidCredentials()


def test_outage_warns_once_and_still_counts(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable, failures count in memory and the limit still applies."""
    settings = Settings(
        secret_key=TEST_SECRET,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        ratelimit_login_failures="2/minute",
    )
    guard = PasswordGuard(settings, Counters(settings.redis_url))
    request = Flask(__name__).test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"})
    with request, caplog.at_level(logging.WARNING, logger="taskapi.limits"):
        _fail_once(guard, "ana@example.com")
        _fail_once(guard, "ana@example.com")
        with pytest.raises(ApiError, match="Too many failed attempts") as refused:
            _fail_once(guard, "ana@example.com")
    assert refused.value.status == 429
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
