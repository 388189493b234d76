"""Hardening: CORS only for allowlisted origins, trusted hosts, per-user bounds, batched
clearing, and the house rules (units of work, domain errors, declared responses)."""

from __future__ import annotations

import ast
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import create_engine, event, select, text, update

from taskapi.api.operation import operation
from taskapi.db import WriteOutsideUnitOfWork, write
from taskapi.models import Task, TaskList
from taskapi.models import User as UserRow
from taskapi.schemas.auth import UserPublic
from taskapi.services.positions import spread
from taskapi.settings import Settings
from tests.conftest import PASSWORD, User, login, unique_email
from tests.support import cors_headers, engine_of

AUTH = "/api/v1/auth"
TASKS = "/api/v1/tasks"
ORIGIN = "https://app.example.com"
PACKAGE = Path(__file__).resolve().parent.parent / "taskapi"


# --- item 11: CORS and Host -----------------------------------------------------------------


def test_no_cors_headers_without_an_origin(make_app: Callable[..., Flask]) -> None:
    """A request without Origin (curl, a server) gets no Access-Control-* header at all."""
    client = make_app(cors_origins=ORIGIN).test_client()
    assert cors_headers(client.get("/api/health")) == {}
    preflight = client.options(TASKS, headers={"Access-Control-Request-Method": "POST"})
    assert cors_headers(preflight) == {}
    allowed = client.get("/api/health", headers={"Origin": ORIGIN})
    assert cors_headers(allowed)["Access-Control-Allow-Origin"] == ORIGIN


def test_a_host_outside_the_allowlist_is_refused(make_app: Callable[..., Flask]) -> None:
    """With TASKAPI_ALLOWED_HOSTS set, another Host is 400 before anything echoes it."""
    client = make_app(allowed_hosts="api.example.com").test_client()
    refused = client.get("/api/health", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and refused.json["code"] == "validation_error"
    assert refused.json["details"] == [
        {"field": "Host", "message": "is not a host this API serves"}
    ]
    assert client.get("/api/health", headers={"Host": "api.example.com"}).status_code == 200


def test_link_urls_use_only_an_allowed_host(make_app: Callable[..., Flask]) -> None:
    """The Link header is built from the checked Host."""
    client = make_app(allowed_hosts="api.example.com").test_client()
    email = unique_email()
    host = {"Host": "api.example.com"}
    client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD}, headers=host)
    token = client.post(
        f"{AUTH}/login", json={"email": email, "password": PASSWORD}, headers=host
    ).json["access_token"]
    headers = {**host, "Authorization": f"Bearer {token}"}
    for title in ("a", "b"):
        client.post(TASKS, json={"title": title}, headers=headers)
    page = client.get(f"{TASKS}?limit=1", headers=headers)
    assert page.headers["Link"].startswith("<http://api.example.com/api/v1/tasks?")
    evil = client.get(f"{TASKS}?limit=1", headers={**headers, "Host": "evil.example"})
    assert evil.status_code == 400 and "Link" not in evil.headers


def test_production_requires_allowed_hosts(tmp_path: Path) -> None:
    """env=production without TASKAPI_ALLOWED_HOSTS does not start."""
    with pytest.raises(ValidationError, match="ALLOWED_HOSTS"):
        Settings(env="production", secret_key="x" * 40, data_dir=tmp_path)


# --- item 12: bounds ------------------------------------------------------------------------


def test_tasks_per_user_are_bounded(make_app: Callable[..., Flask]) -> None:
    """Past TASKAPI_MAX_TASKS_PER_USER a create is 409 quota_exceeded; deleting frees room."""
    client = make_app(max_tasks_per_user=3).test_client()
    user = _user(client)
    ids = [user.create_task(title=f"t{i}")["id"] for i in range(3)]
    refused = user.request("POST", TASKS, json={"title": "one too many"})
    assert refused.status_code == 409 and refused.json["code"] == "quota_exceeded"
    assert user.request("DELETE", f"{TASKS}/{ids[0]}").status_code == 204
    done = user.request("PATCH", f"{TASKS}/{ids[1]}", json={"completed": True})
    assert done.status_code == 200
    assert user.request("DELETE", f"{TASKS}?completed=true").json == {"deleted": 1}
    for title in ("again 1", "again 2"):
        user.create_task(title=title)
    assert user.request("POST", TASKS, json={"title": "full"}).status_code == 409


def test_sessions_per_user_are_bounded(make_app: Callable[..., Flask]) -> None:
    """Past TASKAPI_MAX_SESSIONS_PER_USER live sessions, a login revokes the oldest."""
    client = make_app(max_sessions_per_user=2).test_client()
    email = unique_email()
    client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD})
    tokens = [login(client, email).json["access_token"] for _ in range(3)]
    oldest = client.get(f"{AUTH}/me", headers={"Authorization": f"Bearer {tokens[0]}"})
    assert oldest.status_code == 401 and oldest.json["code"] == "token_revoked"
    newest = {"Authorization": f"Bearer {tokens[2]}"}
    assert len(client.get(f"{AUTH}/sessions", headers=newest).json["items"]) == 2


def test_sessions_are_keyset_paginated(client: FlaskClient) -> None:
    """limit and cursor page through the sessions, newest first, none twice, none skipped."""
    email = unique_email()
    client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD})
    tokens = [login(client, email).json["access_token"] for _ in range(5)]
    headers = {"Authorization": f"Bearer {tokens[-1]}"}
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = client.get(f"{AUTH}/sessions{query}", headers=headers).json
        seen += [item["id"] for item in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1] and len(set(seen)) == 5
    first = client.get(f"{AUTH}/sessions?limit=1", headers=headers).json["items"][0]
    assert first["current"] is True
    forged = client.get(f"{AUTH}/sessions?cursor=forged", headers=headers)
    assert forged.status_code == 400 and forged.json["details"][0]["field"] == "cursor"


def test_clearing_completed_tasks_commits_in_batches(app: Flask, alice: User) -> None:
    """1,200 completed tasks are cleared in several short transactions, all of them gone."""
    engine = engine_of(app)
    with engine.begin() as connection:
        owner = uuid.UUID(alice.id)
        inbox = connection.execute(
            select(TaskList.id).where(TaskList.owner_id == owner, TaskList.inbox.is_(True))
        ).scalar_one()
        rows = [
            {"id": uuid.uuid4(), "owner_id": owner, "title": f"t{i}", "notes": "",
             "completed": True, "priority": 0, "tags": [], "version": 1, "change_seq": 0,
             "list_id": inbox, "position": key}
            for i, key in enumerate(spread(1200))
        ]  # fmt: skip
        connection.execute(_task_insert(), rows)
        connection.execute(
            update(UserRow).where(UserRow.id == owner).values(task_count=UserRow.task_count + 1200)
        )
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", count)
    try:
        answer = alice.request("DELETE", f"{TASKS}?completed=true")
    finally:
        event.remove(engine, "commit", count)
    assert answer.json == {"deleted": 1200}
    assert len(commits) >= 3
    assert alice.request("GET", TASKS).json["items"] == []


def _task_insert() -> Any:
    """An INSERT of task rows; the model's defaults fill in the timestamps."""
    return Task.__table__.insert()


def test_search_has_trigram_indexes_on_postgresql(app: Flask, is_postgres: bool) -> None:
    """On PostgreSQL, q (ILIKE '%word%') can use pg_trgm GIN indexes on title and notes."""
    if not is_postgres:
        pytest.skip("trigram indexes are PostgreSQL's")
    engine = engine_of(app)
    query = text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
    with engine.connect() as connection:
        definitions = {name: definition for name, definition in connection.execute(query)}
    assert "USING gin (title gin_trgm_ops)" in definitions["ix_tasks_title_trgm"]
    assert "USING gin (notes gin_trgm_ops)" in definitions["ix_tasks_notes_trgm"]


# --- the house ------------------------------------------------------------------------------


def test_a_write_outside_a_unit_of_work_is_refused(app: Flask, alice: User) -> None:
    """Flushing a change, or running an UPDATE, outside ``write()`` raises at once."""
    factory = app.extensions["taskapi"].session_factory
    with factory() as db:
        user = db.scalar(select(UserRow).where(UserRow.id == uuid.UUID(alice.id)))
        assert user is not None
        user.name = "changed behind everyone's back"
        with pytest.raises(WriteOutsideUnitOfWork):
            db.flush()
        db.rollback()
        with pytest.raises(WriteOutsideUnitOfWork):
            db.execute(update(UserRow).where(UserRow.id == user.id).values(name="x"))


def test_a_nested_unit_of_work_commits_with_its_outer_one(app: Flask, alice: User) -> None:
    """An inner ``write()`` joins the outer transaction: the outer failure undoes both."""
    factory = app.extensions["taskapi"].session_factory
    owner = uuid.UUID(alice.id)
    with factory() as db:
        try:
            with write(db):
                with write(db):
                    db.execute(update(UserRow).where(UserRow.id == owner).values(name="inner"))
                raise RuntimeError("outer fails")
        except RuntimeError:
            pass
        assert db.scalar(select(UserRow.name).where(UserRow.id == owner)) == "Alice"


def _speaks_http(module: str) -> bool:
    """Whether an imported name belongs to the HTTP layer."""
    http_names = (".ApiError", ".not_found", ".validation_error")
    return module.split(".")[0] in ("flask", "werkzeug") or module.endswith(http_names)


def test_services_speak_the_domain_not_http() -> None:
    """No service imports Flask, Werkzeug or the HTTP error type."""
    offenders = []
    for path in sorted((PACKAGE / "services").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad = [n for n in names if _speaks_http(n)]
            offenders += [f"{path.name}: {n}" for n in bad]
    assert offenders == []


def test_the_declared_model_is_what_is_sent(make_app: Callable[..., Flask]) -> None:
    """A view whose data lacks a declared field fails loudly (500), never sends a drifted body."""
    app = make_app()

    @operation("drifted", tags=("test",), auth=None, ok=(200, UserPublic), uses_database=False)
    def drifted() -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "mail": "renamed@example.com", "name": "", "created_at":
                "2026-01-01T00:00:00Z"}  # fmt: skip

    app.add_url_rule("/api/v1/test-drifted", "drifted", drifted)
    answer = app.test_client().get("/api/v1/test-drifted")
    assert answer.status_code == 500 and answer.json["code"] == "internal_error"


def _user(client: FlaskClient) -> User:
    """Register and log in a fresh user on ``client``."""
    email = unique_email()
    registered = client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD})
    tokens = login(client, email).json
    return User(client, email, PASSWORD, registered.json["id"], tokens["access_token"],
                tokens["refresh_token"])  # fmt: skip


def test_a_dead_pooled_connection_costs_no_request(
    make_app: Callable[..., Flask], is_postgres: bool
) -> None:
    """Without a pre-ping per checkout, a connection killed under the pool (a database
    restart) is found by the request's first statement, and the request runs again."""
    if not is_postgres:
        pytest.skip("terminating server backends is PostgreSQL's")
    app = make_app()
    user = _user(app.test_client())
    assert user.request("GET", f"{AUTH}/me").status_code == 200
    admin = create_engine(engine_of(app).url.render_as_string(hide_password=False))
    kill = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    try:
        with admin.connect() as connection:
            assert connection.scalar(kill) >= 1
        assert user.request("GET", f"{AUTH}/me").status_code == 200
        with admin.connect() as connection:
            assert connection.scalar(kill) >= 1
        created = user.request("POST", TASKS, json={"title": "after a restart"})
        assert created.status_code == 201
        # The folded reads run through the driver's own cursor (db.driver_rows).
        for path in (f"{TASKS}/{created.json['id']}", f"{TASKS}?limit=5"):
            with admin.connect() as connection:
                assert connection.scalar(kill) >= 1
            assert user.request("GET", path).status_code == 200
    finally:
        admin.dispose()


# --- found by the hostile probe -------------------------------------------------------------


def test_a_revoked_token_does_not_spend_its_owners_budget(make_app: Callable[..., Flask]) -> None:
    """Requests with a logged-out session's token count per address, not against the user."""
    app = make_app(ratelimit_enabled=True, ratelimit_default="3/minute")
    client = app.test_client()
    stolen = _user(client)
    assert stolen.request("POST", f"{AUTH}/logout").status_code == 204
    fresh = login(client, stolen.email).json["access_token"]
    attacker = {"environ_base": {"REMOTE_ADDR": "10.40.0.1"}}
    statuses = [
        client.get(f"{AUTH}/me", headers=stolen.headers, **attacker).status_code for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    owner = client.get(
        f"{AUTH}/me",
        headers={"Authorization": f"Bearer {fresh}"},
        environ_base={"REMOTE_ADDR": "10.40.0.2"},
    )
    assert owner.status_code == 200


def test_refresh_token_in_a_json_body(client: FlaskClient, alice: User) -> None:
    """Body mode may send {"refresh_token": ...} instead of the Authorization header."""
    answer = client.post(f"{AUTH}/refresh", json={"refresh_token": alice.refresh_token})
    assert answer.status_code == 200 and answer.json["refresh_token"] != alice.refresh_token
    reused = client.post(f"{AUTH}/refresh", json={"refresh_token": "not a token"})
    assert reused.status_code == 401 and reused.json["code"] == "unauthorized"
    empty = client.post(f"{AUTH}/refresh", json={})
    assert empty.status_code == 401 and empty.headers["WWW-Authenticate"] == "Bearer"


def test_a_cursor_works_only_for_its_user(alice: User, bob: User) -> None:
    """Another user's cursor is refused, so it cannot be used to compare titles."""
    for title in ("a secret", "b secret"):
        alice.create_task(title=title)
    cursor = alice.request("GET", f"{TASKS}?limit=1&sort=title").json["next_cursor"]
    replayed = bob.request("GET", f"{TASKS}?limit=1&sort=title&cursor={cursor}")
    assert replayed.status_code == 400 and replayed.json["details"][0]["field"] == "cursor"


def test_a_failed_login_carries_no_token_challenge(client: FlaskClient, alice: User) -> None:
    """A wrong password at login is 401 invalid_credentials without WWW-Authenticate."""
    failed = login(client, alice.email, "wrong password guess")
    assert failed.status_code == 401 and failed.json["code"] == "invalid_credentials"
    assert "WWW-Authenticate" not in failed.headers


def test_host_names_compare_case_insensitively(make_app: Callable[..., Flask]) -> None:
    """Host names are case-insensitive."""
    client = make_app(allowed_hosts="api.example.com").test_client()
    assert client.get("/api/health", headers={"Host": "API.Example.COM"}).status_code == 200


@pytest.mark.parametrize("limit", ["+5", " 5", "05x", "1_0", "\u0665"])
def test_query_numbers_are_plain_digits(alice: User, limit: str) -> None:
    """limit accepts ASCII digits only."""
    answer = alice.request("GET", TASKS, query_string={"limit": limit})
    assert answer.status_code == 400 and answer.json["details"][0]["field"] == "limit"


def test_a_timestamp_with_a_trailing_newline_is_refused(alice: User) -> None:
    """RFC 3339 strings end where they end."""
    answer = alice.request("POST", TASKS, json={"title": "t", "due_at": "2026-06-30T23:59:59Z\n"})
    assert answer.status_code == 400 and answer.json["details"][0]["field"] == "due_at"


@pytest.mark.parametrize(
    ("form", "status"), [("%s", 200), ("{%s}", 404), ("urn:uuid:%s", 404), ("%s ", 404)]
)
def test_only_canonical_uuids_name_a_task(alice: User, form: str, status: int) -> None:
    """A task is found by its canonical id only; other spellings are simply not found."""
    task_id = alice.create_task()["id"]
    assert alice.request("GET", f"{TASKS}/{form % task_id}").status_code == status


def _hold_connections(app: Flask, count: int) -> list[Any]:
    """Check out ``count`` of the app's pooled connections (the caller closes them)."""
    return [engine_of(app).connect() for _ in range(count)]


def _pool_capacity(app: Flask) -> int:
    """How many connections the app's pool hands out at most."""
    pool: Any = engine_of(app).pool
    return int(pool.size() + pool._max_overflow)


def test_bcrypt_holds_no_pooled_connection(
    make_app: Callable[..., Flask], is_postgres: bool
) -> None:
    """While a login hashes, its connection is back in the pool: with every other connection
    busy, a read still gets one at once instead of queueing behind bcrypt."""
    if not is_postgres:
        pytest.skip("SQLite has no connection pool limit")
    app = make_app(bcrypt_rounds=14)
    client = app.test_client()
    reader = _user(client)
    held = _hold_connections(app, _pool_capacity(app) - 1)
    try:
        thread = threading.Thread(target=lambda: login(app.test_client(), reader.email))
        thread.start()
        time.sleep(0.3)  # the login has read its user and is hashing now
        assert thread.is_alive()
        assert reader.request("GET", f"{AUTH}/me").status_code == 200
        assert thread.is_alive(), "the read waited for the login's bcrypt"
        thread.join()
    finally:
        for connection in held:
            connection.close()


def test_an_exhausted_pool_is_503(make_app: Callable[..., Flask], is_postgres: bool) -> None:
    """Every pooled connection busy past the pool timeout: 503 unavailable, not a 500."""
    if not is_postgres:
        pytest.skip("SQLite has no connection pool limit")
    app = make_app()
    user = _user(app.test_client())
    held = _hold_connections(app, _pool_capacity(app))
    try:
        answer = user.request("GET", f"{AUTH}/me")
    finally:
        for connection in held:
            connection.close()
    assert answer.status_code == 503 and answer.json["code"] == "unavailable"


def test_a_token_seen_before_still_expires(make_app: Callable[..., Flask]) -> None:
    """The remembered signature check of a token never outlives the token's exp."""
    app = make_app(access_token_seconds=1)
    user = _user(app.test_client())
    assert user.request("GET", f"{AUTH}/me").status_code == 200
    time.sleep(1.1)
    expired = user.request("GET", f"{AUTH}/me")
    assert expired.status_code == 401 and expired.json["code"] == "token_expired"
