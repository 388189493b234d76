"""Accounts, logins, token abuse, refresh rotation and session revocation, through HTTP."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from taskapi.models import Task
from tests.conftest import PASSWORD, TEST_SECRET, User, login, unique_email
from tests.support import assert_error, bearer, engine_of, me, refresh

AUTH = "/api/v1/auth"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
OTHER_SECRET = "another-secret-key-that-is-long-enough-for-hs256-9876543210"
NEW_PASSWORD = "a brand new unguessable passphrase"
AppFactory = Callable[..., Flask]
UserFactory = Callable[..., User]


def register(client: FlaskClient, **body: Any) -> Any:
    """POST /auth/register with a fresh email unless one is given."""
    return client.post(f"{AUTH}/register", json={"email": unique_email(), **body})


def assert_401(response: Any, code: str, *, token_sent: bool = True) -> None:
    """A 401 error body with ``code`` and the RFC 6750 challenge."""
    assert_error(response, 401, code)
    challenge = response.headers.get("WWW-Authenticate")
    if token_sent:
        assert challenge is not None and challenge.startswith("Bearer")
        assert 'error="invalid_token"' in challenge
    else:
        assert challenge == "Bearer"


def b64(value: dict[str, Any]) -> str:
    """Unpadded base64url of a JSON object, as in a JWT segment."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    """The payload of one of our tokens, to forge variants of it."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


def forge(claims: dict[str, Any], key: str = TEST_SECRET) -> str:
    """An HS256 token with these claims."""
    return jwt.encode(claims, key, algorithm="HS256")


def expired(token: str) -> str:
    """A correctly signed copy of ``token`` whose ``exp`` has passed."""
    now = int(time.time())
    return forge({**claims_of(token), "iat": now - 600, "nbf": now - 600, "exp": now - 60})


def tamper_signature(token: str) -> str:
    """Change the first signature character (it always carries 6 significant bits)."""
    head, body, sig = token.split(".")
    return f"{head}.{body}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"


def tamper_payload(token: str) -> str:
    """Swap the subject but keep the original signature."""
    head, _, sig = token.split(".")
    return f"{head}.{b64({**claims_of(token), 'sub': str(uuid.uuid4())})}.{sig}"


def alg_none(token: str) -> str:
    """The same claims, unsigned, with ``alg: none``."""
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_of(token))}."


def orphan(token: str) -> str:
    """A correctly signed token of a session that never existed."""
    return forge({**claims_of(token), "sid": str(uuid.uuid4())})


# kind -> (Authorization value from (right token, token of the other type), expected code)
BAD_TOKENS: dict[str, tuple[Callable[[str, str], str | None], str]] = {
    "missing": (lambda r, w: None, "unauthorized"),
    "garbage": (lambda r, w: "Bearer abc", "unauthorized"),
    "scheme only": (lambda r, w: "Bearer", "unauthorized"),
    "tampered signature": (lambda r, w: f"Bearer {tamper_signature(r)}", "unauthorized"),
    "tampered payload": (lambda r, w: f"Bearer {tamper_payload(r)}", "unauthorized"),
    "alg none": (lambda r, w: f"Bearer {alg_none(r)}", "unauthorized"),
    "other key": (lambda r, w: f"Bearer {forge(claims_of(r), OTHER_SECRET)}", "unauthorized"),
    "wrong type": (lambda r, w: f"Bearer {w}", "unauthorized"),
    "expired": (lambda r, w: f"Bearer {expired(r)}", "token_expired"),
    "unknown session": (lambda r, w: f"Bearer {orphan(r)}", "token_revoked"),
}
TARGETS = [("GET", "/api/v1/tasks", "access"), ("GET", f"{AUTH}/me", "access"),
           ("POST", f"{AUTH}/refresh", "refresh")]  # fmt: skip


# --- register --------------------------------------------------------------------------------


def test_register_returns_user_with_normalised_email(client: FlaskClient) -> None:
    """201 with exactly {id, email, name, created_at}; the email is trimmed and lower-cased."""
    email = unique_email("MiXeD").upper()
    response = client.post(f"{AUTH}/register", json={"email": f"  {email} ", "password": PASSWORD})
    assert response.status_code == 201
    user = response.json
    assert set(user) == {"id", "email", "name", "created_at", "email_verified"}
    assert user["email_verified"] is False
    assert uuid.UUID(user["id"]) and user["email"] == email.lower() and user["name"] == ""
    assert TIMESTAMP.match(user["created_at"])
    assert login(client, email.lower()).json["user"] == user
    assert login(client, f" {email} ").status_code == 200


def test_register_duplicate_email_in_other_case_is_409(client: FlaskClient) -> None:
    """The same address in another case is taken."""
    email = unique_email()
    assert register(client, email=email, password=PASSWORD).status_code == 201
    again = register(client, email=f" {email.upper()}", password=PASSWORD)
    assert again.status_code == 409 and again.json["code"] == "email_taken"


INVALID_REGISTRATIONS = [
    ({"password": "x7chars"}, "password"), ({"password": "y" * 129}, "password"),
    ({"password": "password123"}, "password"), ({"password": "PassWord123"}, "password"),
    ({"password": 12345678}, "password"), ({}, "password"),
    ({"password": PASSWORD, "name": "n" * 101}, "name"),
    ({"password": PASSWORD, "name": None}, "name"), ({"password": PASSWORD, "name": 7}, "name"),
    ({"password": PASSWORD, "email": "a" * 243 + "@example.com"}, "email"),
    ({"password": PASSWORD, "email": "not-an-email"}, "email"),
    ({"password": PASSWORD, "email": 5}, "email"),
    ({"password": PASSWORD, "admin": True}, "admin"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), INVALID_REGISTRATIONS)
def test_register_rejects_invalid_fields(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    """Out-of-range, common, mistyped, unknown or missing fields are 400 validation_error."""
    response = register(client, **body)
    assert response.status_code == 400, response.json
    assert response.json["code"] == "validation_error"
    assert field in {d["field"] for d in response.json["details"]}


# --- login -----------------------------------------------------------------------------------


def test_login_answer_shape(alice: User) -> None:
    """200 {access_token, refresh_token, token_type: Bearer, expires_in, user}."""
    answer = login(alice.client, alice.email)
    assert answer.status_code == 200
    body = answer.json
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["user"]["id"] == alice.id and body["user"]["email"] == alice.email
    assert me(alice.client, body["access_token"]).json == body["user"]


def test_wrong_password_and_unknown_email_look_identical(alice: User) -> None:
    """Both are 401 invalid_credentials with the same body."""
    wrong = login(alice.client, alice.email, "not the password at all")
    unknown = login(alice.client, unique_email(), alice.password)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json and wrong.json["code"] == "invalid_credentials"


def test_every_character_of_a_long_password_counts(make_user: UserFactory) -> None:
    """Passwords sharing their first 72 bytes must not both verify."""
    password = ("Zq9!" * 18) + "-the-tail-that-bcrypt-would-drop"[:28]
    user = make_user(password=password)
    assert len(password) == 100
    assert login(user.client, user.email, password[:72] + "x" * 28).status_code == 401
    assert login(user.client, user.email, password[:72]).status_code == 401
    assert login(user.client, user.email, password).status_code == 200


def test_multibyte_password_of_128_characters(client: FlaskClient) -> None:
    """A 256-byte password works, a near miss fails, and 129 characters is a 400, never a 500."""
    email, password = unique_email(), "é" * 128
    assert register(client, email=email, password=password).status_code == 201
    assert login(client, email, password).status_code == 200
    assert login(client, email, "é" * 127 + "e").status_code == 401
    assert login(client, email, "é" * 129).status_code == 400
    assert register(client, password="é" * 129).status_code == 400


# --- /auth/me --------------------------------------------------------------------------------


def test_get_and_patch_me(alice: User, bob: User) -> None:
    """GET returns the user; PATCH changes the name and only for this user."""
    assert alice.request("GET", f"{AUTH}/me").json["name"] == "Alice"
    patched = alice.request("PATCH", f"{AUTH}/me", json={"name": "Alicia"})
    assert patched.status_code == 200
    assert patched.json == {**alice.request("GET", f"{AUTH}/me").json, "name": "Alicia"}
    assert bob.request("GET", f"{AUTH}/me").json["name"] == "Bob"


def test_patch_me_accepts_merge_patch(alice: User) -> None:
    """PATCH accepts application/merge-patch+json, as API.md says for every PATCH."""
    response = alice.request("PATCH", f"{AUTH}/me", data=json.dumps({"name": "Al"}),
                             content_type="application/merge-patch+json")  # fmt: skip
    assert response.status_code == 200, response.json
    assert response.json["name"] == "Al"


# --- token abuse -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "kind"), TARGETS)
@pytest.mark.parametrize("abuse", list(BAD_TOKENS))
def test_bad_tokens_are_refused(alice: User, method: str, path: str, kind: str, abuse: str) -> None:
    """Missing, malformed, forged, wrong-type, expired and orphan tokens get the right 401."""
    right, wrong = alice.access_token, alice.refresh_token
    if kind == "refresh":
        right, wrong = wrong, right
    build, code = BAD_TOKENS[abuse]
    header = build(right, wrong)
    headers = {} if header is None else {"Authorization": header}
    response = alice.client.open(path, method=method, headers=headers)
    assert_401(response, code, token_sent=header is not None)
    assert response.is_json and set(response.json) == {"error", "code"}


def test_access_token_really_expires(make_app: AppFactory, make_user: UserFactory) -> None:
    """With a 1-second lifetime the access token is refused as token_expired soon after."""
    user = make_user(on=make_app(access_token_seconds=1).test_client())
    answer = login(user.client, user.email)
    assert answer.json["expires_in"] == 1
    assert me(user.client, answer.json["access_token"]).status_code == 200
    time.sleep(2.1)
    assert_401(me(user.client, answer.json["access_token"]), "token_expired")
    assert refresh(user.client, answer.json["refresh_token"]).status_code == 200


# --- refresh rotation ------------------------------------------------------------------------


def test_refresh_rotates(alice: User) -> None:
    """200 with a fresh access token and a new refresh token; both work."""
    answer = refresh(alice.client, alice.refresh_token)
    assert answer.status_code == 200
    body = answer.json
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["refresh_token"] != alice.refresh_token
    assert me(alice.client, body["access_token"]).status_code == 200
    assert refresh(alice.client, body["refresh_token"]).status_code == 200


def test_reuse_after_grace_revokes_the_session(
    make_app: AppFactory, make_user: UserFactory
) -> None:
    """A reused refresh token is 401 token_revoked and kills every token of its session."""
    user = make_user(on=make_app(refresh_grace_seconds=0).test_client())
    successor = refresh(user.client, user.refresh_token).json
    assert_401(refresh(user.client, user.refresh_token), "token_revoked")
    assert_401(refresh(user.client, successor["refresh_token"]), "token_revoked")
    assert_401(me(user.client, successor["access_token"]), "token_revoked")
    assert_401(me(user.client, user.access_token), "token_revoked")
    assert login(user.client, user.email).status_code == 200


def test_reuse_within_grace_answers_the_same_successor(alice: User) -> None:
    """Within the grace the old token gets 200 and the same successor; the session lives on."""
    first = refresh(alice.client, alice.refresh_token).json
    second = refresh(alice.client, alice.refresh_token)
    assert second.status_code == 200
    assert second.json["refresh_token"] == first["refresh_token"]
    assert me(alice.client, second.json["access_token"]).status_code == 200
    assert refresh(alice.client, first["refresh_token"]).status_code == 200


def test_token_two_rotations_old_is_reuse_even_within_grace(alice: User) -> None:
    """The grace covers only the token just replaced; an older one revokes the session."""
    first = refresh(alice.client, alice.refresh_token).json
    second = refresh(alice.client, first["refresh_token"]).json
    assert_401(refresh(alice.client, alice.refresh_token), "token_revoked")
    assert_401(me(alice.client, second["access_token"]), "token_revoked")


def concurrent_refreshes(app: Flask, token: str) -> list[Any]:
    """Two tabs present one refresh token at the same moment."""
    barrier, answers = threading.Barrier(2), []

    def tab() -> None:
        http = app.test_client()
        barrier.wait()
        answers.append(refresh(http, token))

    threads = [threading.Thread(target=tab) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_concurrent_refreshes_share_one_successor(app: Flask, alice: User) -> None:
    """Two tabs refreshing one token at once both get 200 and the same successor."""
    answers = concurrent_refreshes(app, alice.refresh_token)
    assert [a.status_code for a in answers] == [200, 200], [a.json for a in answers]
    assert answers[0].json["refresh_token"] == answers[1].json["refresh_token"]
    assert me(alice.client, answers[1].json["access_token"]).status_code == 200
    assert refresh(alice.client, answers[0].json["refresh_token"]).status_code == 200


def test_concurrent_refreshes_without_grace_revoke_the_session(
    make_app: AppFactory, make_user: UserFactory
) -> None:
    """With no grace, the second of two simultaneous uses is reuse: the session ends."""
    app = make_app(refresh_grace_seconds=0)
    user = make_user(on=app.test_client())
    answers = concurrent_refreshes(app, user.refresh_token)
    assert sorted(a.status_code for a in answers) == [200, 401]
    winner = next(a for a in answers if a.status_code == 200)
    loser = next(a for a in answers if a.status_code == 401)
    assert loser.json["code"] == "token_revoked"
    assert_401(me(user.client, winner.json["access_token"]), "token_revoked")
    assert_401(refresh(user.client, winner.json["refresh_token"]), "token_revoked")


# --- logout and sessions ---------------------------------------------------------------------


def test_logout_revokes_this_session_at_once(alice: User) -> None:
    """204; the access and refresh tokens of the session fail with token_revoked."""
    other = login(alice.client, alice.email).json
    assert alice.request("POST", f"{AUTH}/logout").status_code == 204
    assert_401(me(alice.client, alice.access_token), "token_revoked")
    assert_401(refresh(alice.client, alice.refresh_token), "token_revoked")
    assert_401(alice.request("POST", f"{AUTH}/logout"), "token_revoked")
    assert me(alice.client, other["access_token"]).status_code == 200


def test_logout_all_revokes_every_session_of_the_user_only(alice: User, bob: User) -> None:
    """Every session of Alice ends; Bob's does not."""
    second = login(alice.client, alice.email).json
    assert alice.request("POST", f"{AUTH}/logout-all").status_code == 204
    for access, refresh_token in [(alice.access_token, alice.refresh_token),
                                  (second["access_token"], second["refresh_token"])]:  # fmt: skip
        assert_401(me(alice.client, access), "token_revoked")
        assert_401(refresh(alice.client, refresh_token), "token_revoked")
    assert bob.request("GET", f"{AUTH}/me").status_code == 200
    assert refresh(bob.client, bob.refresh_token).status_code == 200


def _login_from(user: User, device: str) -> dict[str, Any]:
    """Log ``user`` in again with a recognisable User-Agent."""
    body = {"email": user.email, "password": user.password}
    answer = user.client.post(f"{AUTH}/login", json=body, headers={"User-Agent": device})
    assert answer.status_code == 200
    return answer.json  # type: ignore[no-any-return]


def _sessions(user: User, token: str) -> list[dict[str, Any]]:
    """The session list as seen with ``token``."""
    answer = user.client.get(f"{AUTH}/sessions", headers=bearer(token))
    assert answer.status_code == 200 and answer.json["next_cursor"] is None
    return answer.json["items"]  # type: ignore[no-any-return]


def test_sessions_list_marks_the_current_one(alice: User, bob: User) -> None:
    """Every live session of the user is listed once; exactly the caller's is current."""
    _login_from(alice, "device-a")
    b = _login_from(alice, "device-b")
    items = _sessions(alice, b["access_token"])
    assert len(items) == 3
    for item in items:
        assert set(item) == {"id", "created_at", "last_used_at", "user_agent", "current"}
        assert TIMESTAMP.match(item["created_at"]) and TIMESTAMP.match(item["last_used_at"])
    assert [i["user_agent"] for i in items if i["current"]] == ["device-b"]
    bob_ids = {i["id"] for i in _sessions(bob, bob.access_token)}
    assert len(bob_ids) == 1 and not bob_ids & {i["id"] for i in items}


def test_delete_session(alice: User, bob: User) -> None:
    """Another user's session is 404; one's own is 204 and its tokens fail at once."""
    a = _login_from(alice, "device-a")
    mine = _sessions(alice, alice.access_token)
    target = next(i["id"] for i in mine if i["user_agent"] == "device-a")
    for path in (f"{AUTH}/sessions/{target}", f"{AUTH}/sessions/not-a-uuid",
                 f"{AUTH}/sessions/{uuid.uuid4()}"):  # fmt: skip
        answer = bob.request("DELETE", path)
        assert answer.status_code == 404 and answer.json["code"] == "not_found"
    assert me(alice.client, a["access_token"]).status_code == 200
    assert alice.request("DELETE", f"{AUTH}/sessions/{target}").status_code == 204
    assert_401(me(alice.client, a["access_token"]), "token_revoked")
    assert_401(refresh(alice.client, a["refresh_token"]), "token_revoked")
    assert alice.request("DELETE", f"{AUTH}/sessions/{target}").status_code == 404
    assert alice.request("GET", f"{AUTH}/me").status_code == 200
    assert target not in {i["id"] for i in _sessions(alice, alice.access_token)}


# --- password change and account deletion ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"{AUTH}/password", {"current_password": "wrong!", "new_password": NEW_PASSWORD}),
        ("DELETE", f"{AUTH}/me", {"password": "wrong!"}),
    ],
)
def test_wrong_current_password_is_403(
    alice: User, method: str, path: str, body: dict[str, Any]
) -> None:
    """403 invalid_credentials without a challenge (the token is fine); nothing changes."""
    response = alice.request(method, path, json=body)
    assert response.status_code == 403 and response.json["code"] == "invalid_credentials"
    assert "WWW-Authenticate" not in response.headers
    assert alice.request("GET", f"{AUTH}/me").status_code == 200
    assert login(alice.client, alice.email).status_code == 200


def test_password_change(alice: User, bob: User) -> None:
    """204; other sessions end, this one lives, only the new password logs in."""
    other = login(alice.client, alice.email).json
    body = {"current_password": alice.password, "new_password": NEW_PASSWORD}
    assert alice.request("POST", f"{AUTH}/password", json=body).status_code == 204
    assert_401(me(alice.client, other["access_token"]), "token_revoked")
    assert_401(refresh(alice.client, other["refresh_token"]), "token_revoked")
    assert alice.request("GET", f"{AUTH}/me").status_code == 200
    assert refresh(alice.client, alice.refresh_token).status_code == 200
    assert login(alice.client, alice.email).json["code"] == "invalid_credentials"
    assert login(alice.client, alice.email, NEW_PASSWORD).status_code == 200
    assert bob.request("GET", f"{AUTH}/me").status_code == 200


def test_delete_account(app: Flask, alice: User, bob: User) -> None:
    """204; the tokens fail, the tasks are gone, and the email can register again."""
    alice.create_task(title="mine")
    bob_task = bob.create_task(title="bob's")
    response = alice.request("DELETE", f"{AUTH}/me", json={"password": alice.password})
    assert response.status_code == 204
    assert_401(me(alice.client, alice.access_token), "token_revoked")
    assert refresh(alice.client, alice.refresh_token).status_code == 401
    assert login(alice.client, alice.email).json["code"] == "invalid_credentials"
    with DbSession(engine_of(app)) as db:
        owned = select(func.count()).select_from(Task).where(Task.owner_id == uuid.UUID(alice.id))
        assert db.scalar(owned) == 0
    again = register(alice.client, email=alice.email, password=PASSWORD)
    assert again.status_code == 201 and again.json["id"] != alice.id
    fresh = bearer(login(alice.client, alice.email).json["access_token"])
    assert alice.client.get("/api/v1/tasks", headers=fresh).json["items"] == []
    assert bob.request("GET", f"/api/v1/tasks/{bob_task['id']}").status_code == 200


CURRENT = "<the current password>"
BAD_ACCOUNT_BODIES = [
    ("PATCH", "me", {"name": "n" * 101}), ("PATCH", "me", {"name": 5}),
    ("PATCH", "me", {"name": None}), ("PATCH", "me", {}), ("PATCH", "me", {"x": 1}),
    ("POST", "password", {"new_password": NEW_PASSWORD}),
    ("POST", "password", {"current_password": CURRENT, "new_password": "short"}),
    ("POST", "password", {"current_password": CURRENT, "new_password": "p" * 129}),
    ("POST", "password", {"current_password": CURRENT, "new_password": "password123"}),
    ("POST", "password", {"current_password": CURRENT, "new_password": 12345678}),
    ("DELETE", "me", {}), ("DELETE", "me", {"password": 5}),
    ("DELETE", "me", {"password": CURRENT, "extra": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "endpoint", "body"), BAD_ACCOUNT_BODIES)
def test_account_changes_validate_their_bodies(
    alice: User, method: str, endpoint: str, body: dict[str, Any]
) -> None:
    """Bad names, weak passwords, mistyped, missing or unknown fields are 400; nothing changes."""
    body = {k: alice.password if v == CURRENT else v for k, v in body.items()}
    response = alice.request(method, f"{AUTH}/{endpoint}", json=body)
    assert response.status_code == 400 and response.json["code"] == "validation_error"
    assert alice.request("GET", f"{AUTH}/me").json["name"] == "Alice"
    assert login(alice.client, alice.email).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"password": "short"}, "password", "String should have at least 8 characters"),
        ({"name": "x" * 101}, "name", "String should have at most 100 characters"),
    ],
)
def test_length_errors_speak_of_characters(
    client: FlaskClient, body: dict[str, str], field: str, message: str
) -> None:
    """A person reads "characters", not pydantic's "items" for a generic sequence."""
    sent = {"email": unique_email(), "password": "a long passphrase", **body}
    details = assert_error(client.post(f"{AUTH}/register", json=sent), 400, "validation_error")
    assert details["details"] == [{"field": field, "message": message}]
