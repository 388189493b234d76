"""Personal access tokens (issue 12), through HTTP with real tokens, on SQLite and PostgreSQL.

Creation (the secret once, in the create answer only), use, a scope matrix over every task and
list route the app serves, account routes refused, expiry, revocation (also across two real
server instances), a mistyped token refused without a query, ``last_used_at`` throttling,
everything that revokes every token, the quota, validation, the creation notice, rate limits
per owner, and no secret in any log.

Every app built here records each response it sends (``make_app`` below): when a test ends,
every secret a create answer carried must appear in that answer and in no other response.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import string
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from flask import Flask, Response, request
from flask.testing import FlaskClient
from sqlalchemy import DateTime, LargeBinary, String, column, event, select, table, text
from sqlalchemy import Uuid as UuidType

from taskapi.cli import main
from taskapi.services import tokens as tokens_service
from tests.conftest import PASSWORD, TEST_SECRET, User, login, unique_email
from tests.mailbox import (  # smtp_sink_fixture registers the smtp_sink fixture
    SmtpSink,
    deliver,
    mail_settings,
    smtp_sink_fixture,  # noqa: F401
)
from tests.servers import base_env, start_together, stop_all
from tests.support import AUTH, TASKS, assert_error, bearer, engine_of, rows, shift_back

TOKENS = f"{AUTH}/tokens"
LISTS = "/api/v1/lists"
ALL_SCOPES = ["lists:read", "lists:write", "tasks:read", "tasks:write"]
SHAPE = re.compile(r"^tapi_[0-9A-Za-z]{46}$")
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
NEW_PASSWORD = "a fresh passphrase 42"
PUBLIC_FIELDS = {"id", "name", "scopes", "prefix", "created_at", "last_used_at", "expires_at"}
Timestamp = DateTime(timezone=True)
PERSONAL_TOKENS = table(
    "personal_tokens",
    column("id", UuidType),
    column("user_id", UuidType),
    column("name", String),
    column("scopes", String),
    column("token_hash", LargeBinary),
    column("prefix", String),
    column("created_at", Timestamp),
    column("last_used_at", Timestamp),
    column("expires_at", Timestamp),
)


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A personal token as its create answer gave it."""

    id: str
    secret: str
    answer: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        """Authorization: Bearer <secret>."""
        return bearer(self.secret)


def create_token(
    user: User, scopes: list[str] | None = None, name: str = "a script", **extra: Any
) -> Token:
    """POST /auth/tokens with the user's session; the 201's token."""
    body = {"name": name, "scopes": ALL_SCOPES if scopes is None else scopes, **extra}
    answer = user.request("POST", TOKENS, json=body)
    assert answer.status_code == 201, answer.get_json()
    data = answer.get_json()
    return Token(data["id"], data["token"], data)


def listed_tokens(user: User) -> list[dict[str, Any]]:
    """GET /auth/tokens with the user's session."""
    answer = user.request("GET", TOKENS)
    assert answer.status_code == 200, answer.get_json()
    items: list[dict[str, Any]] = answer.get_json()["items"]
    return items


def checksum(body: str) -> str:
    """The documented checksum, computed independently: CRC-32 of the 40 random characters,
    in base 62 (0-9, A-Z, a-z), 6 digits."""
    number, digits = zlib.crc32(body.encode()), []
    for _ in range(6):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def well_formed_unknown() -> str:
    """A token with a valid shape and checksum that no one was given."""
    body = "".join(secrets.choice(BASE62) for _ in range(40))
    return f"tapi_{body}{checksum(body)}"


def one_char_changed(secret: str, index: int) -> str:
    """``secret`` with the character at ``index`` replaced by another base-62 character."""
    old = secret[index]
    new = BASE62[(BASE62.index(old) + 1) % 62]
    return secret[:index] + new + secret[index + 1 :]


def token_row(app: Flask, token_id: str) -> dict[str, Any]:
    """The stored row of a token."""
    with engine_of(app).connect() as connection:
        found = connection.execute(
            select(PERSONAL_TOKENS).where(PERSONAL_TOKENS.c.id == uuid.UUID(token_id))
        ).one()
    return dict(found._mapping)


def tokens_of(app: Flask, user_id: str) -> set[tuple[Any, ...]]:
    """The ids of a user's stored tokens."""
    owner = uuid.UUID(user_id)
    return {r for r in rows(app, PERSONAL_TOKENS.c.id, PERSONAL_TOKENS.c.user_id) if r[1] == owner}


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = engine_of(app)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def touches(seen: list[str]) -> list[str]:
    """The UPDATEs of personal_tokens among ``seen``."""
    return [s for s in seen if re.match(r"\s*UPDATE\s+personal_tokens\b", s, re.I)]


def data_statements(seen: list[str]) -> list[str]:
    """The statements among ``seen`` that read or write rows (not BEGIN, COMMIT, ...)."""
    return [s for s in seen if s.split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")]


def utc(value: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive ones)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def at(text: str) -> datetime:
    """An ISO timestamp of an answer."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- every response is recorded; a secret appears only in its create answer -------------------


@dataclass
class Seen:
    """One response an app sent: what was asked, and the answer's headers and body."""

    method: str
    path: str
    status: int
    text: str


@pytest.fixture
def make_app(make_app: Callable[..., Flask]) -> Iterator[Callable[..., Flask]]:
    """conftest's ``make_app``, and every response of its apps recorded; at teardown each
    secret of a create answer is found in exactly that one response."""
    seen: list[Seen] = []

    def build(**overrides: Any) -> Flask:
        app = make_app(**overrides)

        @app.after_request
        def remember(response: Response) -> Response:
            body = "" if response.direct_passthrough else response.get_data(as_text=True)
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            seen.append(Seen(request.method, request.path, response.status_code,
                             headers + "\n\n" + body))  # fmt: skip
            return response

        return app

    yield build
    created = [s for s in seen if (s.method, s.path, s.status) == ("POST", TOKENS, 201)]
    for answer in created:
        found = re.search(r'"token":\s*"tapi_([0-9A-Za-z]+)"', answer.text)
        assert found, answer.text
        body = found.group(1)
        carrying = [s for s in seen if body in s.text]
        assert carrying == [answer], [(s.method, s.path, s.status) for s in carrying]


# --- create and use --------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_it_works(app: Flask, alice: User) -> None:
    """201 with the secret (tapi_ + 46 base-62, a CRC-32 checksum, its prefix shown); stored
    only as its SHA-256 and the prefix; never in the list; usable on task routes."""
    body = {"name": "  backup script  ", "scopes": ["tasks:write", "tasks:read"]}
    made = alice.request("POST", TOKENS, json=body)
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    writer = Token(made.get_json()["id"], made.get_json()["token"], made.get_json())
    assert set(writer.answer) == PUBLIC_FIELDS | {"token"}
    assert SHAPE.fullmatch(writer.secret), writer.secret
    assert writer.secret[-6:] == checksum(writer.secret[5:45])
    assert writer.answer["prefix"] == writer.secret[:11]
    assert writer.answer["name"] == "backup script"
    assert writer.answer["scopes"] == ["tasks:read", "tasks:write"]
    assert writer.answer["last_used_at"] is None and writer.answer["expires_at"] is None

    stored = token_row(app, writer.id)
    assert stored["token_hash"] == hashlib.sha256(writer.secret.encode()).digest()
    assert stored["prefix"] == writer.secret[:11]
    assert not any(writer.secret[5:] in str(value) for value in stored.values())

    (listed,) = listed_tokens(alice)
    assert set(listed) == PUBLIC_FIELDS
    assert listed == {k: writer.answer[k] for k in PUBLIC_FIELDS}

    made = alice.client.post(TASKS, json={"title": "from a script"}, headers=writer.headers)
    assert made.status_code == 201, made.get_json()
    page = alice.client.get(TASKS, headers=writer.headers)
    assert page.status_code == 200
    assert [t["title"] for t in page.get_json()["items"]] == ["from a script"]
    # The task belongs to the token's owner: the session sees it too.
    assert alice.request("GET", f"{TASKS}/{made.get_json()['id']}").status_code == 200
    (listed,) = listed_tokens(alice)
    assert listed["last_used_at"] is not None


# --- scopes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One method of one URL rule, with its guard and its documented token scopes."""

    method: str
    rule: str
    auth: str | None
    scopes: tuple[str, ...] | None  # the OpenAPI document's personalToken scopes

    def url(self, ids: dict[str, str]) -> str:
        """The rule with its parameters filled from ``ids`` (a random id for any other)."""
        return re.sub(
            r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: ids.get(m.group(1), str(uuid.uuid4())), self.rule
        )


def routes(app: Flask) -> list[Route]:
    """Every documented (method, rule) the app serves, from its url_map, with the scopes the
    OpenAPI document declares for a personal token on it."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    found = []
    for rule in app.url_map.iter_rules():
        op = getattr(app.view_functions[rule.endpoint], "operation", None)
        if op is None:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            security = document["paths"][path][method.lower()]["security"]
            personal = [s["personalToken"] for s in security if "personalToken" in s]
            scopes = tuple(personal[0]) if personal else None
            found.append(Route(method, rule.rule, op.auth, scopes))
    return found


def test_openapi_declares_the_scheme_on_task_and_list_routes_only(app: Flask) -> None:
    """Every guarded route outside /api/v1/auth takes a personal token with a non-empty scope
    list; no route under /api/v1/auth does."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["personalToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    everything = routes(app)
    scoped = [r for r in everything if r.auth is not None and not r.rule.startswith(AUTH)]
    assert len(scoped) >= 17  # tasks and lists today; a new route joins the matrix by itself
    assert all(r.scopes and set(r.scopes) <= set(ALL_SCOPES) for r in scoped), scoped
    assert all(r.scopes is None for r in everything if r.rule.startswith(AUTH))
    changes = next(r for r in scoped if r.rule == f"{TASKS}/changes")
    assert set(changes.scopes or ()) == {"tasks:read", "lists:read"}


def test_scope_matrix_over_every_task_and_list_route(app: Flask, alice: User) -> None:
    """Each route x each single scope (and all four): allowed exactly when the route's
    documented scopes are among the token's, else 403 insufficient_scope naming them."""
    task = alice.create_task(title="kept")
    made = alice.request("POST", LISTS, json={"title": "kept list"})
    assert made.status_code == 201, made.get_json()
    ids = {"task_id": task["id"], "list_id": made.get_json()["id"]}
    scoped = [r for r in routes(app) if r.auth is not None and not r.rule.startswith(AUTH)]
    holders = {scope: create_token(alice, [scope], name=scope) for scope in ALL_SCOPES}
    holders["all four"] = create_token(alice, ALL_SCOPES, name="all")
    document = app.test_client().get("/api/v1/openapi.json").get_json()

    wrong = []
    for route in scoped:
        assert route.scopes is not None
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", route.rule)
        documented = set(document["paths"][path][route.method.lower()]["responses"])
        for label, holder in holders.items():
            held = set(ALL_SCOPES) if label == "all four" else {label}
            # Reads use the real objects; writes a random id, so that nothing is destroyed.
            url = route.url(ids if route.method == "GET" else {})
            kwargs: dict[str, Any] = {} if route.method == "GET" else {"json": {}}
            answer = alice.client.open(url, method=route.method, headers=holder.headers, **kwargs)
            case = f"{route.method} {route.rule} with {label}: {answer.status_code}"
            if set(route.scopes) <= held:
                ok = answer.status_code == 200 if route.method == "GET" else (
                    answer.status_code not in (401, 403) and str(answer.status_code) in documented
                )  # fmt: skip
                if not ok:
                    wrong.append(f"{case} {answer.get_json()}")
                continue
            challenge = f'Bearer error="insufficient_scope", scope="{" ".join(route.scopes)}"'
            body = answer.get_json() or {}
            if (answer.status_code, body.get("code")) != (403, "insufficient_scope"):
                wrong.append(f"{case} {body}")
            elif answer.headers.get("WWW-Authenticate") != challenge:
                wrong.append(f"{case} WWW-Authenticate: {answer.headers.get('WWW-Authenticate')}")
            else:
                assert_error(answer, 403, "insufficient_scope")
    assert not wrong, "\n".join(wrong)
    # Nothing a refused write was aimed at changed.
    assert alice.request("GET", f"{TASKS}/{task['id']}").get_json() == task


def test_account_routes_refuse_a_token_with_every_scope(app: Flask, alice: User) -> None:
    """Everything under /api/v1/auth: a bearer-guarded route is 403 insufficient_scope, a
    refresh route 401, and an open route answers as if no token were sent. The account, its
    session and the token itself are untouched afterwards."""
    token = create_token(alice, ALL_SCOPES)
    sessions = alice.request("GET", f"{AUTH}/sessions").get_json()["items"]
    ids = {"token_id": token.id, "session_id": sessions[0]["id"]}
    under_auth = [r for r in routes(app) if r.rule.startswith(AUTH)]
    assert {(r.method, r.rule) for r in under_auth} >= {
        ("POST", TOKENS), ("GET", TOKENS), ("DELETE", f"{TOKENS}/<token_id>"),
        ("POST", f"{AUTH}/password"), ("DELETE", f"{AUTH}/me"), ("POST", f"{AUTH}/email"),
        ("GET", f"{AUTH}/sessions"), ("POST", f"{AUTH}/logout-all"),
    }  # fmt: skip
    wrong = []
    for route in under_auth:
        url = route.url(ids)
        with_token = alice.client.open(url, method=route.method, headers=token.headers, json={})
        case = f"{route.method} {route.rule} ({route.auth}): {with_token.status_code}"
        if route.auth in ("access", "access_or_cookie"):
            challenge = with_token.headers.get("WWW-Authenticate", "")
            if (with_token.status_code, (with_token.get_json() or {}).get("code")) != (
                403,
                "insufficient_scope",
            ) or not challenge.startswith('Bearer error="insufficient_scope"'):
                wrong.append(f"{case} {with_token.get_json()} {challenge}")
        elif route.auth in ("refresh", "refresh_cookie"):
            if with_token.status_code != 401:
                wrong.append(f"{case} {with_token.get_json()}")
        else:
            without = alice.client.open(url, method=route.method, json={})
            if with_token.status_code != without.status_code:
                wrong.append(f"{case} without a token: {without.status_code}")
    assert not wrong, "\n".join(wrong)
    assert alice.request("GET", f"{AUTH}/me").status_code == 200
    assert [t["id"] for t in listed_tokens(alice)] == [token.id]
    assert alice.client.get(TASKS, headers=token.headers).status_code == 200


def test_tokens_are_managed_with_a_session_only(alice: User) -> None:
    """A personal token cannot create, list or revoke tokens (403), not even itself."""
    token = create_token(alice, ALL_SCOPES)
    http = alice.client
    body = {"name": "child", "scopes": ["tasks:read"]}
    assert_error(http.post(TOKENS, json=body, headers=token.headers), 403, "insufficient_scope")
    assert_error(http.get(TOKENS, headers=token.headers), 403, "insufficient_scope")
    gone = http.delete(f"{TOKENS}/{token.id}", headers=token.headers)
    assert_error(gone, 403, "insufficient_scope")
    assert [t["id"] for t in listed_tokens(alice)] == [token.id]


def test_refresh_and_personal_tokens_never_stand_in_for_each_other(alice: User) -> None:
    """A personal token on /auth/refresh (header or body) is 401; a refresh JWT where an access
    or personal token is expected is 401."""
    token = create_token(alice, ALL_SCOPES)
    http = alice.client
    assert_error(http.post(f"{AUTH}/refresh", headers=token.headers), 401, "unauthorized")
    in_body = http.post(f"{AUTH}/refresh", json={"refresh_token": token.secret})
    assert_error(in_body, 401, "unauthorized")
    with_refresh = bearer(alice.refresh_token)
    assert_error(http.get(TASKS, headers=with_refresh), 401, "unauthorized")
    assert_error(http.get(TOKENS, headers=with_refresh), 401, "unauthorized")
    made = http.post(TOKENS, json={"name": "x", "scopes": ["tasks:read"]}, headers=with_refresh)
    assert_error(made, 401, "unauthorized")
    # Both still work for what they are.
    assert http.get(TASKS, headers=token.headers).status_code == 200
    assert http.post(f"{AUTH}/refresh", headers=with_refresh).status_code == 200


# --- expiry, revocation, checksum, throttling ------------------------------------------------


def test_expired_token_is_401_token_expired(app: Flask, alice: User) -> None:
    """expires_in_days=1 expires a day after creation; once past, 401 token_expired."""
    token = create_token(alice, ["tasks:read"], expires_in_days=1)
    expires, created = at(token.answer["expires_at"]), at(token.answer["created_at"])
    assert expires - created == timedelta(days=1)
    assert alice.client.get(TASKS, headers=token.headers).status_code == 200
    shift_back(app, PERSONAL_TOKENS.c.expires_at, timedelta(days=1, seconds=1),
               PERSONAL_TOKENS.c.id == uuid.UUID(token.id))  # fmt: skip
    expired = alice.client.get(TASKS, headers=token.headers)
    assert_error(expired, 401, "token_expired")
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]


def test_revoked_token_fails_on_the_next_request(alice: User, bob: User) -> None:
    """DELETE answers 204 and the very next request is 401; another user's token id is 404,
    and that token lives on."""
    token, kept = create_token(alice, ["tasks:read"]), create_token(bob, ["tasks:read"])
    assert alice.client.get(TASKS, headers=token.headers).status_code == 200
    assert_error(alice.request("DELETE", f"{TOKENS}/{kept.id}"), 404, "not_found")
    assert bob.client.get(TASKS, headers=kept.headers).status_code == 200
    assert alice.request("DELETE", f"{TOKENS}/{token.id}").status_code == 204
    assert_error(alice.client.get(TASKS, headers=token.headers), 401, "unauthorized")
    assert_error(alice.request("DELETE", f"{TOKENS}/{token.id}"), 404, "not_found")
    assert_error(alice.request("DELETE", f"{TOKENS}/not-an-id"), 404, "not_found")
    assert listed_tokens(alice) == []
    assert [t["id"] for t in listed_tokens(bob)] == [kept.id]


def test_a_mistyped_token_is_refused_without_a_query(app: Flask, alice: User) -> None:
    """One character changed (in the random part or the checksum): 401 and not one SQL
    statement. A well-formed unknown token costs exactly one lookup."""
    token = create_token(alice, ["tasks:read"])
    task = alice.create_task()
    url = f"{TASKS}/{task['id']}"
    for index in (5, 20, 44, 45, 50):
        typo = one_char_changed(token.secret, index)
        with statements(app) as seen:
            answer = alice.client.get(url, headers=bearer(typo))
        assert_error(answer, 401, "unauthorized")
        assert seen == [], (index, seen)
    for malformed in ("tapi_", "tapi_" + "a" * 45, token.secret + "0", token.secret[:-1] + "-"):
        with statements(app) as seen:
            assert_error(alice.client.get(url, headers=bearer(malformed)), 401, "unauthorized")
        assert seen == [], (malformed, seen)
    with statements(app) as seen:
        assert_error(alice.client.get(url, headers=bearer(well_formed_unknown())), 401,
                     "unauthorized")  # fmt: skip
    assert len(data_statements(seen)) == 1 and "personal_tokens" in seen[-1], seen


def test_the_lookup_reads_the_token_hash_index(app: Flask, alice: User, is_postgres: bool) -> None:
    """On PostgreSQL the one lookup finds the token through its unique hash index and its
    owner by primary key (sequential scans off: a test table is small enough for the planner
    to prefer one)."""
    if not is_postgres:
        pytest.skip("query plans are checked on PostgreSQL")
    token = create_token(alice, ["tasks:read"])
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM personal_tokens" in statement:
            seen.append((statement, parameters))

    event.listen(engine_of(app), "before_cursor_execute", capture)
    try:
        assert alice.client.get(TASKS, headers=token.headers).status_code == 200
    finally:
        event.remove(engine_of(app), "before_cursor_execute", capture)
    ((statement, parameters),) = seen
    with engine_of(app).connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
        )
    assert "uq_personal_tokens_token_hash" in plan and "pk_users" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_last_used_at_is_written_at_most_once_a_minute(app: Flask, alice: User) -> None:
    """First use: one UPDATE. A second use within the minute: none, and the request is the
    token lookup plus the data query. Once last_used_at is over a minute old: written again.
    The UPDATE's own condition keeps two racing requests from both writing."""
    token = create_token(alice, ["tasks:read"])
    url = f"{TASKS}/{alice.create_task()['id']}"
    with statements(app) as first:
        assert alice.client.get(url, headers=token.headers).status_code == 200
    assert len(touches(first)) == 1, first
    used = token_row(app, token.id)["last_used_at"]
    assert used is not None
    with statements(app) as second:
        assert alice.client.get(url, headers=token.headers).status_code == 200
    assert touches(second) == [], second
    data = data_statements(second)
    assert len(data) == 2 and "personal_tokens" in data[0], data
    assert token_row(app, token.id)["last_used_at"] == used

    shift_back(app, PERSONAL_TOKENS.c.last_used_at, timedelta(minutes=2),
               PERSONAL_TOKENS.c.id == uuid.UUID(token.id))  # fmt: skip
    moved = token_row(app, token.id)["last_used_at"]
    with statements(app) as third:
        assert alice.client.get(url, headers=token.headers).status_code == 200
    assert len(touches(third)) == 1, third
    latest = token_row(app, token.id)["last_used_at"]
    assert latest > moved + timedelta(minutes=1)
    assert at(listed_tokens(alice)[0]["last_used_at"]) == utc(latest)

    # Two requests that both saw a stale value: only the first UPDATE changes the row.
    factory = app.extensions["taskapi"].session_factory
    for later in (timedelta(seconds=1), timedelta(seconds=59)):
        with factory() as db:
            tokens_service.touch(db, token_id=uuid.UUID(token.id), now=latest + later)
        assert token_row(app, token.id)["last_used_at"] == latest


# --- what revokes every token ----------------------------------------------------------------


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp_sink: SmtpSink) -> Flask:
    """An app that sends its mail to the test's SMTP server."""
    return make_app(**mail_settings(smtp_sink), public_url="https://app.example.com")


@pytest.fixture
def http(mail_app: Flask) -> FlaskClient:
    """A client of ``mail_app``."""
    return mail_app.test_client()


@pytest.fixture
def person(http: FlaskClient, make_user: Callable[..., User]) -> User:
    """A registered, logged-in user of ``mail_app``."""
    return make_user("Ana", on=http)


def mails_to(app: Flask, sink: SmtpSink, address: str, subject_word: str) -> list[str]:
    """Send the outbox; the decoded text and HTML of every message to ``address`` with the
    word in its subject."""
    deliver(app)
    found = [m for m in sink.to(address) if subject_word.lower() in str(m["Subject"]).lower()]
    return [
        "\n".join(str(p.get_content()) for p in m.walk() if p.get_content_maintype() == "text")
        for m in found
    ]


def change_password(person: User, http: FlaskClient, app: Flask, sink: SmtpSink) -> None:
    """POST /auth/password."""
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = person.request("POST", f"{AUTH}/password", json=body)
    assert answer.status_code == 204, answer.get_json()


def reset_password(person: User, http: FlaskClient, app: Flask, sink: SmtpSink) -> None:
    """The mail flow: ask, read the link's token from the mail, confirm."""
    assert http.post(f"{AUTH}/password-reset", json={"email": person.email}).status_code == 202
    (mail,) = mails_to(app, sink, person.email, "reset")
    (reset,) = set(re.findall(r"\?token=([A-Za-z0-9_-]+)", mail))  # text and HTML: one link
    confirm = {"token": reset, "new_password": NEW_PASSWORD}
    assert http.post(f"{AUTH}/password-reset/confirm", json=confirm).status_code == 204


def disable_account(person: User, http: FlaskClient, app: Flask, sink: SmtpSink) -> None:
    """``taskapi users disable <email>``, then ``enable`` (the tokens stay revoked)."""
    settings = app.extensions["taskapi"].settings
    env = {
        "TASKAPI_DATABASE_URL": settings.database_url,
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_DATA_DIR": str(settings.data_dir),
        "TASKAPI_BCRYPT_ROUNDS": "4",
    }
    for verb in ("disable", "enable"):
        done = CliRunner().invoke(main, ["users", verb, person.email], env=env)
        assert done.exit_code == 0, done.output


@pytest.mark.parametrize("revoke", [change_password, reset_password, disable_account])
def test_every_token_is_revoked_by(
    revoke: Callable[..., None],
    mail_app: Flask,
    http: FlaskClient,
    person: User,
    make_user: Callable[..., User],
    smtp_sink: SmtpSink,
) -> None:
    """A password change, a password reset and an operator's disable revoke every personal
    token of the account (and only of that account)."""
    mine = [create_token(person, ALL_SCOPES), create_token(person, ["tasks:read"])]
    other = make_user("Olga", on=http)
    theirs = create_token(other, ["tasks:read"])
    for token in mine:
        assert http.get(TASKS, headers=token.headers).status_code == 200
    revoke(person, http, mail_app, smtp_sink)
    for token in mine:
        assert_error(http.get(TASKS, headers=token.headers), 401, "unauthorized")
    assert tokens_of(mail_app, person.id) == set()
    assert http.get(TASKS, headers=theirs.headers).status_code == 200
    fresh = login(http, person.email, NEW_PASSWORD if revoke is not disable_account else PASSWORD)
    assert fresh.status_code == 200, fresh.get_json()
    assert http.get(TOKENS, headers=bearer(fresh.get_json()["access_token"])).get_json() == {
        "items": []
    }


def test_creation_sends_a_notice_without_the_secret(
    mail_app: Flask, person: User, smtp_sink: SmtpSink
) -> None:
    """Each creation mails a security notice naming the token; the secret is not in it."""
    token = create_token(person, ["tasks:read", "lists:read"], name="nightly backup")
    (notice,) = mails_to(mail_app, smtp_sink, person.email, "security notice")
    assert "nightly backup" in notice and "personal access token" in notice
    assert token.secret[5:] not in notice and token.secret[5:25] not in notice


# --- bounds and validation -------------------------------------------------------------------


def test_quota(make_app: Callable[..., Flask], make_user: Callable[..., User]) -> None:
    """Past TASKAPI_MAX_TOKENS_PER_USER, 409 quota_exceeded; revoking one makes room."""
    app = make_app(max_tokens_per_user=2)
    user = make_user(on=app.test_client())
    first, _second = create_token(user, ["tasks:read"]), create_token(user, ["tasks:read"])
    body = {"name": "third", "scopes": ["tasks:read"]}
    assert_error(user.request("POST", TOKENS, json=body), 409, "quota_exceeded")
    assert len(listed_tokens(user)) == 2
    assert [t["id"] for t in listed_tokens(user)] == [first.id, _second.id]  # oldest first
    assert user.request("DELETE", f"{TOKENS}/{first.id}").status_code == 204
    create_token(user, ["tasks:read"], name="third")


def test_the_quota_holds_under_concurrent_creates(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """Eight creates at once against a quota of 3: exactly 3 are made, the rest 409."""
    app = make_app(max_tokens_per_user=3)
    user = make_user(on=app.test_client())
    body = {"name": "racing", "scopes": ["tasks:read"]}
    start = threading.Barrier(8)

    def create(_: int) -> int:
        """One create on its own client, released with the others."""
        client = app.test_client()
        start.wait()
        return client.post(TOKENS, json=body, headers=user.headers).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(create, range(8)))
    assert statuses == [201] * 3 + [409] * 5, statuses
    assert len(listed_tokens(user)) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "scopes": ["tasks:read"]},
        {"name": "   ", "scopes": ["tasks:read"]},
        {"name": "x" * 101, "scopes": ["tasks:read"]},
        {"scopes": ["tasks:read"]},
        {"name": "x", "scopes": []},
        {"name": "x"},
        {"name": "x", "scopes": ["tasks:admin"]},
        {"name": "x", "scopes": ["tasks:read", "account"]},
        {"name": "x", "scopes": "tasks:read"},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": 366},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": -1},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": True},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": "5"},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": 1.5},
        {"name": "a\u0000b", "scopes": ["tasks:read"]},
        {"name": "x", "scopes": ["tasks:read"], "token": "tapi_chosen"},
    ],
)
def test_invalid_bodies_are_400(alice: User, body: dict[str, Any]) -> None:
    """Empty, long or NUL-holding names, no or unknown scopes, expiry outside 1..365 or not
    an integer, unknown fields."""
    assert_error(alice.request("POST", TOKENS, json=body), 400, "validation_error")
    assert listed_tokens(alice) == []


def test_duplicate_scopes_are_merged_and_bounds_accepted(alice: User) -> None:
    """Repeated scopes are kept once (sorted); 1 and 365 days and null are valid expiries."""
    token = create_token(alice, ["tasks:write", "tasks:read", "tasks:write"])
    assert token.answer["scopes"] == ["tasks:read", "tasks:write"]
    assert listed_tokens(alice)[0]["scopes"] == ["tasks:read", "tasks:write"]
    for days in (1, 365, None):
        made = create_token(alice, ["lists:read"], expires_in_days=days)
        assert (made.answer["expires_at"] is None) == (days is None)


# --- rate limits -----------------------------------------------------------------------------


def test_rate_limits_count_per_token_owner(
    make_app: Callable[..., Flask], make_user: Callable[..., User]
) -> None:
    """A user's personal tokens and sessions share one per-user budget; another user's token
    has its own."""
    app = make_app(ratelimit_enabled=True, ratelimit_default="3/minute")

    def client_at(address: str) -> FlaskClient:
        """A client whose requests come from ``address`` (register and login spend its budget)."""
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client

    ana, olga = make_user(on=client_at("10.0.0.1")), make_user(on=client_at("10.0.0.2"))
    first = create_token(ana, ["tasks:read"])  # with the session: 1 of 3
    second = create_token(ana, ["tasks:read"], name="another")  # 2 of 3
    theirs = create_token(olga, ["tasks:read"])
    used = ana.client.get(TASKS, headers=first.headers)  # 3 of 3
    assert used.status_code == 200 and used.headers["RateLimit-Remaining"] == "0"
    # From another address, with the other token and with the session: the same budget.
    elsewhere = client_at("10.0.0.4")
    assert_error(elsewhere.get(TASKS, headers=second.headers), 429, "rate_limited")
    assert_error(elsewhere.get(TASKS, headers=ana.headers), 429, "rate_limited")
    assert_error(ana.client.get(TASKS, headers=first.headers), 429, "rate_limited")
    answered = olga.client.get(TASKS, headers=theirs.headers)
    assert answered.status_code == 200 and answered.headers["RateLimit-Remaining"] == "1"


# --- logs ------------------------------------------------------------------------------------


def test_logs_never_hold_the_secret(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged at DEBUG (the access log and SQL included) across create, use,
    failed uses and revoke holds neither the secret nor its random part."""
    with caplog.at_level(logging.DEBUG):
        http = make_app().test_client()
        email = unique_email()
        registered = http.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201
        session = bearer(login(http, email).get_json()["access_token"])
        made = http.post(TOKENS, json={"name": "logged", "scopes": ALL_SCOPES}, headers=session)
        assert made.status_code == 201
        secret, token_id = made.get_json()["token"], made.get_json()["id"]
        assert http.post(TASKS, json={"title": "t"}, headers=bearer(secret)).status_code == 201
        assert http.get(TASKS, headers=bearer(secret)).status_code == 200
        assert http.get(TOKENS, headers=bearer(secret)).status_code == 403
        assert http.get(TASKS, headers=bearer(one_char_changed(secret, 30))).status_code == 401
        assert http.get(f"{TASKS}?q={secret[:20]}x", headers=session).status_code == 200
        assert http.delete(f"{TOKENS}/{token_id}", headers=session).status_code == 204
        assert http.get(TASKS, headers=bearer(secret)).status_code == 401
    logged = [r for r in caplog.records if r.name == "taskapi.access"]
    assert any(getattr(r, "path", "") == TOKENS for r in logged), "the access log was not seen"
    everything = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    body = secret[len("tapi_") :]
    for leaked in (secret, body, body[:-6], one_char_changed(secret, 30)[5:]):
        assert leaked not in everything


# --- two real instances ----------------------------------------------------------------------


@pytest.mark.slow
def test_revoke_is_seen_at_once_by_another_instance(
    database_url: str, is_postgres: bool, tmp_path: Path
) -> None:
    """Two ``taskapi serve`` processes on one PostgreSQL database: a token revoked through one
    is refused by the other on the very next request; neither log holds the secret."""
    if not is_postgres:
        pytest.skip("two instances share one PostgreSQL database")
    env = base_env(tmp_path, TASKAPI_DATABASE_URL=database_url, TASKAPI_LOG_LEVEL="DEBUG")
    one, two = start_together([env, env], tmp_path)
    try:
        web = requests.Session()
        body = {"email": unique_email(), "password": PASSWORD}
        assert web.post(f"{one.url}{AUTH}/register", json=body, timeout=10).status_code == 201
        session = bearer(web.post(f"{two.url}{AUTH}/login", json=body, timeout=10).json()
                         ["access_token"])  # fmt: skip
        made = web.post(f"{one.url}{TOKENS}", json={"name": "ci", "scopes": ["tasks:read"]},
                        headers=session, timeout=10)  # fmt: skip
        assert made.status_code == 201, made.text
        secret, token_id = made.json()["token"], made.json()["id"]
        for server in (one, two, two):
            assert web.get(f"{server.url}{TASKS}", headers=bearer(secret), timeout=10).ok
        gone = web.delete(f"{one.url}{TOKENS}/{token_id}", headers=session, timeout=10)
        assert gone.status_code == 204
        refused = web.get(f"{two.url}{TASKS}", headers=bearer(secret), timeout=10)
        assert_error(refused, 401, "unauthorized")
        assert_error(web.get(f"{one.url}{TASKS}", headers=bearer(secret), timeout=10), 401,
                     "unauthorized")  # fmt: skip
        web.close()
    finally:
        stop_all([one, two])
    for server in (one, two):
        log = server.log()
        assert f"{TASKS}" in log, log[-2000:]  # the access log was written
        assert secret[5:] not in log and "Traceback" not in log
