"""Real server processes: concurrent first start on an empty database, JSON logs, SIGTERM."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from taskapi import migrate
from taskapi.db import Base
from tests.conftest import PASSWORD, LiveServer, free_port, fresh_postgres_database, unique_email
from tests.servers import base_env, start_together, stop_all
from tests.support import run_cli

AUTH = "/api/v1/auth"
CLOSE = {"Connection": "close"}  # no idle keep-alive connection delays a server's shutdown


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (no tables at all), dropped afterwards."""
    with fresh_postgres_database("taskapi_e") as url:
        yield url


@pytest.mark.slow
def test_two_instances_migrate_an_empty_database_once(empty_database: str, tmp_path: Path) -> None:
    """Two instances started at once both come up; the schema is applied exactly once."""
    env = base_env(tmp_path, TASKAPI_DATABASE_URL=empty_database)
    servers = start_together([env, env], tmp_path)
    try:
        for server in servers:
            ready = requests.get(f"{server.url}/api/ready", headers=CLOSE, timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["database"] == "ok"
        body = {"email": unique_email(), "password": PASSWORD}
        made = requests.post(
            f"{servers[0].url}{AUTH}/register", json=body, headers=CLOSE, timeout=10
        )
        assert made.status_code == 201, made.text
        answer = requests.post(
            f"{servers[1].url}{AUTH}/login", json=body, headers=CLOSE, timeout=10
        )
        assert answer.status_code == 200, answer.text
    finally:
        stop_all(servers)
    for server in servers:
        assert "Traceback" not in server.log(), server.log()

    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    engine = create_engine(empty_database)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert [row[0] for row in versions] == [head]
    assert tables == {*Base.metadata.tables, "alembic_version"}


# --- JSON logs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_logged_session(
    sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run a JSON-logging server through register, logins, a task and a refresh; then stop it."""
    workdir = tmp_path_factory.mktemp("jsonlog")
    env = base_env(workdir, TASKAPI_DATABASE_URL=sqlite_url, TASKAPI_LOG_FORMAT="json")
    [server] = start_together([env], workdir)
    tag = secrets.token_hex(4)
    ids = {
        step: f"logtest-{step}-{tag}" for step in ("register", "bad", "login", "task", "refresh")
    }
    password = f"pass-{secrets.token_hex(8)}-phrase"
    wrong = f"wrong-{secrets.token_hex(8)}-phrase"
    email = unique_email()
    secrets_seen: list[str] = [password, wrong]
    user_id = ""

    def send(step: str, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {**CLOSE, "X-Request-ID": ids[step]}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        answer = requests.request(method, server.url + path, headers=headers, timeout=10, **kw)
        assert answer.headers["X-Request-ID"] == ids[step]
        return answer

    try:
        made = send(
            "register", "POST", f"{AUTH}/register", json={"email": email, "password": password}
        )
        assert made.status_code == 201, made.text
        user_id = made.json()["id"]
        bad = send("bad", "POST", f"{AUTH}/login", json={"email": email, "password": wrong})
        assert bad.status_code == 401
        tokens = send("login", "POST", f"{AUTH}/login", json={"email": email, "password": password})
        assert tokens.status_code == 200, tokens.text
        access, refresh = tokens.json()["access_token"], tokens.json()["refresh_token"]
        task = send("task", "POST", "/api/v1/tasks", access, json={"title": "logged"})
        assert task.status_code == 201, task.text
        renewed = send("refresh", "POST", f"{AUTH}/refresh", refresh)
        assert renewed.status_code == 200, renewed.text
        secrets_seen += [access, refresh, renewed.json()["access_token"]]
        secrets_seen.append(renewed.json()["refresh_token"])
    finally:
        server.stop()
    return {"log": server.log(), "ids": ids, "secrets": secrets_seen, "user_id": user_id}


@pytest.mark.slow
def test_json_access_log_lines(json_logged_session: dict[str, Any]) -> None:
    """JSON lines parse; each request has one access line with its id, method, path, status."""
    lines = json_logged_session["log"].splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(isinstance(entry, dict) for entry in entries)
    access_lines = [e for e in entries if e.get("logger") == "taskapi.access"]
    access = {e.get("request_id"): e for e in access_lines}
    for request_id in json_logged_session["ids"].values():
        assert [e["request_id"] for e in access_lines].count(request_id) == 1, request_id
    expected = {
        "register": ("POST", f"{AUTH}/register", 201),
        "bad": ("POST", f"{AUTH}/login", 401),
        "login": ("POST", f"{AUTH}/login", 200),
        "task": ("POST", "/api/v1/tasks", 201),
        "refresh": ("POST", f"{AUTH}/refresh", 200),
    }
    for step, (method, path, status) in expected.items():
        entry = access.get(json_logged_session["ids"][step])
        assert entry is not None, f"no access line for {step}"
        assert (entry["method"], entry["path"], entry["status"]) == (method, path, status)
        assert isinstance(entry["duration_ms"], int | float) and entry["duration_ms"] >= 0
        assert "user_id" in entry
    user_id = json_logged_session["user_id"]
    for step in ("task", "refresh"):
        assert access[json_logged_session["ids"][step]]["user_id"] == user_id
    assert access[json_logged_session["ids"]["register"]]["user_id"] is None


@pytest.mark.slow
def test_logs_hold_no_secrets(json_logged_session: dict[str, Any]) -> None:
    """No password, access token, refresh token or Authorization header reaches the log."""
    log = json_logged_session["log"]
    for secret in json_logged_session["secrets"]:
        assert secret not in log
        assert secret.split(".")[-1] not in log  # not even a token's signature
    assert "Bearer" not in log and "authorization" not in log.lower()


@pytest.mark.slow
def test_json_log_has_only_json_lines(json_logged_session: dict[str, Any]) -> None:
    """With TASKAPI_LOG_FORMAT=json every line the server writes is one JSON object."""
    not_json = []
    for line in json_logged_session["log"].splitlines():
        try:
            if not isinstance(json.loads(line), dict):
                not_json.append(line)
        except ValueError:
            not_json.append(line)
    assert not_json == [], not_json


# --- graceful shutdown --------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_lets_an_in_flight_request_finish(
    live_server_factory: Callable[..., LiveServer], sqlite_url: str
) -> None:
    """A slow request (bcrypt cost 15) in flight when SIGTERM arrives still gets its answer."""
    server = live_server_factory(
        {"TASKAPI_DATABASE_URL": sqlite_url, "TASKAPI_BCRYPT_ROUNDS": "15"}
    )
    outcome: dict[str, Any] = {}

    def register() -> None:
        body = {"email": unique_email(), "password": PASSWORD}
        started = time.monotonic()
        try:
            answer = requests.post(
                f"{server.url}{AUTH}/register", json=body, headers=CLOSE, timeout=30
            )
            outcome["status"] = answer.status_code
        except requests.RequestException as error:
            outcome["error"] = error
        outcome["started"], outcome["ended"] = started, time.monotonic()

    worker = threading.Thread(target=register)
    worker.start()
    # Hashing at cost 15 takes seconds; a second in, the request is surely being served
    # (and the assertion on "ended" below fails rather than passes if it was not).
    time.sleep(1.0)
    terminated = time.monotonic()
    server.process.terminate()
    worker.join(30)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["status"] == 201
    assert outcome["ended"] > terminated, "the request ended before SIGTERM: not in flight"
    assert server.process.wait(30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/api/health", headers=CLOSE, timeout=2)


# --- several instances on one host ----------------------------------------------------------


@pytest.mark.slow
def test_two_named_instances_on_one_host_and_one_stops(sqlite_url: str, tmp_path: Path) -> None:
    """Two instances (one data folder, one database, one HOME) run side by side with their own
    names and runtime folders and no shared control socket; SIGTERM to one ends it cleanly
    while every request to the other succeeds, before, during and after."""
    home = tmp_path / "home"
    home.mkdir()
    common = {
        "TASKAPI_DATABASE_URL": sqlite_url, "HOME": str(home),
        "TASKAPI_RATELIMIT_ENABLED": "false",  # the reader asks as fast as it can
    }  # fmt: skip
    envs = [base_env(tmp_path, **common, TASKAPI_INSTANCE_NAME=name) for name in ("blue", "green")]
    blue, green = start_together(envs, tmp_path)
    outcomes: list[int | str] = []
    done = threading.Event()
    try:
        body = {"email": unique_email(), "password": PASSWORD}
        made = requests.post(f"{blue.url}{AUTH}/register", json=body, headers=CLOSE, timeout=10)
        assert made.status_code == 201, made.text
        login = requests.post(f"{green.url}{AUTH}/login", json=body, headers=CLOSE, timeout=10)
        assert login.status_code == 200, login.text
        bearer = {**CLOSE, "Authorization": f"Bearer {login.json()['access_token']}"}

        def keep_asking() -> None:
            """Read green's task list until told to stop, noting each status or error."""
            with requests.Session() as session:
                while not done.is_set():
                    try:
                        answer = session.get(
                            f"{green.url}/api/v1/tasks", headers=bearer, timeout=10
                        )
                        outcomes.append(answer.status_code)
                    except requests.RequestException as error:
                        outcomes.append(repr(error))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        time.sleep(0.5)
        for server, name in ((blue, "blue"), (green, "green")):
            comm = Path(f"/proc/{server.process.pid}/comm").read_text().strip()
            assert comm == f"taskapi-{name}"
            assert (tmp_path / "instance" / "run" / name / "lock").is_file()
        before = len(outcomes)
        blue.process.terminate()
        assert blue.process.wait(30) == 0
        during = len(outcomes)
        time.sleep(1.0)
        done.set()
        asker.join(30)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{blue.url}/api/health", headers=CLOSE, timeout=2)
        assert requests.get(f"{green.url}/api/health", headers=CLOSE, timeout=5).status_code == 200
    finally:
        done.set()
        stop_all([blue, green])
    assert before > 0 and during > before and len(outcomes) > during, outcomes
    assert set(outcomes) == {200}, [o for o in outcomes if o != 200][:5]
    for server, name in ((blue, "blue"), (green, "green")):
        log = server.log()
        assert "Traceback" not in log, log
        assert f"taskapi instance {name} serving {server.url}" in log
        assert f"data folder {tmp_path / 'instance'}" in log
    assert list(home.iterdir()) == []  # no control socket or anything else under HOME


@pytest.mark.slow
def test_a_second_instance_of_the_same_name_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    """The runtime folder is locked: the same name on the same data folder stops in one line."""
    env = base_env(tmp_path, TASKAPI_DATABASE_URL=sqlite_url, TASKAPI_INSTANCE_NAME="solo")
    [first] = start_together([env], tmp_path)
    try:
        second = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    finally:
        stop_all([first])
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "TASKAPI_INSTANCE_NAME" in lines[0], second.stderr
    assert "Traceback" not in second.stderr


def test_an_unnamed_instance_is_named_after_its_port(sqlite_url: str, tmp_path: Path) -> None:
    """Without --instance-name the name is port<PORT>, so unnamed instances never collide."""
    from taskapi.server import instance_runtime_dir, process_name
    from taskapi.settings import Settings

    settings = Settings(data_dir=tmp_path, instance_name="port8001")
    assert instance_runtime_dir(settings) == tmp_path / "run" / "port8001"
    assert process_name(settings) == "taskapi-port8001"
