"""Cookie mode for browser SPAs: HttpOnly refresh cookie, CSRF header, rotation, logout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from taskapi.settings import Settings
from tests.conftest import PASSWORD, User, login
from tests.support import assert_error, cors_headers

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
    assert answer.json["csrf_token"] == body["csrf_token"]  # bound to the session
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
    assert_error(refresh(client, new_csrf), 401, "token_revoked")


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
    production = Settings(
        env="production", secret_key="s" * 40, allowed_hosts="api.example.com",
        database_url="postgresql+psycopg://db.internal/taskapi",
    )  # fmt: skip
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


# --- session restore, tabs and logout without an access token (issue 9) ----------------------


def get_csrf(client: FlaskClient, **headers: str) -> Any:
    """GET /auth/csrf with the client's cookie jar."""
    return client.get(f"{AUTH_PATH}/csrf", headers=headers)


def reloaded_page(app: Flask, cookie: str) -> FlaskClient:
    """A browser tab that holds the refresh cookie and nothing else (after a reload)."""
    tab = app.test_client()
    tab.set_cookie(COOKIE, cookie, path=AUTH_PATH)
    return tab


def test_reload_restores_the_session_from_the_cookie_alone(
    app: Flask, client: FlaskClient, alice: User
) -> None:
    """A page with only the cookie gets the csrf_token back, refreshes, and is logged in."""
    body = cookie_login(client, alice)
    tab = reloaded_page(app, current_cookie(client))
    answer = get_csrf(tab)
    assert answer.status_code == 200
    assert answer.json == {"csrf_token": body["csrf_token"]}
    assert answer.headers["Cache-Control"] == "no-store"
    refreshed = refresh(tab, answer.json["csrf_token"])
    assert refreshed.status_code == 200, refreshed.json
    token = refreshed.json["access_token"]
    me = tab.get(f"{AUTH_PATH}/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json["id"] == alice.id


def test_csrf_route_needs_a_live_refresh_cookie(
    app: Flask, client: FlaskClient, alice: User
) -> None:
    """No cookie, only a bearer access token, a non-refresh token, a revoked session: 401."""
    assert_error(get_csrf(app.test_client()), 401, "unauthorized")
    body = cookie_login(client, alice)
    cookie = current_cookie(client)
    with_bearer = get_csrf(app.test_client(), Authorization=f"Bearer {body['access_token']}")
    assert_error(with_bearer, 401, "unauthorized")
    not_refresh = reloaded_page(app, body["access_token"])  # signed by us, wrong type
    assert_error(get_csrf(not_refresh), 401, "unauthorized")
    logged_out = client.post(f"{AUTH_PATH}/logout", headers={"X-CSRF-TOKEN": body["csrf_token"]})
    assert logged_out.status_code == 204
    assert_error(get_csrf(reloaded_page(app, cookie)), 401, "token_revoked")


def test_each_session_has_its_own_csrf_value(app: Flask, alice: User) -> None:
    """Two logins are two sessions: one's csrf_token does not unlock the other's cookie."""
    first, second = app.test_client(), app.test_client()
    first_body, second_body = cookie_login(first, alice), cookie_login(second, alice)
    assert first_body["csrf_token"] != second_body["csrf_token"]
    assert_error(refresh(first, second_body["csrf_token"]), 403, "csrf_failed")
    assert refresh(first, first_body["csrf_token"]).status_code == 200


def test_two_tabs_refresh_one_after_the_other(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """Tab B keeps working after tab A refreshed (outside any grace): same cookie jar."""
    browser = make_app(refresh_grace_seconds=0).test_client()  # tabs share the cookie jar
    body = cookie_login(browser, make_user(on=browser))
    tab_a_csrf = body["csrf_token"]
    tab_b_csrf = get_csrf(browser).json["csrf_token"]  # tab B opened later
    for csrf in (tab_a_csrf, tab_b_csrf, tab_a_csrf, tab_b_csrf):
        answer = refresh(browser, csrf)
        assert answer.status_code == 200, answer.json


def test_logout_with_the_cookie_alone_after_the_access_token_expired(
    app: Flask, client: FlaskClient, alice: User
) -> None:
    """Cookie and X-CSRF-TOKEN, an expired (or no) access token: 204, session and cookie gone."""
    body = cookie_login(client, alice)
    cookie = current_cookie(client)
    expired = _expired_access_token(app, body["access_token"])
    headers = {"Authorization": f"Bearer {expired}"}
    assert_error(client.get(f"{AUTH_PATH}/me", headers=headers), 401, "token_expired")
    answer = client.post(
        f"{AUTH_PATH}/logout", headers={**headers, "X-CSRF-TOKEN": body["csrf_token"]}
    )
    assert answer.status_code == 204
    assert client.get_cookie(COOKIE, path=AUTH_PATH) is None
    assert_error(refresh(reloaded_page(app, cookie), body["csrf_token"]), 401, "token_revoked")
    live = {"Authorization": f"Bearer {body['access_token']}"}
    assert_error(client.get(f"{AUTH_PATH}/me", headers=live), 401, "token_revoked")


def test_logout_with_the_cookie_needs_the_csrf_header(app: Flask, alice: User) -> None:
    """Without an access token, the cookie alone is 403: a cross-site form cannot log you out."""
    tab = app.test_client()
    body = cookie_login(tab, alice)
    assert_error(tab.post(f"{AUTH_PATH}/logout"), 403, "csrf_failed")
    live = {"Authorization": f"Bearer {body['access_token']}"}
    assert tab.get(f"{AUTH_PATH}/me", headers=live).status_code == 200


def test_logout_ignores_a_cookie_we_did_not_sign(client: FlaskClient, alice: User) -> None:
    """A junk cookie protects nothing: the access token's session is ended, the cookie cleared."""
    client.set_cookie(COOKIE, "junk", path=AUTH_PATH)
    answer = alice.request("POST", f"{AUTH_PATH}/logout")
    assert answer.status_code == 204
    assert f"{COOKIE}=;" in answer.headers["Set-Cookie"]
    assert_error(alice.request("GET", f"{AUTH_PATH}/me"), 401, "token_revoked")


def test_csrf_answer_is_readable_only_by_allowlisted_origins(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """CORS: the allowlisted origin may read it with credentials; another origin may not."""
    allowed = "https://app.example.com"
    browser = make_app(cors_origins=allowed).test_client()
    cookie_login(browser, make_user(on=browser))
    ok = get_csrf(browser, Origin=allowed)
    assert cors_headers(ok)["Access-Control-Allow-Origin"] == allowed
    assert cors_headers(ok)["Access-Control-Allow-Credentials"] == "true"
    other = get_csrf(browser, Origin="https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in cors_headers(other)


def _expired_access_token(app: Flask, token: str) -> str:
    """The same access token re-signed with an ``exp`` in the past."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 1
    claims["nbf"] = claims["iat"] - 60
    return jwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS256")
