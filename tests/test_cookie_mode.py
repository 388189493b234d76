"""Cookie mode for browser SPAs: HttpOnly refresh cookie, CSRF header, rotation, logout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from taskapi.settings import Settings
from tests.conftest import PASSWORD, User, login

COOKIE = "taskapi_refresh"
AUTH_PATH = "/api/v1/auth"


def cookie_login(client: FlaskClient, user: User) -> dict[str, Any]:
    """Log in in cookie mode and return the body."""
    answer = login(client, user.email, refresh_cookie=True)
    assert answer.status_code == 200, answer.json
    return answer.json  # type: ignore[no-any-return]


def refresh(client: FlaskClient, csrf: str | None) -> Any:
    """POST /auth/refresh with the cookie jar and, if given, the CSRF header."""
    headers = {"X-CSRF-TOKEN": csrf} if csrf is not None else {}
    return client.post(f"{AUTH_PATH}/refresh", headers=headers)


def current_cookie(client: FlaskClient) -> str:
    """The refresh cookie the client holds."""
    cookie = client.get_cookie(COOKIE, path=AUTH_PATH)
    assert cookie is not None
    return cookie.value


def test_login_sets_httponly_scoped_persistent_cookie(client: FlaskClient, alice: User) -> None:
    """The body has csrf_token and no refresh_token; the cookie is HttpOnly and path-scoped."""
    answer = login(client, alice.email, refresh_cookie=True)
    body = answer.json
    assert "refresh_token" not in body
    assert body["csrf_token"]
    assert body["token_type"] == "Bearer"
    set_cookie = answer.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in set_cookie
    assert f"Path={AUTH_PATH}" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # development default
    max_age = int(set_cookie.split("Max-Age=")[1].split(";")[0])
    assert 29 * 86400 < max_age <= 30 * 86400
    assert alice.request("GET", f"{AUTH_PATH}/me", headers={}).status_code == 200


def test_refresh_requires_matching_csrf_header(client: FlaskClient, alice: User) -> None:
    """Missing or wrong X-CSRF-TOKEN is 403 csrf_failed; the right one rotates the cookie."""
    body = cookie_login(client, alice)
    first_cookie = current_cookie(client)
    for csrf in (None, "wrong", body["csrf_token"] + "x"):
        denied = refresh(client, csrf)
        assert denied.status_code == 403
        assert denied.json["code"] == "csrf_failed"
    answer = refresh(client, body["csrf_token"])
    assert answer.status_code == 200, answer.json
    assert "refresh_token" not in answer.json
    assert answer.json["csrf_token"] != body["csrf_token"]
    assert current_cookie(client) != first_cookie
    me = client.get(
        f"{AUTH_PATH}/me", headers={"Authorization": f"Bearer {answer.json['access_token']}"}
    )
    assert me.status_code == 200


def test_cookie_is_checked_before_the_authorization_header(
    client: FlaskClient, alice: User
) -> None:
    """An SPA sends its Bearer access token too; the refresh cookie must still be found."""
    body = cookie_login(client, alice)
    answer = client.post(
        f"{AUTH_PATH}/refresh",
        headers={
            "X-CSRF-TOKEN": body["csrf_token"],
            "Authorization": f"Bearer {body['access_token']}",
        },
    )
    assert answer.status_code == 200, answer.json
    assert "csrf_token" in answer.json


def test_reused_cookie_revokes_the_session(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """Outside the grace window an old cookie is theft: 401 token_revoked, session dead."""
    client = make_app(refresh_grace_seconds=0).test_client()
    user = make_user(on=client)
    body = cookie_login(client, user)
    old_cookie = current_cookie(client)
    rotated = refresh(client, body["csrf_token"])
    assert rotated.status_code == 200
    new_csrf, access = rotated.json["csrf_token"], rotated.json["access_token"]
    client.set_cookie(COOKIE, old_cookie, path=AUTH_PATH)
    reused = refresh(client, body["csrf_token"])
    assert reused.status_code == 401
    assert reused.json["code"] == "token_revoked"
    me = client.get(f"{AUTH_PATH}/me", headers={"Authorization": f"Bearer {access}"})
    assert me.json["code"] == "token_revoked"
    client.delete_cookie(COOKIE, path=AUTH_PATH)
    client.set_cookie(COOKIE, old_cookie, path=AUTH_PATH)
    assert refresh(client, new_csrf).status_code in (401, 403)


def test_grace_answer_repeats_successor_and_csrf(client: FlaskClient, alice: User) -> None:
    """Two tabs refreshing with one cookie get the same successor cookie and csrf_token."""
    body = cookie_login(client, alice)
    old_cookie = current_cookie(client)
    first = refresh(client, body["csrf_token"])
    successor = current_cookie(client)
    client.set_cookie(COOKIE, old_cookie, path=AUTH_PATH)
    second = refresh(client, body["csrf_token"])
    assert second.status_code == 200
    assert second.json["csrf_token"] == first.json["csrf_token"]
    assert current_cookie(client) == successor


def test_logout_with_cookie_needs_csrf_and_clears_it(client: FlaskClient, alice: User) -> None:
    """Logout carrying the cookie: 403 without the header, then 204 clearing the cookie."""
    body = cookie_login(client, alice)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    denied = client.post(f"{AUTH_PATH}/logout", headers=bearer)
    assert denied.status_code == 403
    assert denied.json["code"] == "csrf_failed"
    answer = client.post(
        f"{AUTH_PATH}/logout", headers={**bearer, "X-CSRF-TOKEN": body["csrf_token"]}
    )
    assert answer.status_code == 204
    assert f"{COOKIE}=;" in answer.headers["Set-Cookie"]
    assert client.get_cookie(COOKIE, path=AUTH_PATH) is None
    assert client.get(f"{AUTH_PATH}/me", headers=bearer).json["code"] == "token_revoked"


def test_cross_site_cookie_settings(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """SameSite=None with Secure and a domain are applied to the cookie."""
    client = make_app(
        cookie_samesite="none", cookie_secure=True, cookie_domain="example.com"
    ).test_client()
    user = make_user(on=client)
    set_cookie = login(client, user.email, refresh_cookie=True).headers["Set-Cookie"]
    assert "SameSite=None" in set_cookie
    assert "Secure" in set_cookie
    assert "Domain=example.com" in set_cookie


def test_samesite_none_without_secure_is_refused() -> None:
    """The server refuses to start with SameSite=None on an insecure cookie."""
    with pytest.raises(ValidationError, match="COOKIE_SAMESITE"):
        Settings(secret_key="x" * 40, cookie_samesite="None", cookie_secure=False)


def test_production_cookies_are_secure_by_default() -> None:
    """Secure defaults to true in production."""
    production = Settings(env="production", secret_key="s" * 40, allowed_hosts="api.example.com")
    assert production.secure_cookies is True
    assert Settings(secret_key="s" * 40).secure_cookies is False


def test_concurrent_cookie_refreshes_keep_the_session(
    app: Flask, make_user: Callable[..., User]
) -> None:
    """Two tabs refresh with the same cookie at once: both succeed with the same successor."""
    user = make_user()
    tabs = [app.test_client() for _ in range(2)]
    body = cookie_login(tabs[0], user)
    cookie = current_cookie(tabs[0])
    tabs[1].set_cookie(COOKIE, cookie, path=AUTH_PATH)
    results: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = refresh(tabs[index], body["csrf_token"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [200, 200]
    assert results[0].json["csrf_token"] == results[1].json["csrf_token"]
    assert current_cookie(tabs[0]) == current_cookie(tabs[1])
    follow_up = refresh(tabs[0], results[0].json["csrf_token"])
    assert follow_up.status_code == 200


def test_password_still_required_for_login(client: FlaskClient, alice: User) -> None:
    """Cookie mode does not weaken login: a wrong password is 401 and sets no cookie."""
    answer = login(client, alice.email, PASSWORD + "x", refresh_cookie=True)
    assert answer.status_code == 401
    assert "Set-Cookie" not in answer.headers
