"""The one error shape, error precedence, request ids, health probes, outages, CORS, settings."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from taskapi import create_app
from taskapi.settings import Settings, SettingsError, load_settings
from tests.conftest import TEST_SECRET, User
from tests.support import assert_error, cors_headers, engine_of

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/none"
ORIGIN = "https://app.example.com"
EXPOSED = ["ETag", "Location", "Link", "Retry-After", "X-Request-ID",
           "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]  # fmt: skip
BIG = b"x" * (1024 * 1024 + 1)
TASKS = "/api/v1/tasks"
SOME_TASK = f"{TASKS}/{uuid.uuid4()}"

# (method, path, request kwargs, send a token?, status, code); the order of the contract's
# precedence is route 404/405, 413, 429, 401/403, 415, 400, resource 404.
ERROR_CASES = [
    ("GET", "/nope", {}, False, 404, "not_found"),
    ("GET", "/api/v1/nope", {}, True, 404, "not_found"),
    ("GET", "/static/app.js", {}, False, 404, "not_found"),
    ("DELETE", "/api/health", {}, False, 405, "method_not_allowed"),
    ("PUT", "/api/v1/auth/me", {"json": {}}, True, 405, "method_not_allowed"),
    ("POST", "/api/nope", {"data": BIG, "content_type": "application/json"}, False, 404,
     "not_found"),
    ("PUT", "/api/health", {"data": BIG, "content_type": "application/json"}, False, 405,
     "method_not_allowed"),
    ("POST", TASKS, {"data": BIG, "content_type": "application/json"}, False, 413,
     "payload_too_large"),
    ("POST", TASKS, {"data": BIG, "content_type": "text/plain"}, True, 413, "payload_too_large"),
    ("POST", TASKS, {"data": "hi", "content_type": "text/plain"}, False, 401, "unauthorized"),
    ("POST", TASKS, {"data": "{bad", "content_type": "application/json"}, False, 401,
     "unauthorized"),
    ("GET", f"{TASKS}?bogus=1", {}, False, 401, "unauthorized"),
    ("POST", TASKS, {"data": "{bad", "content_type": "text/plain"}, True, 415,
     "unsupported_media_type"),
    ("POST", TASKS, {"data": '{"title": "x"}'}, True, 415, "unsupported_media_type"),
    ("POST", "/api/v1/auth/login", {"data": "{}", "content_type": "text/plain"}, False, 415,
     "unsupported_media_type"),
    ("PATCH", SOME_TASK, {"data": "{}", "content_type": "text/plain"}, True, 415,
     "unsupported_media_type"),
    ("POST", TASKS, {"data": "{bad", "content_type": "application/json"}, True, 400,
     "invalid_json"),
    ("POST", TASKS, {"data": "[]", "content_type": "application/json"}, True, 400,
     "invalid_json"),
    ("POST", TASKS, {"json": {"title": " "}}, True, 400, "validation_error"),
    ("PATCH", SOME_TASK, {"json": {"title": ""}}, True, 400, "validation_error"),
    ("GET", f"{TASKS}?bogus=1", {}, True, 400, "validation_error"),
    ("GET", "/api/health?verbose=1", {}, False, 400, "validation_error"),
    ("GET", f"{TASKS}/not-a-uuid", {}, True, 404, "not_found"),
    ("PATCH", SOME_TASK, {"json": {"title": "x"}}, True, 404, "not_found"),
]  # fmt: skip


def forged_access_token() -> str:
    """A well-formed access token for an app using the test secret (user and session unknown)."""
    now = int(time.time())
    ids = {name: str(uuid.uuid4()) for name in ("sub", "sid", "jti")}
    claims = {**ids, "type": "access", "fresh": False, "iat": now, "nbf": now, "exp": now + 600}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


# --- the error shape and precedence ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "authed", "status", "code"),
    ERROR_CASES,
    ids=[f"{c[0]} {c[1][:30]} {c[4]} {c[5]}" for c in ERROR_CASES],
)
def test_errors_have_one_shape_and_the_contract_order(
    alice: User,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    authed: bool,
    status: int,
    code: str,
) -> None:
    """Each error is JSON with the right status and code, the first that applies winning."""
    headers = {"Accept": "text/html", **(alice.headers if authed else {})}
    response = alice.client.open(path, method=method, headers=headers, **kwargs)
    assert_error(response, status, code)
    if status == 405:
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert method not in allowed and "GET" in allowed
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_405_allow_lists_every_method_of_the_path(client: FlaskClient) -> None:
    """The Allow header of /auth/me names GET, PATCH and DELETE."""
    response = client.put("/api/v1/auth/me")
    assert_error(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allowed and "PUT" not in allowed


def test_unexpected_exception_is_a_bare_500(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is 500 internal_error with no trace in the body, logged with the request id."""
    app = make_app()

    def explode() -> None:
        """A view with a bug."""
        raise RuntimeError("secret internals: /etc/passwd")

    app.add_url_rule("/api/v1/boom", "boom", explode)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/v1/boom", headers={"X-Request-ID": "boom-1"})
    assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] == "boom-1"
    assert any("boom-1" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("OPTIONS", TASKS, {}, 204),
        ("OPTIONS", "/api/v1/auth/login", {"Access-Control-Request-Method": "POST"}, 204),
        ("HEAD", "/api/health", {}, 200),
    ],
)
def test_automatic_responses_are_not_html(
    client: FlaskClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    """Flask's automatic OPTIONS (204, no content) and HEAD answers are not labelled as HTML."""
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == status
    assert response.mimetype != "text/html"
    assert "X-Request-ID" in response.headers


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/health", {}, 200),
        ("GET", "/api/v1/nope", {}, 404),
        ("GET", TASKS, {}, 401),
        ("POST", TASKS, {"data": BIG, "content_type": "application/json"}, 413),
    ],
)
@pytest.mark.parametrize(
    ("supplied", "echoed"),
    [("abc-123", True), ("A.b_c:9", True), ("r" * 128, True),
     ("bad id!", False), ("r" * 129, False), ("", False), ("a/b", False)],
)  # fmt: skip
def test_request_id_is_echoed_or_replaced(
    client: FlaskClient, method: str, path: str, kwargs: dict[str, Any], status: int,
    supplied: str, echoed: bool,
) -> None:  # fmt: skip
    """A valid X-Request-ID comes back unchanged; an invalid one is replaced by a valid one."""
    response = client.open(path, method=method, headers={"X-Request-ID": supplied}, **kwargs)
    assert response.status_code == status
    returned = response.headers["X-Request-ID"]
    assert REQUEST_ID.match(returned)
    assert (returned == supplied) is echoed


def test_request_ids_are_generated_per_request(client: FlaskClient) -> None:
    """Without a client id, every response gets its own."""
    ids = {client.get("/api/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(REQUEST_ID.match(i) for i in ids)


# --- health and readiness ------------------------------------------------------------------------


def test_health(client: FlaskClient) -> None:
    """200 {status: ok, timestamp} with a six-digit UTC timestamp of now."""
    response = client.get("/api/health")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.json
    assert set(body) == {"status", "timestamp"} and body["status"] == "ok"
    assert TIMESTAMP.match(body["timestamp"])
    stamp = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_ready(client: FlaskClient) -> None:
    """200 with the database ok and Redis not configured."""
    response = client.get("/api/ready")
    assert response.status_code == 200
    body = response.json
    assert (body["status"], set(body)) == ("ok", {"status", "checks", "outbox"})
    # The mail check and the outbox figures are tested in test_mail.py: the session's shared
    # database collects other tests' mail, so their values here depend on the run.
    assert set(body["checks"]) == {"database", "redis", "mail"}
    assert (body["checks"]["database"], body["checks"]["redis"]) == ("ok", "not_configured")


@pytest.fixture
def outage_app(tmp_path: Path) -> Iterator[Flask]:
    """An app whose database cannot be reached (nothing listens on port 1)."""
    settings = Settings(database_url=DOWN_URL, secret_key=TEST_SECRET, bcrypt_rounds=4,
                        data_dir=tmp_path, ratelimit_enabled=False)  # fmt: skip
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    engine_of(app).dispose()


def test_ready_is_503_during_an_outage(outage_app: Flask) -> None:
    """/api/ready says which check failed, in the error shape plus status and checks."""
    response = outage_app.test_client().get("/api/ready")
    assert response.status_code == 503 and response.mimetype == "application/json"
    body = response.json
    assert body["status"] == "error" and body["code"] == "unavailable" and body["error"]
    assert body["checks"] == {"database": "error", "redis": "not_configured", "mail": "error"}
    assert "outbox" not in body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", TASKS, None),
        ("GET", "/api/v1/auth/me", None),
        ("POST", "/api/v1/auth/login", {"email": "a@example.com", "password": "x" * 9}),
        ("POST", "/api/v1/auth/register",
         {"email": "a@example.com", "password": "an unusual passphrase"}),
    ],
)  # fmt: skip
def test_database_outage_is_503(
    outage_app: Flask, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Routes that need the database answer 503 unavailable, never 500 or a trace."""
    headers = {} if body else {"Authorization": f"Bearer {forged_access_token()}"}
    response = outage_app.test_client().open(path, method=method, headers=headers, json=body)
    assert_error(response, 503, "unavailable")
    assert outage_app.test_client().get("/api/health").status_code == 200


# --- CORS ----------------------------------------------------------------------------------------


def _header_set(response: Any, name: str) -> set[str]:
    """A comma-separated header as a set of lower-cased items."""
    return {item.strip().lower() for item in response.headers.get(name, "").split(",")}


def _preflight(client: FlaskClient, origin: str, path: str = TASKS, method: str = "POST") -> Any:
    """An OPTIONS preflight asking for an authenticated JSON request."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "Authorization, Content-Type, If-Match",
    }
    return client.options(path, headers=headers)


@pytest.fixture
def cors_client(make_app: Callable[..., Flask]) -> FlaskClient:
    """A client of an app that allows exactly https://app.example.com."""
    return make_app(cors_origins=ORIGIN).test_client()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/health", 200), ("GET", TASKS, 401), ("GET", "/api/v1/nope", 404)],
)
def test_cors_allows_the_listed_origin(
    cors_client: FlaskClient, method: str, path: str, status: int
) -> None:
    """That exact origin, credentials allowed, the contract's headers exposed (errors too)."""
    response = cors_client.open(path, method=method, headers={"Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert {h.lower() for h in EXPOSED} <= _header_set(response, "Access-Control-Expose-Headers")


@pytest.mark.parametrize(("path", "method"), [(TASKS, "POST"), (SOME_TASK, "PATCH"),
                                              ("/api/v1/auth/refresh", "POST")])  # fmt: skip
def test_cors_preflight_is_cached_and_needs_no_token(
    cors_client: FlaskClient, path: str, method: str
) -> None:
    """A preflight is answered without a token, with Max-Age and the requested method/headers."""
    response = _preflight(cors_client, ORIGIN, path, method)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert int(response.headers["Access-Control-Max-Age"]) == 600
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = _header_set(response, "Access-Control-Allow-Headers")
    assert {"authorization", "content-type", "if-match"} <= allowed


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "https://app.example.com.evil.com", "http://app.example.com",
     "https://app.example.com:8443", "https://xapp.example.com", "null"],
)  # fmt: skip
def test_cors_ignores_other_origins(cors_client: FlaskClient, origin: str) -> None:
    """Origins not on the allowlist get no CORS headers, on simple requests and preflights."""
    simple = cors_client.get("/api/health", headers={"Origin": origin})
    assert simple.status_code == 200 and cors_headers(simple) == {}
    assert cors_headers(_preflight(cors_client, origin)) == {}


def test_no_cors_headers_without_an_allowlist(client: FlaskClient) -> None:
    """With no origins configured, no origin gets CORS headers."""
    assert cors_headers(client.get("/api/health", headers={"Origin": ORIGIN})) == {}
    assert cors_headers(_preflight(client, ORIGIN)) == {}


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_production_refuses_a_weak_secret(tmp_path: Path, secret: str) -> None:
    """env=production with a secret under 32 bytes does not start."""
    hosts, url = "api.example.com", "postgresql+psycopg://db.internal/taskapi"
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(
            env="production", secret_key=secret, data_dir=tmp_path, allowed_hosts=hosts,
            database_url=url,
        )  # fmt: skip
    strong = Settings(
        env="production", secret_key="x" * 32, data_dir=tmp_path, allowed_hosts=hosts,
        database_url=url,
    )  # fmt: skip
    assert strong.is_production


@pytest.mark.parametrize(
    "origins",
    ["*", "https://*.example.com", "https://app.example.com, *", "app.example.com",
     "https://app\\.example\\.com", "https://app.example.com$", "https://(app|www).example.com"],
)  # fmt: skip
def test_wildcard_or_pattern_origins_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origins: str
) -> None:
    """Only exact origins pass, whether given directly or through TASKAPI_CORS_ORIGINS."""
    with pytest.raises(ValidationError):
        Settings(cors_origins=origins, secret_key=TEST_SECRET, data_dir=tmp_path)
    monkeypatch.setenv("TASKAPI_CORS_ORIGINS", origins)
    with pytest.raises(SettingsError, match="TASKAPI_CORS_ORIGINS"):
        load_settings(secret_key=TEST_SECRET, data_dir=tmp_path)


def test_exact_origins_are_split_and_normalised(tmp_path: Path) -> None:
    """A comma-separated list becomes exact origins without trailing slashes."""
    settings = Settings(cors_origins=" https://a.example.com/, http://localhost:5173 ",
                        secret_key=TEST_SECRET, data_dir=tmp_path)  # fmt: skip
    assert settings.cors_origins == ("https://a.example.com", "http://localhost:5173")
