"""The taskapi command: settings errors, production refusal, db upgrade and prune."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from taskapi.db import make_engine, make_session_factory, utcnow, write
from taskapi.models import Session, TaskTombstone
from tests.conftest import TEST_SECRET, User
from tests.support import run_cli


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKAPI_BCRYPT_ROUNDS", "lots"),
        ("TASKAPI_REFRESH_GRACE_SECONDS", "9"),
        ("TASKAPI_CORS_ORIGINS", "*"),
        ("TASKAPI_ENV", "staging"),
        ("TASKAPI_REDIS_URL", "memcached://127.0.0.1"),
        ("TASKAPI_RATELIMIT_LOGIN", "lots"),
        ("TASKAPI_DATABASE_URL", "mysql://root@127.0.0.1/taskapi"),
        ("TASKAPI_COOKIE_SAMESITE", "sometimes"),
        ("TASKAPI_LOG_LEVEL", "verbose"),
    ],
)
def test_bad_setting_stops_with_one_line(variable: str, value: str, tmp_path: Path) -> None:
    """A bad value exits non-zero with one line naming the variable, before serving."""
    result = run_cli("serve", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert variable in lines[0]


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_production_refuses_a_weak_secret(secret: str | None, tmp_path: Path) -> None:
    """Production without a 32-byte secret does not start."""
    env = {"TASKAPI_ENV": "production"}
    if secret:
        env["TASKAPI_SECRET_KEY"] = secret
    result = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "TASKAPI_SECRET_KEY" in result.stderr
    assert not (tmp_path / "instance").exists()


def test_development_secret_is_created_once_private(tmp_path: Path) -> None:
    """db upgrade on a fresh folder creates the SQLite file and a 0600 secret, kept on reruns."""
    for _ in range(2):
        result = run_cli("db", "upgrade", env={}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    secret = tmp_path / "instance" / "secret_key"
    assert (secret.stat().st_mode & 0o777) == 0o600
    assert len(secret.read_text().strip()) >= 32
    assert (tmp_path / "instance" / "taskapi.db").exists()


def test_plain_postgres_urls_use_psycopg() -> None:
    """postgres:// URLs from hosting platforms are accepted and use psycopg 3."""
    from taskapi.settings import Settings

    settings = Settings(database_url="postgres://u@db.internal/tasks", secret_key=TEST_SECRET)
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db.internal/tasks"


def test_example_environment_file_starts_as_is(tmp_path: Path) -> None:
    """config/taskapi.env.example, sourced unchanged, is a valid configuration."""
    example = Path(__file__).resolve().parents[1] / "config" / "taskapi.env.example"
    script = f"set -a; . {example}; set +a; exec {sys.executable} -m taskapi.cli db upgrade"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    result = subprocess.run(
        ["bash", "-c", script], env=clean, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "instance" / "taskapi.db").exists()


def test_help_explains_the_commands(tmp_path: Path) -> None:
    """taskapi --help names serve and db."""
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "db" in result.stdout


def test_prune_removes_dead_sessions_and_old_tombstones(
    database_url: str, alice: User, bob: User, tmp_path: Path
) -> None:
    """Revoked and expired sessions and old tombstones go; live ones stay."""
    task = alice.create_task()
    task_id, alice_id, bob_id = (uuid.UUID(x) for x in (task["id"], alice.id, bob.id))
    assert alice.request("DELETE", f"/api/v1/tasks/{task['id']}").status_code == 204
    assert alice.request("POST", "/api/v1/auth/logout").status_code == 204
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory() as db, write(db):
        db.execute(
            update(TaskTombstone)
            .where(TaskTombstone.id == task_id)
            .values(deleted_at=utcnow() - timedelta(days=31))
        )
    env = {"TASKAPI_DATABASE_URL": database_url, "TASKAPI_SECRET_KEY": TEST_SECRET}
    result = run_cli("db", "prune", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with factory() as db:
        alice_sessions = db.scalar(select(func.count()).where(Session.user_id == alice_id))
        bob_sessions = db.scalar(select(func.count()).where(Session.user_id == bob_id))
        tombstone = db.get(TaskTombstone, task_id)
    engine.dispose()
    assert alice_sessions == 0
    assert bob_sessions == 1
    assert tombstone is None
    assert bob.request("GET", "/api/v1/auth/me").status_code == 200
