"""Rate limits shared through Redis across real server processes, and life without Redis."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from tests.conftest import IN_CI, PASSWORD, LiveServer, free_port, need_service, unique_email
from tests.servers import RedisProcess, base_env, start_together, stop_all
from tests.support import assert_429

TASKS = "/api/v1/tasks"
AUTH = "/api/v1/auth"
KEYS = "LIMITS:*"  # every rate-limit counter taskapi keeps in Redis
GENEROUS = {
    "TASKAPI_RATELIMIT_LOGIN": "1000/minute",
    "TASKAPI_RATELIMIT_REGISTER": "1000/hour",
}


def new_address() -> str:
    """A random client address for X-Forwarded-For."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def clear_keys(client: redis.Redis) -> None:
    """Delete every rate-limit key in the test database."""
    for key in list(client.scan_iter(KEYS)):
        client.delete(key)


def keys_with(client: redis.Redis, fragment: str) -> list[bytes]:
    """The rate-limit keys whose name contains ``fragment``."""
    return list(client.scan_iter(f"LIMITS:*{fragment}*"))


@pytest.fixture(scope="module")
def redis_test_url() -> str:
    """TASKAPI_TEST_REDIS_URL, checked to answer (fail in CI, skip elsewhere when it does not)."""
    url = need_service("TASKAPI_TEST_REDIS_URL")
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as error:
        if IN_CI:
            raise
        pytest.skip(f"Redis unavailable: {error}")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_db(redis_test_url: str) -> Iterator[redis.Redis]:
    """A client of the test database, with rate-limit keys deleted before and after the test."""
    client = redis.Redis.from_url(redis_test_url, socket_timeout=2)
    clear_keys(client)
    yield client
    clear_keys(client)
    client.close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP session, closed afterwards."""
    with requests.Session() as session:
        yield session


class Client:
    """Requests to live servers through a proxy that forwards the client's address."""

    def __init__(self, http: requests.Session) -> None:
        self.http = http

    def call(
        self,
        server: LiveServer,
        method: str,
        path: str,
        *,
        address: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request, with X-Forwarded-For and a bearer token when given."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}  # no idle keep-alive
        if address is not None:
            headers["X-Forwarded-For"] = address
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, server.url + path, headers=headers, timeout=10, **kwargs)

    def login(self, server: LiveServer, email: str, password: str, address: str) -> Any:
        """POST /auth/login from ``address``."""
        body = {"email": email, "password": password}
        return self.call(server, "POST", f"{AUTH}/login", address=address, json=body)

    def signup(self, server: LiveServer, address: str | None = None) -> dict[str, Any]:
        """Register and log in a fresh user; the login answer plus ``email``."""
        email = unique_email()
        body = {"email": email, "password": PASSWORD}
        made = self.call(server, "POST", f"{AUTH}/register", address=address, json=body)
        assert made.status_code == 201, made.text
        answer = self.call(server, "POST", f"{AUTH}/login", address=address, json=body)
        assert answer.status_code == 200, answer.text
        return {**answer.json(), "email": email}


def remaining(response: requests.Response) -> int:
    """The RateLimit-Remaining header as a number."""
    return int(response.headers["RateLimit-Remaining"])


# --- two instances sharing Redis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(
    redis_test_url: str, postgresql_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two instances behind one trusted proxy, sharing PostgreSQL and Redis."""
    workdir = tmp_path_factory.mktemp("pair")
    env = base_env(
        workdir,
        TASKAPI_DATABASE_URL=postgresql_url,
        TASKAPI_REDIS_URL=redis_test_url,
        TASKAPI_TRUSTED_PROXIES="1",
        TASKAPI_RATELIMIT_DEFAULT="10/minute",
        TASKAPI_RATELIMIT_LOGIN_FAILURES="5/15 minutes",
        TASKAPI_RATELIMIT_LOGIN_EMAIL="3/hour",
        **GENEROUS,
    )
    servers = start_together([env, env], workdir)
    yield servers[0], servers[1]
    stop_all(servers)


@pytest.mark.slow
def test_user_budget_is_shared_by_instances(
    pair: tuple[LiveServer, LiveServer], redis_db: redis.Redis, http: requests.Session
) -> None:
    """Hits on instance A and B add up to one budget per user; another user is unaffected."""
    a, b = pair
    client = Client(http)
    first = client.signup(a, new_address())
    second = client.signup(b, new_address())
    address = new_address()
    for count in range(10):
        server = (a, b)[count % 2]
        answer = client.call(server, "GET", TASKS, address=address, token=first["access_token"])
        assert answer.status_code == 200, answer.text
        assert answer.headers["RateLimit-Limit"] == "10" and remaining(answer) == 9 - count
    for server in (a, b):
        assert_429(client.call(server, "GET", TASKS, address=address, token=first["access_token"]))
    other = client.call(b, "GET", TASKS, address=address, token=second["access_token"])
    assert other.status_code == 200 and remaining(other) == 9
    assert keys_with(redis_db, f"user:{first['user']['id']}")


@pytest.mark.slow
def test_login_failures_per_email_add_up_across_instances(
    pair: tuple[LiveServer, LiveServer], redis_db: redis.Redis, http: requests.Session
) -> None:
    """Failures for one email from three addresses on two instances spend the per-email
    budget: an address that already failed is refused on the other instance, while the
    owner at a clean address still logs in."""
    a, b = pair
    client = Client(http)
    user = client.signup(a, new_address())
    guessers = [new_address() for _ in range(3)]
    for server, address in zip((a, b, a), guessers, strict=True):
        failed = client.login(server, user["email"], "wrong password guess", address)
        assert failed.status_code == 401 and failed.json()["code"] == "invalid_credentials"
    blocked = client.login(b, user["email"], "wrong password guess", guessers[0])
    assert_429(blocked)
    assert blocked.headers["RateLimit-Limit"] == "3" and remaining(blocked) == 0
    assert keys_with(redis_db, "login-failures-email")
    assert client.login(b, user["email"], PASSWORD, new_address()).status_code == 200


@pytest.mark.slow
def test_logout_on_one_instance_revokes_on_the_other(
    pair: tuple[LiveServer, LiveServer], redis_db: redis.Redis, http: requests.Session
) -> None:
    """After logout on A, the session's access and refresh tokens fail on B at once."""
    a, b = pair
    client = Client(http)
    address = new_address()
    user = client.signup(a, address)
    access, refresh = user["access_token"], user["refresh_token"]
    assert client.call(b, "GET", f"{AUTH}/me", address=address, token=access).status_code == 200
    out = client.call(a, "POST", f"{AUTH}/logout", address=address, token=access)
    assert out.status_code == 204, out.text
    answer = client.call(b, "GET", f"{AUTH}/me", address=address, token=access)
    assert answer.status_code == 401 and answer.json()["code"] == "token_revoked"
    again = client.call(b, "POST", f"{AUTH}/refresh", address=address, token=refresh)
    assert again.status_code == 401 and again.json()["code"] == "token_revoked"


@pytest.mark.slow
def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(
    live_server_factory: Callable[..., LiveServer],
    redis_db: redis.Redis,
    redis_test_url: str,
    http: requests.Session,
) -> None:
    """With TASKAPI_TRUSTED_PROXIES=0 every request counts for the socket's address."""
    server = live_server_factory(
        {
            "TASKAPI_REDIS_URL": redis_test_url,
            "TASKAPI_TRUSTED_PROXIES": "0",
            "TASKAPI_RATELIMIT_DEFAULT": "3/minute",
        }
    )
    client = Client(http)
    for count in range(3):
        answer = client.call(server, "GET", TASKS, address=new_address())
        assert answer.status_code == 401 and remaining(answer) == 2 - count
    assert_429(client.call(server, "GET", TASKS, address=new_address()))
    assert keys_with(redis_db, "addr:127.0.0.1")
    assert not keys_with(redis_db, "addr:10.")


# --- without Redis ------------------------------------------------------------------------------


def close_redis(app: Flask) -> None:
    """Close the Redis connections of the app's rate-limit counters."""
    app.extensions["taskapi"].counters.close()


@pytest.fixture
def make_redis_app(make_app: Callable[..., Flask]) -> Iterator[Callable[..., Flask]]:
    """``make_app`` with rate limits on, closing every Redis connection afterwards."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = make_app(ratelimit_enabled=True, **overrides)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_redis(app)


def closed_port_app(make_redis_app: Callable[..., Flask], **overrides: Any) -> Flask:
    """An app whose Redis URL points at a port nobody listens on."""
    return make_redis_app(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        ratelimit_default="3/minute",
        ratelimit_login="1000/minute",
        ratelimit_register="1000/hour",
        ratelimit_login_failures="2/15 minutes",
        **overrides,
    )


def test_unreachable_redis_falls_back_to_memory(make_redis_app: Callable[..., Flask]) -> None:
    """Redis down: requests succeed, limits still apply in memory, readiness says redis error."""
    client = closed_port_app(make_redis_app).test_client()
    email = unique_email()
    body = {"email": email, "password": PASSWORD}
    home = {"environ_base": {"REMOTE_ADDR": "10.20.0.1"}}
    assert client.post(f"{AUTH}/register", json=body, **home).status_code == 201
    tokens = client.post(f"{AUTH}/login", json=body, **home)
    assert tokens.status_code == 200, tokens.json
    headers = {"Authorization": f"Bearer {tokens.json['access_token']}"}
    away = {"environ_base": {"REMOTE_ADDR": "10.20.0.2"}}
    for left in (2, 1, 0):
        answer = client.get(TASKS, headers=headers, **away)
        assert answer.status_code == 200 and answer.headers["RateLimit-Remaining"] == str(left)
    over = client.get(TASKS, headers=headers, **away)
    assert over.status_code == 429 and over.json["code"] == "rate_limited"
    ready = client.get("/api/ready")
    assert ready.status_code == 200
    assert ready.json["status"] == "ok"
    assert services_of(ready.json) == {"database": "ok", "redis": "error"}
    wrong = {"email": email, "password": "wrong password guess"}
    for _ in range(2):
        assert client.post(f"{AUTH}/login", json=wrong, **away).status_code == 401
    assert client.post(f"{AUTH}/login", json=body, **away).status_code == 429


def services_of(ready: dict[str, Any]) -> dict[str, str]:
    """The database and Redis checks of a readiness answer (mail is test_mail.py's)."""
    return {name: ready["checks"][name] for name in ("database", "redis")}


def test_required_redis_down_makes_readiness_fail(
    make_redis_app: Callable[..., Flask],
) -> None:
    """With TASKAPI_REDIS_REQUIRED=true an unreachable Redis turns /api/ready into 503."""
    client = closed_port_app(make_redis_app, redis_required=True).test_client()
    ready = client.get("/api/ready")
    assert ready.status_code == 503
    assert ready.json["status"] == "error" and ready.json["code"] == "unavailable"
    assert services_of(ready.json) == {"database": "ok", "redis": "error"}
    assert client.get("/api/health").status_code == 200


def test_reachable_redis_is_reported_ready(
    make_redis_app: Callable[..., Flask], redis_db: redis.Redis, redis_test_url: str
) -> None:
    """With Redis answering, readiness reports it ok and budgets live in Redis."""
    app = make_redis_app(redis_url=redis_test_url, ratelimit_default="5/minute")
    client = app.test_client()
    assert services_of(client.get("/api/ready").json) == {"database": "ok", "redis": "ok"}
    answer = client.get(TASKS, environ_base={"REMOTE_ADDR": "10.21.0.1"})
    assert answer.headers["RateLimit-Remaining"] == "4"
    assert keys_with(redis_db, "addr:10.21.0.1")


def test_redis_not_configured_is_reported(make_app: Callable[..., Flask]) -> None:
    """Without TASKAPI_REDIS_URL readiness says not_configured and is still 200."""
    ready = make_app(ratelimit_enabled=True).test_client().get("/api/ready")
    assert ready.status_code == 200
    assert ready.json["status"] == "ok"
    assert services_of(ready.json) == {"database": "ok", "redis": "not_configured"}


@pytest.mark.slow
def test_redis_stop_and_start(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, http: requests.Session
) -> None:
    """Redis stops: no 500 and limits still apply; it starts again: ready and counting in Redis."""
    store = RedisProcess(tmp_path)
    store.start()
    keys = store.client()
    try:
        server = live_server_factory(
            {"TASKAPI_REDIS_URL": store.url, "TASKAPI_RATELIMIT_DEFAULT": "5/minute", **GENEROUS}
        )
        client = Client(http)
        first, second = client.signup(server), client.signup(server)
        token = first["access_token"]
        answer = client.call(server, "GET", TASKS, token=token)
        assert answer.status_code == 200 and remaining(answer) == 4
        assert keys_with(keys, f"user:{first['user']['id']}")

        store.stop()
        statuses = [client.call(server, "GET", TASKS, token=token).status_code for _ in range(6)]
        assert set(statuses) <= {200, 429} and statuses[-1] == 429, statuses
        assert client.login(server, first["email"], PASSWORD, "ignored").status_code == 200
        assert client.login(server, first["email"], "wrong password", "ignored").status_code == 401
        ready = client.call(server, "GET", "/api/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "error"

        store.start()
        second_key = f"user:{second['user']['id']}"
        deadline = time.monotonic() + 15
        redis_ready = counted = False
        while time.monotonic() < deadline and not (redis_ready and counted):
            ready = client.call(server, "GET", "/api/ready")
            redis_ready = ready.json()["checks"]["redis"] == "ok"
            answer = client.call(server, "GET", TASKS, token=second["access_token"])
            assert answer.status_code in (200, 429), answer.text
            counted = bool(keys_with(keys, second_key))
            if not counted:
                time.sleep(0.25)
        assert redis_ready, "readiness did not report Redis back within 15 s"
        assert counted, "limits were not counted in Redis again within 15 s"
        assert ready.status_code == 200
        assert "unhandled error" not in server.log()
    finally:
        keys.close()
        store.stop()
