"""Fixtures: a migrated database per backend, the app and client, real logins, a live server.

Every test that takes ``app``/``client``/``make_app`` runs once on SQLite and once on
PostgreSQL. PostgreSQL and Redis tests are skipped when their URL is not set, and fail
instead when ``CI=true``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text

from taskapi import create_app, migrate
from taskapi.db import make_engine
from taskapi.settings import Settings
from tests.support import engine_of

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery staple"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_service(variable: str) -> str:
    """The URL in ``variable``; skip without it, or fail in CI where it must be set."""
    url = os.environ.get(variable)
    if not url:
        if IN_CI:
            pytest.fail(f"{variable} must be set in CI")
        pytest.skip(f"{variable} is not set")
    return url


# --- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file for this test session."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'taskapi.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped WITH (FORCE) afterwards."""
    server_url = make_url(need_service("TASKAPI_TEST_DATABASE_URL"))
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # the server is down or refuses us
        admin.dispose()
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL unavailable: {error}")
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session (SERVICES.md)."""
    with fresh_postgres_database("taskapi_t") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using the database runs on both backends."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    """Whether this run of the test is on PostgreSQL."""
    return database_url.startswith("postgresql")


# --- app and clients -------------------------------------------------------------------------


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for tests: fast bcrypt, a fixed secret, limits off unless a test turns them on."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_key": TEST_SECRET,
            "bcrypt_rounds": 4,
            "data_dir": tmp_path,
            "ratelimit_enabled": False,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Flask]]:
    """Build apps with setting overrides; their engines are disposed afterwards."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(make_settings(**overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        engine_of(app).dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with test defaults."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


# --- users -----------------------------------------------------------------------------------


@dataclass
class User:
    """A registered, logged-in user and their tokens."""

    client: FlaskClient
    email: str
    password: str
    id: str
    access_token: str
    refresh_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header with the access token."""
        return {"Authorization": f"Bearer {self.access_token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send an authenticated request through the test client."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def create_task(self, **fields: Any) -> dict[str, Any]:
        """Create a task and return its JSON."""
        response = self.request("POST", "/api/v1/tasks", json={"title": "a task", **fields})
        assert response.status_code == 201, response.json
        return response.json  # type: ignore[no-any-return]


def unique_email(prefix: str = "user") -> str:
    """A fresh email so tests never collide, even on a shared database."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    """POST /auth/login."""
    return client.post("/api/v1/auth/login", json={"email": email, "password": password, **extra})


@pytest.fixture
def make_user(client: FlaskClient) -> Callable[..., User]:
    """Register and log in a new user for real, through HTTP."""

    def build(name: str = "", password: str = PASSWORD, on: FlaskClient | None = None) -> User:
        http = on or client
        email = unique_email()
        body = {"email": email, "password": password, "name": name}
        registered = http.post("/api/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.json
        answer = login(http, email, password)
        assert answer.status_code == 200, answer.json
        tokens = answer.json
        return User(http, email, password, registered.json["id"], tokens["access_token"],
                    tokens["refresh_token"])  # fmt: skip

    return build


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    """A logged-in user."""
    return make_user("Alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    """A second user who must never see Alice's data."""
    return make_user("Bob")


# --- live servers ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveServer:
    """A real ``taskapi serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch_server(env: dict[str, str], workdir: Path, *args: str) -> LiveServer:
    """Start ``taskapi serve`` on a free port without waiting for it."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [sys.executable, "-m", "taskapi.cli", "serve", "--port", str(port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=workdir, stdout=log, stderr=log
        )
    return LiveServer(f"http://127.0.0.1:{port}", process, log_path)


def wait_healthy(server: LiveServer, timeout: float = 30) -> None:
    """Wait until /api/health answers 200; raise with the log if the server dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/api/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still booting
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


def start_server(env: dict[str, str], workdir: Path, *args: str) -> LiveServer:
    """Start ``taskapi serve`` on a free port and wait until /api/health answers."""
    server = launch_server(env, workdir, *args)
    wait_healthy(server)
    return server


def server_env(workdir: Path) -> dict[str, str]:
    """Settings every test server starts with: fast bcrypt, a fixed secret, one worker."""
    return {
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_BCRYPT_ROUNDS": "4",
        "TASKAPI_WORKERS": "1",
        "TASKAPI_THREADS": "4",
        "TASKAPI_DATA_DIR": str(workdir / "instance"),
    }


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start real servers with given environment; all are stopped at the end of the test."""
    servers: list[LiveServer] = []

    def build(env: dict[str, str] | None = None, *args: str) -> LiveServer:
        server = start_server({**server_env(tmp_path), **(env or {})}, tmp_path, *args)
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()
