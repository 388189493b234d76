"""The taskapi command: settings errors, production refusal, db upgrade and prune."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select, update

from taskapi.db import make_engine, make_session_factory, utcnow, write
from taskapi.models import Session, TaskTombstone
from tests.conftest import TEST_SECRET, User, free_port, need_service
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
    env = {"TASKAPI_ENV": "production", "XDG_DATA_HOME": str(tmp_path / "xdg")}
    if secret:
        env["TASKAPI_SECRET_KEY"] = secret
    result = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "TASKAPI_SECRET_KEY" in result.stderr
    assert not (tmp_path / "xdg").exists()
    assert not (tmp_path / "instance").exists()


def test_development_secret_is_created_once_private(tmp_path: Path) -> None:
    """db upgrade on a fresh folder (the per-user default) creates the SQLite file and a 0600
    secret, kept on reruns; the second run says there was nothing to apply."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    runs = [run_cli("db", "upgrade", env=env, cwd=tmp_path) for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
    folder = tmp_path / "xdg" / "taskapi"
    database = f"sqlite:///{folder / 'taskapi.db'}"
    assert runs[0].stdout.startswith(f"{database}: applied 0001, ")
    assert runs[1].stdout.startswith(f"{database}: already at ")
    secret = folder / "secret_key"
    assert (secret.stat().st_mode & 0o777) == 0o600
    assert len(secret.read_text().strip()) >= 32
    assert (folder / "taskapi.db").exists()
    assert not (tmp_path / "instance").exists()


def test_plain_postgres_urls_use_psycopg() -> None:
    """postgres:// URLs from hosting platforms are accepted and use psycopg 3."""
    from taskapi.settings import Settings

    settings = Settings(database_url="postgres://u@db.internal/tasks", secret_key=TEST_SECRET)
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db.internal/tasks"


def test_example_environment_file_starts_as_is(tmp_path: Path) -> None:
    """config/taskapi.env.example, sourced unchanged, is a valid configuration."""
    example = Path(__file__).resolve().parents[1] / "config" / "taskapi.env.example"
    command = f"{sys.executable} -m taskapi.cli"
    script = f"set -a; . {example}; set +a; {command} db upgrade && {command} info --data-dir"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    clean["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    result = subprocess.run(
        ["bash", "-c", script], env=clean, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data_dir = Path(result.stdout.splitlines()[-1])
    assert data_dir.is_absolute()
    assert (data_dir / "taskapi.db").exists()


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


# --- one-line errors ----------------------------------------------------------------------------


def assert_one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit code 2, one line on stderr naming each of ``names``, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


MISSING_DATABASE_COMMANDS = [
    ("db", "upgrade"), ("db", "prune"), ("info",), ("users", "list"), ("users", "show", "a@b.c"),
    ("mail", "send-pending"), ("worker",), ("serve", "--port", "0"),
]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize("command", MISSING_DATABASE_COMMANDS, ids=" ".join)
def test_a_missing_postgres_database_is_one_line(command: tuple[str, ...], tmp_path: Path) -> None:
    """A database name that does not exist on the server: one line naming the setting, the
    database and ``createdb``, exit 2, for every command that opens the database."""
    server = make_url(need_service("TASKAPI_TEST_DATABASE_URL"))
    name = f"taskapi_missing_{uuid.uuid4().hex[:8]}"
    url = server.set(database=name, password="hunter2-not-shown")
    env = {
        "TASKAPI_DATABASE_URL": url.render_as_string(hide_password=False),
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_DATA_DIR": str(tmp_path / "data"),
    }
    args = [str(free_port()) if part == "0" else part for part in command]
    line = assert_one_line(run_cli(*args, env=env, cwd=tmp_path), "TASKAPI_DATABASE_URL", name)
    assert f"createdb {name}" in line
    assert "hunter2" not in line


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """serve on a port something else listens on: one line naming the port setting, exit 2,
    at once (not after gunicorn's five retries)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"TASKAPI_DATA_DIR": str(tmp_path / "data")}
        result = run_cli("serve", "--port", str(port), env=env, cwd=tmp_path)
    line = assert_one_line(result, "TASKAPI_PORT", f"127.0.0.1:{port}")
    assert "in use" in line


@pytest.mark.parametrize("command", [("db", "upgrade"), ("info",), ("serve", "--port", "0")])
def test_an_unwritable_data_folder_is_one_line(command: tuple[str, ...], tmp_path: Path) -> None:
    """A data folder that cannot be created (even as root: under /proc) names TASKAPI_DATA_DIR."""
    env = {"TASKAPI_DATA_DIR": "/proc/taskapi-cannot-exist/data"}
    args = [str(free_port()) if part == "0" else part for part in command]
    result = run_cli(*args, env=env, cwd=tmp_path)
    if command == ("info",):  # info creates nothing, so it reports the missing database file
        assert result.returncode == 0, result.stderr
        assert "does not exist yet" in result.stdout
    else:
        assert_one_line(result, "TASKAPI_DATA_DIR")


def test_an_unopenable_sqlite_file_is_one_line(tmp_path: Path) -> None:
    """A SQLite URL whose folder cannot exist names TASKAPI_DATABASE_URL."""
    env = {
        "TASKAPI_DATABASE_URL": "sqlite:////proc/taskapi-cannot-exist/taskapi.db",
        "TASKAPI_SECRET_KEY": TEST_SECRET,
    }
    assert_one_line(run_cli("db", "upgrade", env=env, cwd=tmp_path), "TASKAPI_DATABASE_URL")


def test_a_refused_required_redis_is_one_line(tmp_path: Path) -> None:
    """With TASKAPI_REDIS_REQUIRED=true, serve stops in one line when Redis refuses."""
    env = {
        "TASKAPI_DATA_DIR": str(tmp_path / "data"),
        "TASKAPI_REDIS_URL": f"redis://:pw-not-shown@127.0.0.1:{free_port()}/0",
        "TASKAPI_REDIS_REQUIRED": "true",
    }
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    line = assert_one_line(result, "TASKAPI_REDIS_URL", "TASKAPI_REDIS_REQUIRED")
    assert "pw-not-shown" not in line


def test_info_masks_secrets(tmp_path: Path) -> None:
    """taskapi info shows every setting, with the secret, passwords and URL passwords masked."""
    env = {
        "TASKAPI_DATA_DIR": str(tmp_path / "data"),
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_SMTP_PASSWORD": "smtp-pass-not-shown",
        "TASKAPI_REDIS_URL": "redis://:redis-pass-not-shown@127.0.0.1:6379/0",
    }
    result = run_cli("info", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for secret in (TEST_SECRET, "smtp-pass-not-shown", "redis-pass-not-shown"):
        assert secret not in result.stdout
    assert "TASKAPI_SECRET_KEY=***" in result.stdout
    assert "TASKAPI_SMTP_PASSWORD=***" in result.stdout
    assert f"data folder: {tmp_path / 'data'}" in result.stdout
    assert not (tmp_path / "data").exists()  # info creates nothing
