"""Rate limits in process (memory storage): headers, 429s, keys, login failures, proxies, order."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, unique_email
from tests.support import assert_429, bearer

AUTH = "/api/v1/auth"
TASKS = "/api/v1/tasks"
LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
EXEMPT_PATHS = ("/api/health", "/api/ready", "/api/v1/openapi.json", "/api/docs")
ORIGIN = "https://app.example.com"
OTHER_SECRET = "another-secret-key-that-is-long-enough-for-hs256-9876543210"
# Login budgets generous enough that only the limit under test can trip.
LOOSE = {
    "ratelimit_default": "1000/minute",
    "ratelimit_login": "1000/minute",
    "ratelimit_register": "1000/hour",
    "ratelimit_login_failures": "1000/hour",
    "ratelimit_login_email": "1000/hour",
    "ratelimit_password_checks": "1000/minute",
    "ratelimit_password_checks_address": "1000/minute",
}


def limited_app(make_app: Callable[..., Flask], **overrides: Any) -> FlaskClient:
    """A test client of an app with rate limits on and ``overrides`` applied."""
    return make_app(ratelimit_enabled=True, **{**LOOSE, **overrides}).test_client()


def at(address: str) -> dict[str, Any]:
    """Test-client keyword arguments sending a request from ``address``."""
    return {"environ_base": {"REMOTE_ADDR": address}}


def signup(client: FlaskClient, address: str) -> tuple[str, dict[str, Any]]:
    """Register and log in a fresh user from ``address``; return (email, login answer)."""
    email = unique_email()
    body = {"email": email, "password": PASSWORD}
    registered = client.post(f"{AUTH}/register", json=body, **at(address))
    assert registered.status_code == 201, registered.json
    answer = client.post(f"{AUTH}/login", json=body, **at(address))
    assert answer.status_code == 200, answer.json
    return email, answer.json


def login(client: FlaskClient, email: str, password: str, address: str) -> Any:
    """POST /auth/login from ``address``."""
    return client.post(f"{AUTH}/login", json={"email": email, "password": password}, **at(address))


def window(response: Any) -> tuple[int, int, int]:
    """(limit, remaining, reset) from the RateLimit-* headers, which must all be integers."""
    values = [response.headers.get(name) for name in LIMIT_HEADERS]
    assert all(v is not None and v.isdigit() for v in values), dict(response.headers)
    limit, remaining, reset = (int(v) for v in values)  # type: ignore[arg-type]
    return limit, remaining, reset


def assert_unlimited(response: Any) -> None:
    """No rate-limit header at all."""
    present = [h for h in (*LIMIT_HEADERS, "Retry-After") if h in response.headers]
    assert present == [], present


# --- headers and 429 ----------------------------------------------------------------------------


def test_headers_count_down_on_v1_routes(make_app: Callable[..., Flask]) -> None:
    """Each limited response states limit, a remaining count that falls by one, and the reset."""
    client = limited_app(make_app, ratelimit_default="5/minute")
    seen = []
    for _ in range(5):
        response = client.get(TASKS, **at("10.1.0.1"))
        assert response.status_code == 401
        assert "Retry-After" not in response.headers
        limit, remaining, reset = window(response)
        assert limit == 5 and 1 <= reset <= 60
        seen.append(remaining)
    assert seen == [4, 3, 2, 1, 0]


def test_disabled_limits_send_no_headers(make_app: Callable[..., Flask]) -> None:
    """With TASKAPI_RATELIMIT_ENABLED off nothing is counted and no header is sent."""
    client = make_app(ratelimit_enabled=False, ratelimit_default="1/minute").test_client()
    for _ in range(3):
        response = client.get(TASKS)
        assert response.status_code == 401
        assert_unlimited(response)


def test_over_the_limit_is_429_with_retry_after(make_app: Callable[..., Flask]) -> None:
    """The request after the budget is spent gets 429 rate_limited with Retry-After."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    for _ in range(2):
        assert client.get(TASKS, **at("10.1.0.2")).status_code == 401
    for _ in range(2):
        response = client.get(TASKS, **at("10.1.0.2"))
        assert_429(response, max_wait=60)
        limit, remaining, reset = window(response)
        assert (limit, remaining) == (2, 0) and 1 <= reset <= 60
        assert int(response.headers["Retry-After"]) >= reset


def test_exempt_routes_carry_no_headers_and_stay_open(make_app: Callable[..., Flask]) -> None:
    """Health, readiness, the OpenAPI document, the docs and OPTIONS are never limited."""
    client = limited_app(make_app, ratelimit_default="1/minute", cors_origins=ORIGIN)
    address = at("10.1.0.3")
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    for _ in range(3):
        for path in EXEMPT_PATHS:
            response = client.get(path, **address)
            assert response.status_code == 200, path
            assert_unlimited(response)
        answer = client.options(TASKS, headers=preflight, **address)
        assert answer.status_code == 204
        assert answer.headers.get("Access-Control-Allow-Origin") == ORIGIN
        assert_unlimited(answer)
        assert_unlimited(client.options(f"{AUTH}/login", **address))
    # None of the above used the address's budget of one.
    first = client.get(TASKS, **address)
    assert first.status_code == 401 and window(first)[:2] == (1, 0)
    assert client.get(TASKS, **address).status_code == 429
    for path in EXEMPT_PATHS:
        response = client.get(path, **address)
        assert response.status_code == 200, path
        assert_unlimited(response)


def test_cross_origin_429_is_readable(make_app: Callable[..., Flask]) -> None:
    """A 429 to an allowed origin carries CORS headers exposing Retry-After and RateLimit-*."""
    client = limited_app(make_app, ratelimit_default="1/minute", cors_origins=ORIGIN)
    headers = {"Origin": ORIGIN}
    client.get(TASKS, headers=headers, **at("10.1.0.4"))
    response = client.get(TASKS, headers=headers, **at("10.1.0.4"))
    assert_429(response, max_wait=60)
    assert response.headers.get("Access-Control-Allow-Origin") == ORIGIN
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"retry-after", *(h.lower() for h in LIMIT_HEADERS)} <= exposed


# --- who is counted ---------------------------------------------------------------------------


def test_authenticated_requests_count_per_user(make_app: Callable[..., Flask]) -> None:
    """Two users behind one address each have their own budget, apart from the address's."""
    client = limited_app(make_app, ratelimit_default="3/minute")
    first = signup(client, "10.2.0.1")[1]["access_token"]
    second = signup(client, "10.2.0.2")[1]["access_token"]
    shared = at("10.2.0.99")
    for expected in (2, 1, 0):
        response = client.get(TASKS, headers=bearer(first), **shared)
        assert response.status_code == 200 and window(response)[:2] == (3, expected)
    assert_429(client.get(TASKS, headers=bearer(first), **shared), max_wait=60)
    other = client.get(TASKS, headers=bearer(second), **shared)
    assert other.status_code == 200 and window(other)[:2] == (3, 2)
    anonymous = client.get(TASKS, **shared)
    assert anonymous.status_code == 401 and window(anonymous)[:2] == (3, 2)
    # The first user's budget follows them to another address.
    assert_429(client.get(TASKS, headers=bearer(first), **at("10.2.0.100")), max_wait=60)


def test_anonymous_requests_count_per_address(make_app: Callable[..., Flask]) -> None:
    """Anonymous budgets are per address: one address over the limit does not block another."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    for _ in range(2):
        assert client.get(TASKS, **at("10.3.0.1")).status_code == 401
    assert_429(client.get(TASKS, **at("10.3.0.1")), max_wait=60)
    elsewhere = client.get(TASKS, **at("10.3.0.2"))
    assert elsewhere.status_code == 401 and window(elsewhere)[:2] == (2, 1)


def test_forged_tokens_do_not_buy_a_fresh_budget(make_app: Callable[..., Flask]) -> None:
    """Tokens with a bad signature, or refresh tokens, are counted against the address."""
    client = limited_app(make_app, ratelimit_default="3/minute")
    _, tokens = signup(client, "10.3.1.1")
    address = at("10.3.1.2")
    for number in range(1, 3):
        claims = {"sub": f"00000000-0000-0000-0000-00000000000{number}", "type": "access"}
        forged = jwt.encode({**claims, "exp": int(time.time()) + 600}, OTHER_SECRET, "HS256")
        assert client.get(TASKS, headers=bearer(forged), **address).status_code == 401
    refresh = bearer(tokens["refresh_token"])
    assert client.get(TASKS, headers=refresh, **address).status_code == 401
    assert_429(client.get(TASKS, headers=refresh, **address), max_wait=60)
    # The real access token of the user is still counted per user.
    assert client.get(TASKS, headers=bearer(tokens["access_token"]), **address).status_code == 200


def _credentials(client: FlaskClient, address: str) -> tuple[str, str]:
    """Register a user from ``address`` and return (email, password)."""
    email = unique_email()
    answer = client.post(
        f"{AUTH}/register", json={"email": email, "password": PASSWORD}, **at(address)
    )
    assert answer.status_code == 201, answer.json
    return email, PASSWORD


# --- login and register -------------------------------------------------------------------------


def test_login_is_limited_per_address(make_app: Callable[..., Flask]) -> None:
    """TASKAPI_RATELIMIT_LOGIN counts every login attempt per address."""
    client = limited_app(make_app, ratelimit_login="3/minute")
    email, password = _credentials(client, "10.4.0.1")
    for _ in range(3):
        response = login(client, email, password, "10.4.0.2")
        assert response.status_code == 200 and window(response)[0] == 3
    assert_429(login(client, email, password, "10.4.0.2"), max_wait=60)
    assert login(client, email, password, "10.4.0.3").status_code == 200


def test_failures_per_email_and_address_block_only_that_pair(
    make_app: Callable[..., Flask],
) -> None:
    """Five wrong passwords from A block the account from A, but its owner logs in from B."""
    client = limited_app(make_app, ratelimit_login_failures="5/15 minutes")
    email, password = _credentials(client, "10.5.0.1")
    for _ in range(5):
        response = login(client, email, "wrong password guess", "10.5.0.2")
        assert response.status_code == 401 and response.json["code"] == "invalid_credentials"
    blocked = login(client, email, password, "10.5.0.2")
    assert_429(blocked, max_wait=15 * 60)
    assert "access_token" not in blocked.json
    assert window(blocked)[:2] == (5, 0)
    assert login(client, email, password, "10.5.0.3").status_code == 200
    other_email, other_password = _credentials(client, "10.5.0.1")
    assert login(client, other_email, other_password, "10.5.0.2").status_code == 200


def test_only_failures_count_and_email_case_does_not_matter(
    make_app: Callable[..., Flask],
) -> None:
    """Successful logins cost nothing; a differently cased email is the same account."""
    client = limited_app(make_app, ratelimit_login_failures="3/15 minutes")
    email, password = _credentials(client, "10.6.0.1")
    variants = [email.upper(), f"  {email}  ", email.capitalize()]
    for variant in variants[:2]:
        assert login(client, variant, "wrong password guess", "10.6.0.2").status_code == 401
    for _ in range(4):
        assert login(client, email, password, "10.6.0.2").status_code == 200
    assert login(client, variants[2], "wrong password guess", "10.6.0.2").status_code == 401
    assert_429(login(client, email, password, "10.6.0.2"), max_wait=15 * 60)


def test_unknown_emails_are_limited_too(make_app: Callable[..., Flask]) -> None:
    """Guessing against an email that has no account is counted like any other failure."""
    client = limited_app(make_app, ratelimit_login_failures="2/15 minutes")
    email = unique_email("nobody")
    for _ in range(2):
        assert login(client, email, "wrong password guess", "10.6.1.1").status_code == 401
    assert_429(login(client, email, "wrong password guess", "10.6.1.1"), max_wait=15 * 60)


def test_failures_per_email_add_up_across_addresses(make_app: Callable[..., Flask]) -> None:
    """TASKAPI_RATELIMIT_LOGIN_EMAIL counts one account's failures from every address: once
    spent, an address that has failed for this email is refused, though its pair budget is not."""
    client = limited_app(
        make_app, ratelimit_login_failures="5/15 minutes", ratelimit_login_email="3/hour"
    )
    email, _password = _credentials(client, "10.7.0.1")
    for address in ("10.7.0.2", "10.7.0.3", "10.7.0.4"):
        assert login(client, email, "wrong password guess", address).status_code == 401
    blocked = login(client, email, "wrong password guess", "10.7.0.2")
    assert_429(blocked, max_wait=3600)
    assert window(blocked)[:2] == (3, 0)
    other_email, other_password = _credentials(client, "10.7.0.1")
    assert login(client, other_email, other_password, "10.7.0.2").status_code == 200


def test_register_is_limited_per_address(make_app: Callable[..., Flask]) -> None:
    """TASKAPI_RATELIMIT_REGISTER counts registrations per address."""
    client = limited_app(make_app, ratelimit_register="2/hour")

    def register(address: str) -> Any:
        body = {"email": unique_email(), "password": PASSWORD}
        return client.post(f"{AUTH}/register", json=body, **at(address))

    for expected in (1, 0):
        response = register("10.8.0.1")
        assert response.status_code == 201 and window(response)[:2] == (2, expected)
    blocked = register("10.8.0.1")
    assert_429(blocked, max_wait=3600)
    assert window(blocked)[0] == 2
    assert register("10.8.0.2").status_code == 201


# --- proxies ------------------------------------------------------------------------------------


def test_trusted_proxy_counts_the_forwarded_address(make_app: Callable[..., Flask]) -> None:
    """Behind one trusted proxy, the address the proxy appended is the one counted."""
    client = limited_app(make_app, ratelimit_default="2/minute", trusted_proxies=1)
    proxy = at("127.0.0.1")
    for spoofed in ("1.1.1.1", "2.2.2.2"):
        chain = {"X-Forwarded-For": f"{spoofed}, 198.51.100.7"}
        assert client.get(TASKS, headers=chain, **proxy).status_code == 401
    chain = {"X-Forwarded-For": "3.3.3.3, 198.51.100.7"}
    assert_429(client.get(TASKS, headers=chain, **proxy), max_wait=60)
    fresh = client.get(TASKS, headers={"X-Forwarded-For": "198.51.100.8"}, **proxy)
    assert fresh.status_code == 401 and window(fresh)[:2] == (2, 1)


def test_untrusted_forwarded_for_is_ignored(make_app: Callable[..., Flask]) -> None:
    """Without trusted proxies a client's own X-Forwarded-For changes nothing."""
    client = limited_app(make_app, ratelimit_default="2/minute", trusted_proxies=0)
    direct = at("203.0.113.9")
    for spoofed in ("198.51.100.1", "198.51.100.2"):
        headers = {"X-Forwarded-For": spoofed}
        assert client.get(TASKS, headers=headers, **direct).status_code == 401
    headers = {"X-Forwarded-For": "198.51.100.3"}
    assert_429(client.get(TASKS, headers=headers, **direct), max_wait=60)
    assert_429(client.get(TASKS, **direct), max_wait=60)


def test_untrusted_forwarded_for_cannot_dodge_login_failures(
    make_app: Callable[..., Flask],
) -> None:
    """Rotating X-Forwarded-For does not reset the (email, address) failure count."""
    client = limited_app(make_app, ratelimit_login_failures="2/15 minutes")
    email, password = _credentials(client, "10.9.0.1")
    body = {"email": email, "password": "wrong password guess"}
    for spoofed in ("198.51.100.1", "198.51.100.2"):
        headers = {"X-Forwarded-For": spoofed}
        answer = client.post(f"{AUTH}/login", json=body, headers=headers, **at("10.9.0.2"))
        assert answer.status_code == 401
    headers = {"X-Forwarded-For": "198.51.100.3"}
    right = {"email": email, "password": password}
    answer = client.post(f"{AUTH}/login", json=right, headers=headers, **at("10.9.0.2"))
    assert_429(answer, max_wait=15 * 60)


# --- precedence ---------------------------------------------------------------------------------


def test_error_precedence_around_429(make_app: Callable[..., Flask]) -> None:
    """Route 404/405 and 413 rank above 429; 429 ranks above 401, 415 and 400."""
    client = limited_app(make_app, ratelimit_default="1/minute", max_body_bytes=1024)
    address = at("10.10.0.1")
    assert client.get(TASKS, **address).status_code == 401
    # Over the limit from here on.
    assert client.get("/api/v1/no-such-route", **address).status_code == 404
    assert client.put(TASKS, json={"title": "x"}, **address).status_code == 405
    big = client.post(TASKS, data="x" * 2048, content_type="application/json", **address)
    assert big.status_code == 413 and big.json["code"] == "payload_too_large"
    assert_429(client.get(TASKS, **address), max_wait=60)
    assert_429(client.post(TASKS, data="hi", content_type="text/plain", **address), max_wait=60)
    bad_json = client.post(TASKS, data="{", content_type="application/json", **address)
    assert_429(bad_json, max_wait=60)


def test_user_over_limit_gets_429_before_validation(make_app: Callable[..., Flask]) -> None:
    """An authenticated user over budget gets 429 even for an invalid body."""
    client = limited_app(make_app, ratelimit_default="2/minute")
    token = signup(client, "10.11.0.1")[1]["access_token"]
    headers = bearer(token)
    for _ in range(2):
        assert client.get(TASKS, headers=headers, **at("10.11.0.2")).status_code == 200
    answer = client.post(TASKS, json={"nope": 1}, headers=headers, **at("10.11.0.2"))
    assert_429(answer, max_wait=60)
