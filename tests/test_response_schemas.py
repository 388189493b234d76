"""Every documented operation answers as the served OpenAPI document says it does.

The document is fetched from the app. ``CALLS`` exercises each of its operations with real
tokens, on success and error paths, each in a fresh ``Scene``. Every response must have a
status the document lists for that operation, and a body valid against the schema declared
for that status and content type (OpenAPI 3.1 schemas are JSON Schema 2020-12; ``$ref``s are
resolved into the document through a ``referencing`` registry). Finally, every operation of
the document must have been exercised, with at least one success and one error.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from taskapi.models import OutboxMessage
from tests.conftest import PASSWORD, User, login, unique_email
from tests.support import AUTH, TASKS, bearer, engine_of

DOC_URL = "/api/v1/openapi.json"
DOC_URI = "https://taskapi.test/openapi.json"
DOWN_URL = "postgresql+psycopg://nobody@127.0.0.1:1/down"  # nothing listens on port 1
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
NEW_PASSWORD = "a brand new unguessable passphrase"
TASK = {
    "title": "Water the plants",
    "notes": "The fern needs less than the others.",
    "priority": "medium",
    "tags": ["home", "weekly"],
    "due_at": "2030-05-01T09:00:00+02:00",
}
FORMATS = FormatChecker()
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)


@FORMATS.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def is_date_time(value: object) -> bool:
    """RFC 3339 (jsonschema checks ``date-time`` only with an optional package installed)."""
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value)
    return RFC3339.fullmatch(value) is not None


# --- what one call needs ---------------------------------------------------------------------


class Scene:
    """Users, tasks and clients for one call, made through HTTP on first use."""

    def __init__(
        self, app: Flask, make_app: Callable[..., Flask], make_user: Callable[..., User]
    ) -> None:
        self.app, self._make_app, self._make_user = app, make_app, make_user
        self.http = app.test_client()

    @cached_property
    def user(self) -> User:
        """A registered user, logged in (body mode) on ``http``."""
        return self._make_user("Ada", on=self.http)

    @cached_property
    def stranger(self) -> User:
        """Another user, on another client."""
        return self._make_user("Bob", on=self.app.test_client())

    def _token(self, *scopes: str) -> dict[str, Any]:
        """A personal token of the user with these scopes (the create answer)."""
        made = self.user.request(
            "POST", f"{AUTH}/tokens", json={"name": "t", "scopes": list(scopes)}
        )
        assert made.status_code == 201, made.get_data()
        return dict(made.json)

    @cached_property
    def personal_token(self) -> str:
        """The secret of a personal token with every scope."""
        return str(self._token("tasks:read", "tasks:write", "lists:read", "lists:write")["token"])

    @cached_property
    def personal_token_id(self) -> str:
        """The id of a personal token of the user."""
        return str(self._token("tasks:read")["id"])

    @cached_property
    def lists_only_token(self) -> str:
        """The secret of a personal token that may only read lists."""
        return str(self._token("lists:read")["token"])

    @cached_property
    def a_list(self) -> dict[str, Any]:
        """One of the user's lists (not the inbox)."""
        made = self.user.request("POST", "/api/v1/lists", json={"title": "Errands"})
        assert made.status_code == 201, made.get_data()
        return dict(made.json)

    @property
    def list_path(self) -> str:
        """The URL of ``a_list``."""
        return f"/api/v1/lists/{self.a_list['id']}"

    @cached_property
    def inbox(self) -> dict[str, Any]:
        """The user's inbox."""
        items = self.user.request("GET", "/api/v1/lists").json["items"]
        return dict(next(item for item in items if item["inbox"]))

    @cached_property
    def strangers_list(self) -> dict[str, Any]:
        """A list of another user."""
        made = self.stranger.request("POST", "/api/v1/lists", json={"title": "Bob's"})
        assert made.status_code == 201, made.get_data()
        return dict(made.json)

    @cached_property
    def task(self) -> dict[str, Any]:
        """One of the user's tasks."""
        return self.user.create_task(**TASK)

    @property
    def task_path(self) -> str:
        """The URL of ``task``."""
        return f"{TASKS}/{self.task['id']}"

    @property
    def stale(self) -> dict[str, str]:
        """An If-Match naming a version ``task`` does not have."""
        return {"If-Match": f'"{self.task["version"] + 1}"'}

    @cached_property
    def csrf(self) -> str:
        """Log the user in once more in cookie mode on ``http``; the csrf_token."""
        answer = login(self.http, self.user.email, refresh_cookie=True)
        assert answer.status_code == 200, answer.json
        return str(answer.json["csrf_token"])

    def with_cookie(self) -> Scene:
        """This scene after a cookie-mode login on ``http`` (the refresh cookie is set)."""
        assert self.csrf
        return self

    def reset_token(self) -> str:
        """Ask for a password reset for the user; the token of its mail."""
        asked = self.http.post(f"{AUTH}/password-reset", json={"email": self.user.email})
        assert asked.status_code == 202
        return self.emailed_token("password_reset")

    def emailed_token(self, kind: str, to: str | None = None) -> str:
        """The token of the newest queued ``kind`` message to ``to`` (the user by default)."""
        outbox = OutboxMessage.__table__.c
        query = (
            select(outbox.body_text)
            .where(outbox.kind == kind, outbox.recipient == (to or self.user.email))
            .order_by(outbox.created_at.desc())
            .limit(1)
        )
        with engine_of(self.app).connect() as connection:
            text = connection.execute(query).scalar_one()
        return text.split("token=")[1].split()[0]

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request with the user's access token."""
        return self.user.request(method, path, **kwargs)

    def session_ids(self, user: User, *, current: bool) -> list[str]:
        """The ids of the user's current session, or of the others."""
        items = user.request("GET", f"{AUTH}/sessions").json["items"]
        return [item["id"] for item in items if item["current"] is current]

    def create(self, body: dict[str, Any], key: str | None = None) -> Any:
        """POST /tasks, with an Idempotency-Key when given."""
        headers = {"Idempotency-Key": key} if key else {}
        return self.send("POST", TASKS, json=body, headers=headers)

    def client_of(self, **settings: Any) -> FlaskClient:
        """A client of another app on the same database (or none), built with ``settings``."""
        return self._make_app(**settings).test_client()


# --- calls that take more than one request ---------------------------------------------------


def second_session_ended(s: Scene) -> Any:
    """Log in again and end that other session by its id."""
    assert login(s.http, s.user.email).status_code == 200
    (other,) = s.session_ids(s.user, current=False)
    return s.send("DELETE", f"{AUTH}/sessions/{other}")


def strangers_session_ended(s: Scene) -> Any:
    """Try to end another user's session."""
    (theirs,) = s.session_ids(s.stranger, current=True)
    return s.send("DELETE", f"{AUTH}/sessions/{theirs}")


def me_after_logout(s: Scene) -> Any:
    """GET /auth/me with the access token of a session that was logged out."""
    assert s.send("POST", f"{AUTH}/logout").status_code == 204
    return s.send("GET", f"{AUTH}/me")


def replayed(s: Scene) -> Any:
    """The same keyed POST twice; the second answer is the replay."""
    s.create(TASK, key="plants-weekly")
    again = s.create(TASK, key="plants-weekly")
    assert again.headers.get("Idempotent-Replayed") == "true"
    return again


def key_conflict(s: Scene) -> Any:
    """A key used again with another body."""
    s.create(TASK, key="plants-weekly")
    return s.create({**TASK, "priority": "high"}, key="plants-weekly")


def first_page_of_two(s: Scene) -> Any:
    """Two tasks, one per page: a next_cursor and a Link."""
    s.create({"title": "Book the dentist"})
    s.create({"title": "Renew the passport"})
    page = s.send("GET", f"{TASKS}?limit=1&sort=title")
    assert page.json["next_cursor"] and "Link" in page.headers, page.json
    return page


def filtered(s: Scene) -> Any:
    """A listing with every filter and a sort, finding the one task."""
    assert s.task
    query = {"completed": "false", "priority": "medium", "tag": "home", "q": "PLANTS",
             "due_after": "2030-01-01T00:00:00Z", "sort": "-due_at"}  # fmt: skip
    answer = s.send("GET", TASKS, query_string=query)
    assert [task["id"] for task in answer.json["items"]] == [s.task["id"]], answer.json
    return answer


def completed_cleared(s: Scene) -> Any:
    """Clear the completed tasks, one of two."""
    s.create({"title": "Done already", "completed": True})
    s.create({"title": "Still to do"})
    return s.send("DELETE", f"{TASKS}?completed=true")


def changes_with_a_deletion(s: Scene) -> Any:
    """Delta sync from the beginning, after an update and a deletion."""
    s.send("PATCH", s.task_path, json={"completed": True})
    gone = s.create({"title": "Cancelled errand"}).json
    s.send("DELETE", f"{TASKS}/{gone['id']}")
    page = s.send("GET", f"{TASKS}/changes?limit=10")
    assert {change["deleted"] for change in page.json["changes"]} == {True, False}, page.json
    return page


def changes_since_a_token(s: Scene) -> Any:
    """Delta sync from a token after one more change."""
    token = s.send("GET", f"{TASKS}/changes").json["next"]
    s.create({"title": "Call the plumber"})
    return s.send("GET", f"{TASKS}/changes", query_string={"since": token})


def not_modified(s: Scene) -> Any:
    """GET with If-None-Match naming the current ETag."""
    etag = s.send("GET", s.task_path).headers["ETag"]
    return s.send("GET", s.task_path, headers={"If-None-Match": etag})


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One exercised operation: ``"METHOD /documented/{path}"``, the status it must get, why."""

    operation: str
    status: int
    situation: str
    send: Callable[[Scene], Any]

    def __str__(self) -> str:
        return f"{self.operation} -> {self.status} ({self.situation})"


PLAIN = {"data": "title=Water the plants", "content_type": "text/plain"}
MERGE_PATCH = "application/merge-patch+json"
ME = f"{AUTH}/me"
A_SESSION, A_TASK = f"{AUTH}/sessions/{{session_id}}", f"{TASKS}/{{task_id}}"
LISTS = "/api/v1/lists"
A_LIST = f"{LISTS}/{{list_id}}"

CALLS = [
    # health and documentation
    Call("GET /api/health", 200, "alive", lambda s: s.http.get("/api/health")),
    Call("GET /api/health", 400, "unknown parameter", lambda s: s.http.get("/api/health?v=1")),
    Call("GET /api/ready", 200, "database up", lambda s: s.http.get("/api/ready")),
    Call("GET /api/ready", 503, "database down",
         lambda s: s.client_of(database_url=DOWN_URL).get("/api/ready")),
    Call(f"GET {DOC_URL}", 200, "the document", lambda s: s.http.get(DOC_URL)),
    Call(f"GET {DOC_URL}", 400, "unknown parameter", lambda s: s.http.get(f"{DOC_URL}?as=yaml")),
    Call("GET /api/docs", 200, "the page", lambda s: s.http.get("/api/docs")),
    Call("GET /api/docs", 400, "unknown parameter", lambda s: s.http.get("/api/docs?theme=dark")),
    # accounts and tokens
    Call(f"POST {AUTH}/register", 201, "new account", lambda s: s.http.post(
        f"{AUTH}/register", json={"email": unique_email(), "password": PASSWORD, "name": "Grace"})),
    Call(f"POST {AUTH}/register", 409, "email taken", lambda s: s.http.post(
        f"{AUTH}/register", json={"email": s.user.email, "password": PASSWORD})),
    Call(f"POST {AUTH}/register", 400, "short password", lambda s: s.http.post(
        f"{AUTH}/register", json={"email": unique_email(), "password": "short"})),
    Call(f"POST {AUTH}/register", 415, "text/plain", lambda s: s.http.post(
        f"{AUTH}/register", **PLAIN)),
    Call(f"POST {AUTH}/login", 200, "body mode", lambda s: login(s.http, s.user.email)),
    Call(f"POST {AUTH}/login", 200, "cookie mode",
         lambda s: login(s.http, s.user.email, refresh_cookie=True)),
    Call(f"POST {AUTH}/login", 401, "wrong password",
         lambda s: login(s.http, s.user.email, "not the password")),
    Call(f"POST {AUTH}/login", 400, "string for a boolean",
         lambda s: login(s.http, s.user.email, refresh_cookie="true")),
    Call(f"POST {AUTH}/refresh", 200, "body mode", lambda s: s.http.post(
        f"{AUTH}/refresh", headers=bearer(s.user.refresh_token))),
    Call(f"POST {AUTH}/refresh", 200, "cookie mode", lambda s: s.http.post(
        f"{AUTH}/refresh", headers={"X-CSRF-TOKEN": s.csrf})),
    Call(f"POST {AUTH}/refresh", 401, "access token", lambda s: s.http.post(
        f"{AUTH}/refresh", headers=bearer(s.user.access_token))),
    Call(f"POST {AUTH}/refresh", 403, "cookie without X-CSRF-TOKEN",
         lambda s: s.with_cookie().http.post(f"{AUTH}/refresh")),
    Call(f"GET {AUTH}/csrf", 200, "refresh cookie",
         lambda s: s.with_cookie().http.get(f"{AUTH}/csrf")),
    Call(f"GET {AUTH}/csrf", 401, "no cookie", lambda s: s.send("GET", f"{AUTH}/csrf")),
    Call(f"POST {AUTH}/logout", 204, "cookie and X-CSRF-TOKEN, no access token",
         lambda s: s.http.post(f"{AUTH}/logout", headers={"X-CSRF-TOKEN": s.csrf})),
    Call(f"POST {AUTH}/logout", 204, "access token", lambda s: s.send("POST", f"{AUTH}/logout")),
    Call(f"POST {AUTH}/logout", 401, "no token", lambda s: s.http.post(f"{AUTH}/logout")),
    Call(f"POST {AUTH}/logout", 403, "cookie without X-CSRF-TOKEN",
         lambda s: s.with_cookie().send("POST", f"{AUTH}/logout")),
    Call(f"POST {AUTH}/password-reset", 202, "an address with an account",
         lambda s: s.http.post(f"{AUTH}/password-reset", json={"email": s.user.email})),
    Call(f"POST {AUTH}/password-reset", 400, "not an address",
         lambda s: s.http.post(f"{AUTH}/password-reset", json={"email": "nobody"})),
    Call(f"POST {AUTH}/password-reset/confirm", 204, "the emailed token", lambda s: s.http.post(
        f"{AUTH}/password-reset/confirm",
        json={"token": s.reset_token(), "new_password": "another passphrase 9"})),
    Call(f"POST {AUTH}/password-reset/confirm", 400, "unknown token", lambda s: s.http.post(
        f"{AUTH}/password-reset/confirm", json={"token": "x" * 43,
                                                 "new_password": "another passphrase 9"})),
    Call(f"POST {AUTH}/verify-email", 204, "the registration's token", lambda s: s.http.post(
        f"{AUTH}/verify-email", json={"token": s.emailed_token("verify_email")})),
    Call(f"POST {AUTH}/verify-email", 400, "unknown token",
         lambda s: s.http.post(f"{AUTH}/verify-email", json={"token": "x" * 43})),
    Call(f"POST {AUTH}/verify-email/resend", 202, "unverified user",
         lambda s: s.send("POST", f"{AUTH}/verify-email/resend")),
    Call(f"POST {AUTH}/verify-email/resend", 401, "no token",
         lambda s: s.http.post(f"{AUTH}/verify-email/resend")),
    Call(f"POST {AUTH}/email", 202, "a free address", lambda s: s.send(
        "POST", f"{AUTH}/email", json={"new_email": unique_email(), "password": PASSWORD})),
    Call(f"POST {AUTH}/email", 403, "wrong password", lambda s: s.send(
        "POST", f"{AUTH}/email", json={"new_email": unique_email(), "password": "wrong one"})),
    Call(f"POST {AUTH}/email", 409, "taken", lambda s: s.send(
        "POST", f"{AUTH}/email", json={"new_email": s.stranger.email, "password": PASSWORD})),
    Call(f"POST {AUTH}/logout-all", 204, "access token",
         lambda s: s.send("POST", f"{AUTH}/logout-all")),
    Call(f"POST {AUTH}/logout-all", 401, "refresh token", lambda s: s.http.post(
        f"{AUTH}/logout-all", headers=bearer(s.user.refresh_token))),
    Call(f"GET {ME}", 200, "access token", lambda s: s.send("GET", ME)),
    Call(f"GET {ME}", 401, "session logged out", me_after_logout),
    Call(f"PATCH {ME}", 200, "JSON", lambda s: s.send("PATCH", ME, json={"name": "Ada L."})),
    Call(f"PATCH {ME}", 200, "merge patch", lambda s: s.send(
        "PATCH", ME, data=json.dumps({"name": "Ada"}), content_type=MERGE_PATCH)),
    Call(f"PATCH {ME}", 400, "name too long",
         lambda s: s.send("PATCH", ME, json={"name": "x" * 101})),
    Call(f"PATCH {ME}", 415, "text/plain", lambda s: s.send("PATCH", ME, **PLAIN)),
    Call(f"DELETE {ME}", 204, "right password",
         lambda s: s.send("DELETE", ME, json={"password": PASSWORD})),
    Call(f"DELETE {ME}", 400, "no password", lambda s: s.send("DELETE", ME, json={})),
    Call(f"POST {AUTH}/password", 204, "new password", lambda s: s.send(
        "POST", f"{AUTH}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
    Call(f"POST {AUTH}/password", 400, "new one too short", lambda s: s.send(
        "POST", f"{AUTH}/password", json={"current_password": PASSWORD, "new_password": "short"})),
    Call(f"GET {AUTH}/sessions", 200, "access token", lambda s: s.send("GET", f"{AUTH}/sessions")),
    Call(f"GET {AUTH}/sessions", 401, "no token", lambda s: s.http.get(f"{AUTH}/sessions")),
    Call(f"DELETE {A_SESSION}", 204, "my other session", second_session_ended),
    Call(f"DELETE {A_SESSION}", 404, "someone else's", strangers_session_ended),
    Call(f"DELETE {A_SESSION}", 404, "not a UUID",
         lambda s: s.send("DELETE", f"{AUTH}/sessions/current")),
    # tasks
    Call(f"POST {TASKS}", 201, "every field", lambda s: s.create(TASK)),
    Call(f"POST {TASKS}", 201, "idempotent replay", replayed),
    Call(f"POST {TASKS}", 409, "key reused, other body", key_conflict),
    Call(f"POST {TASKS}", 400, "unknown field", lambda s: s.create({"title": "a", "colour": 1})),
    Call(f"POST {TASKS}", 413, "body over 1 MiB",
         lambda s: s.create({"title": "Long notes", "notes": "x" * (1 << 20)})),
    Call(f"POST {TASKS}", 415, "text/plain", lambda s: s.send("POST", TASKS, **PLAIN)),
    Call(f"POST {TASKS}", 401, "no token", lambda s: s.http.post(TASKS, json=TASK)),
    Call(f"GET {TASKS}", 200, "first of two pages", first_page_of_two),
    Call(f"GET {TASKS}", 200, "filtered and sorted", filtered),
    Call(f"GET {TASKS}", 400, "limit 0", lambda s: s.send("GET", f"{TASKS}?limit=0")),
    Call(f"DELETE {TASKS}", 200, "completed=true", completed_cleared),
    Call(f"DELETE {TASKS}", 400, "completed missing", lambda s: s.send("DELETE", TASKS)),
    Call(f"GET {TASKS}/changes", 200, "from the beginning", changes_with_a_deletion),
    Call(f"GET {TASKS}/changes", 200, "since a token", changes_since_a_token),
    Call(f"GET {TASKS}/changes", 400, "forged token",
         lambda s: s.send("GET", f"{TASKS}/changes?since=not-a-token")),
    Call(f"GET {A_TASK}", 200, "mine", lambda s: s.send("GET", s.task_path)),
    Call(f"GET {A_TASK}", 304, "ETag unchanged", not_modified),
    Call(f"GET {A_TASK}", 404, "someone else's",
         lambda s: s.stranger.request("GET", s.task_path)),
    Call(f"PUT {A_TASK}", 200, "replaced with If-Match", lambda s: s.send(
        "PUT", s.task_path, json={**s.task, "title": "Water the fern"},
        headers={"If-Match": f'"{s.task["version"]}"'})),
    Call(f"PUT {A_TASK}", 400, "title missing",
         lambda s: s.send("PUT", s.task_path, json={"notes": "no title"})),
    Call(f"PUT {A_TASK}", 404, "someone else's",
         lambda s: s.stranger.request("PUT", s.task_path, json=TASK)),
    Call(f"PUT {A_TASK}", 412, "stale If-Match",
         lambda s: s.send("PUT", s.task_path, json=TASK, headers=s.stale)),
    Call(f"PUT {A_TASK}", 428, "If-Match required", lambda s: s.client_of(
        require_if_match=True).put(s.task_path, json=TASK, headers=s.user.headers)),
    Call(f"PATCH {A_TASK}", 200, "JSON", lambda s: s.send(
        "PATCH", s.task_path, json={"completed": True, "tags": ["garden"]})),
    Call(f"PATCH {A_TASK}", 200, "merge patch clearing due_at", lambda s: s.send(
        "PATCH", s.task_path, data='{"due_at": null}', content_type=MERGE_PATCH)),
    Call(f"PATCH {A_TASK}", 400, "nothing to change",
         lambda s: s.send("PATCH", s.task_path, json={})),
    Call(f"PATCH {A_TASK}", 412, "stale If-Match", lambda s: s.send(
        "PATCH", s.task_path, json={"completed": True}, headers=s.stale)),
    Call(f"PATCH {A_TASK}", 415, "text/plain", lambda s: s.send("PATCH", s.task_path, **PLAIN)),
    Call(f"DELETE {A_TASK}", 204, "mine", lambda s: s.send("DELETE", s.task_path)),
    Call(f"DELETE {A_TASK}", 404, "not a UUID", lambda s: s.send("DELETE", f"{TASKS}/42")),
    Call(f"DELETE {A_TASK}", 412, "stale If-Match",
         lambda s: s.send("DELETE", s.task_path, headers=s.stale)),
    Call(f"DELETE {A_TASK}", 428, "If-Match required", lambda s: s.client_of(
        require_if_match=True).delete(s.task_path, headers=s.user.headers)),
    Call(f"POST {A_TASK}/move", 200, "first", lambda s: s.send(
        "POST", f"{s.task_path}/move", json={"after": None})),
    Call(f"POST {A_TASK}/move", 400, "after itself", lambda s: s.send(
        "POST", f"{s.task_path}/move", json={"after": s.task["id"]})),
    Call(f"POST {A_TASK}/move", 404, "someone else's list", lambda s: s.send(
        "POST", f"{s.task_path}/move", json={"list_id": s.strangers_list["id"], "after": None})),
    # personal access tokens
    Call(f"POST {AUTH}/tokens", 201, "a script's token", lambda s: s.send(
        "POST", f"{AUTH}/tokens", json={"name": "backup", "scopes": ["tasks:read"]})),
    Call(f"POST {AUTH}/tokens", 400, "unknown scope", lambda s: s.send(
        "POST", f"{AUTH}/tokens", json={"name": "backup", "scopes": ["everything"]})),
    Call(f"POST {AUTH}/tokens", 403, "with a personal token", lambda s: s.http.post(
        f"{AUTH}/tokens", json={"name": "x", "scopes": ["tasks:read"]},
        headers=bearer(s.personal_token))),
    Call(f"GET {AUTH}/tokens", 200, "session", lambda s: s.send("GET", f"{AUTH}/tokens")),
    Call(f"GET {AUTH}/tokens", 401, "no token", lambda s: s.http.get(f"{AUTH}/tokens")),
    Call(f"DELETE {AUTH}/tokens/{{token_id}}", 204, "mine", lambda s: s.send(
        "DELETE", f"{AUTH}/tokens/{s.personal_token_id}")),
    Call(f"DELETE {AUTH}/tokens/{{token_id}}", 404, "unknown", lambda s: s.send(
        "DELETE", f"{AUTH}/tokens/{uuid.uuid4()}")),
    Call(f"GET {TASKS}", 403, "personal token without tasks:read", lambda s: s.http.get(
        TASKS, headers=bearer(s.lists_only_token))),
    # lists
    Call(f"POST {LISTS}", 201, "title and color", lambda s: s.send(
        "POST", LISTS, json={"title": "Groceries", "color": "#00aa00"})),
    Call(f"POST {LISTS}", 400, "bad color", lambda s: s.send(
        "POST", LISTS, json={"title": "Groceries", "color": "green"})),
    Call(f"GET {LISTS}", 200, "the inbox and more", lambda s: s.send("GET", LISTS)),
    Call(f"GET {LISTS}", 400, "bad cursor", lambda s: s.send("GET", f"{LISTS}?cursor=x")),
    Call(f"GET {A_LIST}", 200, "mine", lambda s: s.send("GET", s.list_path)),
    Call(f"GET {A_LIST}", 404, "someone else's", lambda s: s.send(
        "GET", f"{LISTS}/{s.strangers_list['id']}")),
    Call(f"PUT {A_LIST}", 200, "replaced", lambda s: s.send(
        "PUT", s.list_path, json={"title": "Food"})),
    Call(f"PUT {A_LIST}", 400, "title missing", lambda s: s.send(
        "PUT", s.list_path, json={"color": "#ffffff"})),
    Call(f"PATCH {A_LIST}", 200, "color cleared", lambda s: s.send(
        "PATCH", s.list_path, json={"color": None})),
    Call(f"PATCH {A_LIST}", 412, "stale If-Match", lambda s: s.send(
        "PATCH", s.list_path, json={"title": "x"}, headers={"If-Match": '"99"'})),
    Call(f"DELETE {A_LIST}", 204, "mine", lambda s: s.send("DELETE", s.list_path)),
    Call(f"DELETE {A_LIST}", 409, "the inbox", lambda s: s.send(
        "DELETE", f"{LISTS}/{s.inbox['id']}")),
    Call(f"POST {A_LIST}/move", 200, "first", lambda s: s.send(
        "POST", f"{s.list_path}/move", json={"after": None})),
    Call(f"POST {A_LIST}/move", 404, "after someone else's", lambda s: s.send(
        "POST", f"{s.list_path}/move", json={"after": s.strangers_list["id"]})),
    Call(f"GET {A_LIST}/tasks", 200, "by position", lambda s: s.send(
        "GET", f"{s.list_path}/tasks")),
    Call(f"GET {A_LIST}/tasks", 404, "someone else's", lambda s: s.send(
        "GET", f"{LISTS}/{s.strangers_list['id']}/tasks")),
    # a database outage, behind a valid token
    Call(f"GET {TASKS}", 503, "database down", lambda s: s.client_of(
        database_url=DOWN_URL).get(TASKS, headers=s.user.headers)),
]  # fmt: skip


# --- checking a response against the document ------------------------------------------------


def pointer(*parts: str) -> str:
    """A JSON pointer fragment into the document."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Document:
    """The served document, its operations and a validator per declared schema."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
        )
        self.operations = {
            (method.upper(), path)
            for path, item in doc["paths"].items()
            for method in item
            if method in HTTP_METHODS
        }
        # Literal paths first, so /tasks/changes is not taken for /tasks/{task_id}.
        by_literalness = sorted(doc["paths"], key=lambda p: (p.count("{"), p))
        self.patterns: list[tuple[re.Pattern[str], str]] = [
            (re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path))), path)
            for path in by_literalness
        ]

    def template(self, path: str) -> str:
        """The documented path template a concrete path matches."""
        for pattern, template in self.patterns:
            if pattern.fullmatch(path):
                return template
        raise AssertionError(f"{path} matches no documented path")

    def check(self, method: str, template: str, response: Any) -> None:
        """The status is listed for the operation; the body validates against its schema."""
        status = str(response.status_code)
        listed = self.doc["paths"][template][method.lower()]["responses"]
        assert status in listed, f"status {status} is not documented (only {sorted(listed)})"
        content = listed[status].get("content")
        if not content:
            assert not response.get_data(), "a body where the document declares none"
            return
        assert response.mimetype in content, f"{response.mimetype} is not in {sorted(content)}"
        where = ("paths", template, method.lower(), "responses", status, "content")
        schema = {"$ref": DOC_URI + pointer(*where, response.mimetype, "schema")}
        validator = Draft202012Validator(schema, registry=self.registry, format_checker=FORMATS)
        body = response.get_json() if response.is_json else response.get_data(as_text=True)
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                  for e in validator.iter_errors(body)]  # fmt: skip
        assert not errors, f"body does not match its schema: {errors}"


def test_every_documented_operation_answers_as_documented(
    app: Flask, make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """Each call gets its status and a documented body; every operation is exercised."""
    answer = app.test_client().get(DOC_URL)
    assert answer.status_code == 200 and isinstance(answer.json, dict), answer.get_data()
    document = Document(answer.json)

    seen: set[tuple[str, str, int]] = set()
    problems: list[str] = []
    for call in CALLS:
        try:
            response = call.send(Scene(app, make_app, make_user))
            method = response.request.method
            template = document.template(response.request.path)
            seen.add((method, template, response.status_code))
            assert f"{method} {template}" == call.operation, f"sent {method} {template}"
            assert response.status_code == call.status, (
                f"got {response.status_code}: {response.get_data(as_text=True)[:300]}"
            )
            document.check(method, template, response)
        except AssertionError as error:
            problems.append(f"{call}: {error}")
    assert not problems, "\n".join(problems)

    exercised = {(method, path) for method, path, _ in seen}
    assert document.operations - exercised == set(), "documented operations never exercised"
    for operation in document.operations:
        statuses = {status for method, path, status in seen if (method, path) == operation}
        assert any(s < 400 for s in statuses), f"{operation}: no success exercised"
        assert any(s >= 400 for s in statuses), f"{operation}: no error exercised"
