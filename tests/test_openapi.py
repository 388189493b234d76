"""The OpenAPI document describes exactly the contract, with the server's own bounds."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from taskapi import create_app
from taskapi.settings import Settings
from tests.conftest import PASSWORD, TEST_SECRET, User, unique_email
from tests.support import engine_of

DOC_URL = "/api/v1/openapi.json"
ERROR_REF = "#/components/schemas/ErrorBody"
NO_DATABASE = {"/api/health", DOC_URL, "/api/docs"}
DOC_ROUTES = {DOC_URL, "/api/docs"}
# Answered before the rate limiter counts the request: no RateLimit-* headers.
BEFORE_LIMITER = {"408", "413", "414", "431"}
# The codes of API.md's "Errors" table.
CONTRACT_CODES = {
    "invalid_json", "validation_error", "unauthorized", "token_expired", "token_revoked",
    "invalid_credentials", "csrf_failed", "not_found", "method_not_allowed", "email_taken",
    "idempotency_conflict", "sync_token_expired", "precondition_failed", "payload_too_large",
    "unsupported_media_type", "precondition_required", "rate_limited", "internal_error",
    "unavailable",
}  # fmt: skip
CAMEL_CASE = re.compile(r"[a-z]+(?:[A-Z][a-z0-9]*)*")

# Every operation of API.md: (method, path, guard, success status, has a JSON body, extra statuses).
CONTRACT = [
    ("post", "/api/v1/auth/register", None, 201, True, {409}),
    ("post", "/api/v1/auth/login", None, 200, True, set()),
    ("post", "/api/v1/auth/refresh", "refresh", 200, True, {403}),
    ("get", "/api/v1/auth/csrf", "refresh_cookie", 200, False, set()),
    ("post", "/api/v1/auth/logout", "access", 204, False, {403}),
    ("post", "/api/v1/auth/logout-all", "access", 204, False, set()),
    ("get", "/api/v1/auth/me", "access", 200, False, set()),
    ("patch", "/api/v1/auth/me", "access", 200, True, set()),
    ("delete", "/api/v1/auth/me", "access", 204, True, set()),
    ("post", "/api/v1/auth/password", "access", 204, True, set()),
    ("get", "/api/v1/auth/sessions", "access", 200, False, set()),
    ("delete", "/api/v1/auth/sessions/{}", "access", 204, False, set()),
    ("post", "/api/v1/tasks", "access", 201, True, {409}),
    ("get", "/api/v1/tasks", "access", 200, False, set()),
    ("delete", "/api/v1/tasks", "access", 200, False, set()),
    ("get", "/api/v1/tasks/changes", "access", 200, False, {410}),
    ("get", "/api/v1/tasks/{}", "access", 200, False, set()),
    ("put", "/api/v1/tasks/{}", "access", 200, True, {412, 428}),
    ("patch", "/api/v1/tasks/{}", "access", 200, True, {412, 428}),
    ("delete", "/api/v1/tasks/{}", "access", 204, False, {412, 428}),
    ("post", "/api/v1/tasks/{}/move", "access", 200, True, {412, 428}),
    # lists
    ("post", "/api/v1/lists", "access", 201, True, {409}),
    ("get", "/api/v1/lists", "access", 200, False, set()),
    ("get", "/api/v1/lists/{}", "access", 200, False, set()),
    ("put", "/api/v1/lists/{}", "access", 200, True, {412, 428}),
    ("patch", "/api/v1/lists/{}", "access", 200, True, {412, 428}),
    ("delete", "/api/v1/lists/{}", "access", 204, False, {409, 412, 428}),
    ("post", "/api/v1/lists/{}/move", "access", 200, True, {412, 428}),
    ("get", "/api/v1/lists/{}/tasks", "access", 200, False, set()),
    # account recovery and change of email
    ("post", "/api/v1/auth/password-reset", None, 202, True, set()),
    ("post", "/api/v1/auth/password-reset/confirm", None, 204, True, set()),
    ("post", "/api/v1/auth/verify-email", None, 204, True, {409}),
    ("post", "/api/v1/auth/verify-email/resend", "access", 202, False, set()),
    ("post", "/api/v1/auth/email", "access", 202, True, {403, 409}),
    # personal access tokens
    ("post", "/api/v1/auth/tokens", "access", 201, True, {409}),
    ("get", "/api/v1/auth/tokens", "access", 200, False, set()),
    ("delete", "/api/v1/auth/tokens/{}", "access", 204, False, set()),
    ("get", "/api/health", None, 200, False, set()),
    ("get", "/api/ready", None, 200, False, {503}),
    ("get", DOC_URL, None, 200, False, set()),
    ("get", "/api/docs", None, 200, False, set()),
]
IDS = [f"{c[0].upper()} {c[1]}" for c in CONTRACT]
SUCCESS = {(c[0], c[1]): c[3] for c in CONTRACT}


def template(path: str) -> str:
    """A path with its parameter names dropped: ``/tasks/{task_id}`` → ``/tasks/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (method, path template) of the document with its operation object."""
    methods = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
    return {(m, template(p)): op for p, item in doc["paths"].items()
            for m, op in item.items() if m in methods}  # fmt: skip


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref``."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def keyword(doc: dict[str, Any], node: dict[str, Any], name: str) -> Any:
    """A JSON Schema keyword of ``node``, looking through ``$ref`` and ``anyOf``/``allOf``."""
    node = resolve(doc, node)
    if name in node:
        return node[name]
    for branch in node.get("anyOf", []) + node.get("allOf", []):
        found = keyword(doc, branch, name)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def doc_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """A client of an app that is never asked to touch its database."""
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{folder / 'unused.db'}", secret_key=TEST_SECRET,
                        data_dir=folder, ratelimit_enabled=False)  # fmt: skip
    app = create_app(settings)
    yield app.test_client()
    engine_of(app).dispose()


@pytest.fixture(scope="module")
def doc(doc_client: FlaskClient) -> dict[str, Any]:
    """The served OpenAPI document."""
    response = doc_client.get(DOC_URL)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.json  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ops(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The document's operations by (method, path template)."""
    return operations(doc)


# --- the document as a whole ------------------------------------------------------------------


def test_document_is_openapi_3_1(doc: dict[str, Any]) -> None:
    """The version is 3.1.x and info names the API."""
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    """No dangling ``$ref`` anywhere in the document."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = set(walk(doc))
    assert ERROR_REF in refs
    for ref in refs:
        assert ref.startswith("#/") and resolve(doc, {"$ref": ref}), ref


def test_operation_ids_are_unique(ops: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Client generators need unique operationIds."""
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids)) and all(ids)


def test_document_lists_exactly_the_contract(ops: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The document's operations are API.md's, no more, no fewer."""
    assert set(ops) == {(c[0], c[1]) for c in CONTRACT}


def test_document_matches_the_url_map(doc_client: FlaskClient, ops: dict[Any, Any]) -> None:
    """Every /api route of the app (docs assets aside) is documented with its methods."""
    app: Flask = doc_client.application
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.rule.startswith("/api/docs/assets"):
            continue
        path = template(re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", rule.rule))
        routes |= {(m.lower(), path) for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert routes == set(ops)


def test_bearer_security_scheme(doc: dict[str, Any]) -> None:
    """An HTTP bearer (JWT) scheme is declared, and the error schema requires error and code."""
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"].lower() == "bearer" for s in schemes.values())
    error_body = resolve(doc, {"$ref": ERROR_REF})
    assert {"error", "code"} <= set(error_body["required"])
    assert {"error", "code", "details"} <= set(error_body["properties"])


# --- each operation ---------------------------------------------------------------------------


def _bearer_names(doc: dict[str, Any]) -> set[str]:
    """The names of the document's bearer schemes."""
    schemes = doc["components"]["securitySchemes"]
    return {n for n, s in schemes.items() if s.get("scheme", "").lower() == "bearer"}


@pytest.mark.parametrize(("method", "path", "guard", "ok", "body", "extra"), CONTRACT, ids=IDS)
def test_operation_declares_its_statuses(
    doc: dict[str, Any], ops: dict[Any, Any],
    method: str, path: str, guard: str | None, ok: int, body: bool, extra: set[int],
) -> None:  # fmt: skip
    """Success, 400, 401 when guarded, 404 with a path id, 413/415 with a body, 429, 503."""
    op = ops[(method, path)]
    expected = {ok} | extra
    if path not in DOC_ROUTES:
        expected.add(400)
    if guard:
        expected.add(401)
    if "{}" in path:
        expected.add(404)
    if body:
        expected |= {413, 415}
    if path.startswith("/api/v1") and path != DOC_URL:
        expected.add(429)
    if path not in NO_DATABASE:
        expected.add(503)
    declared = {int(s) for s in op["responses"]}
    assert expected <= declared, f"missing {sorted(expected - declared)}"
    for status in declared - {ok, 304} - ({503} if path == "/api/ready" else set()):
        if status >= 400:
            codes = error_codes(doc, op["responses"][str(status)])
            assert codes, status
    for status, header in ((401, "WWW-Authenticate"), (429, "Retry-After")):
        if status in declared:
            assert header in op["responses"][str(status)].get("headers", {}), status
    if 429 in declared:
        assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def error_codes(doc: dict[str, Any], response: dict[str, Any]) -> list[str]:
    """The codes an error response names: in its description and, but for the refusals before
    the app, as the enum of ``code`` in an ``allOf`` over the error body. Checks both agree."""
    named = re.findall(r"`([a-z_]+)`", response["description"].partition("Codes:")[2])
    schema = response["content"]["application/json"]["schema"]
    if schema == {"$ref": ERROR_REF}:
        assert len(named) == 1, response  # one code, said in words
        return named
    base, narrowed = schema["allOf"]
    assert base == {"$ref": ERROR_REF}, schema
    enum = narrowed["properties"]["code"]["enum"]
    assert enum == named and narrowed["required"] == ["code"], (enum, named)
    every = set(resolve(doc, {"$ref": ERROR_REF})["properties"]["code"]["enum"])
    assert set(enum) <= every, set(enum) - every
    return list(enum)


@pytest.mark.parametrize(("method", "path", "guard", "ok", "body", "extra"), CONTRACT, ids=IDS)
def test_operation_security_and_body(
    doc: dict[str, Any], ops: dict[Any, Any],
    method: str, path: str, guard: str | None, ok: int, body: bool, extra: set[int],
) -> None:  # fmt: skip
    """Guarded operations require the bearer scheme; bodies are JSON (PATCH: merge-patch too)."""
    op = ops[(method, path)]
    required = {name for option in op.get("security", doc.get("security", [])) for name in option}
    assert bool(required) == bool(guard)
    assert bool(required & _bearer_names(doc)) == (guard not in (None, "refresh_cookie"))
    if not body:
        assert "requestBody" not in op
        return
    content = op["requestBody"]["content"]
    media = {"application/json"}
    if method == "patch":
        media.add("application/merge-patch+json")
    assert set(content) == media
    # Refresh takes its token from a cookie, a header or (optionally) the body.
    assert op["requestBody"].get("required") is (path != "/api/v1/auth/refresh")


@pytest.mark.parametrize(("method", "path", "guard", "ok", "body", "extra"), CONTRACT, ids=IDS)
def test_documented_security_matches_the_server(
    client: FlaskClient, method: str, path: str, guard: str | None, ok: int, body: bool,
    extra: set[int],
) -> None:  # fmt: skip
    """Calling each operation without a token is 401 exactly when it is documented as guarded."""
    response = client.open(path.replace("{}", str(uuid.uuid4())), method=method.upper())
    assert (response.status_code == 401) == bool(guard), response.get_data(as_text=True)[:200]


# --- bounds: the document's numbers are the contract's and the server's -------------------------


def _email(n: int) -> str:
    """A fresh email of exactly ``n`` characters."""
    return uuid.uuid4().hex + "e" * (n - 44) + "@example.com"


def _password(n: int) -> str:
    """An uncommon password of ``n`` characters."""
    return ("Zq9!xY7#" * 20)[:n]


# (method, path, where, keyword, the contract's value, request kwargs for a value n)
BOUNDS: list[tuple[str, str, tuple[str, ...], str, int | None, Callable[[int], dict[str, Any]]]] = [
    ("post", "/api/v1/tasks", ("body", "title"), "maxLength", 200,
     lambda n: {"json": {"title": "t" * n}}),
    ("post", "/api/v1/tasks", ("body", "notes"), "maxLength", 10_000,
     lambda n: {"json": {"title": "x", "notes": "n" * n}}),
    ("post", "/api/v1/tasks", ("body", "tags"), "maxItems", 20,
     lambda n: {"json": {"title": "x", "tags": [f"t{i}" for i in range(n)]}}),
    ("post", "/api/v1/tasks", ("body", "tags", "items"), "maxLength", 50,
     lambda n: {"json": {"title": "x", "tags": ["g" * n]}}),
    ("get", "/api/v1/tasks", ("query", "limit"), "maximum", 100,
     lambda n: {"query_string": {"limit": n}}),
    ("get", "/api/v1/tasks", ("query", "limit"), "minimum", 1,
     lambda n: {"query_string": {"limit": n}}),
    ("get", "/api/v1/tasks/changes", ("query", "limit"), "maximum", None,
     lambda n: {"query_string": {"limit": n}}),
    ("post", "/api/v1/auth/register", ("body", "name"), "maxLength", 100,
     lambda n: {"json": {"email": unique_email(), "password": PASSWORD, "name": "n" * n}}),
    ("post", "/api/v1/auth/register", ("body", "password"), "maxLength", 128,
     lambda n: {"json": {"email": unique_email(), "password": _password(n)}}),
    ("post", "/api/v1/auth/register", ("body", "password"), "minLength", 8,
     lambda n: {"json": {"email": unique_email(), "password": _password(n)}}),
    ("post", "/api/v1/auth/register", ("body", "email"), "maxLength", 254,
     lambda n: {"json": {"email": _email(n), "password": PASSWORD}}),
    ("patch", "/api/v1/auth/me", ("body", "name"), "maxLength", 100,
     lambda n: {"json": {"name": "n" * n}}),
]  # fmt: skip


def _documented_bound(doc: dict[str, Any], method: str, path: str, where: tuple[str, ...],
                      name: str) -> Any:  # fmt: skip
    """The value of keyword ``name`` at ``where`` in the operation's body or query."""
    op = operations(doc)[(method, path)]
    if where[0] == "query":
        node = next(p["schema"] for p in op["parameters"] if p["name"] == where[1])
    else:
        node = resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
        node = node["properties"][where[1]]
    for part in where[2:]:
        node = keyword(doc, node, part)
    return keyword(doc, node, name)


@pytest.mark.parametrize(
    ("method", "path", "where", "name", "contract", "build"),
    BOUNDS,
    ids=[f"{b[1]} {'.'.join(b[2][1:])} {b[3]}" for b in BOUNDS],
)
def test_documented_bounds_are_enforced(
    doc: dict[str, Any], alice: User, method: str, path: str, where: tuple[str, ...],
    name: str, contract: int | None, build: Callable[[int], dict[str, Any]],
) -> None:  # fmt: skip
    """The document's bound equals the contract's; the server accepts it and refuses one past."""
    bound = _documented_bound(doc, method, path, where, name)
    assert isinstance(bound, int)
    if contract is not None:
        assert bound == contract
    beyond = bound - 1 if name.startswith("min") else bound + 1
    at_bound = alice.request(method.upper(), path, **build(bound))
    assert at_bound.status_code == SUCCESS[(method, path)], at_bound.json
    past = alice.request(method.upper(), path, **build(beyond))
    assert past.status_code == 400 and past.json["code"] == "validation_error"


def test_documented_enums_are_the_servers(doc: dict[str, Any], alice: User) -> None:
    """Priority and sort enums match what the server accepts."""
    priorities = _documented_bound(doc, "post", "/api/v1/tasks", ("body", "priority"), "enum")
    assert set(priorities) == {"none", "low", "medium", "high"}
    for value in priorities:
        created = alice.request("POST", "/api/v1/tasks", json={"title": "x", "priority": value})
        assert created.status_code == 201 and created.json["priority"] == value
    sorts = _documented_bound(doc, "get", "/api/v1/tasks", ("query", "sort"), "enum")
    fields = ["created_at", "updated_at", "due_at", "priority", "title", "position"]
    assert set(sorts) == set(fields) | {f"-{f}" for f in fields}
    for value in ["-title", "nope"]:
        answer = alice.request("GET", "/api/v1/tasks", query_string={"sort": value})
        assert answer.status_code == (200 if value in sorts else 400)


# --- the interactive page -----------------------------------------------------------------------


def test_docs_page_and_assets(doc_client: FlaskClient) -> None:
    """/api/docs is HTML whose local assets load and point at the document."""
    page = doc_client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    texts = [html]
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the API (offline use)"
        with doc_client.get(asset) as answer:  # closing releases the sent file
            assert answer.status_code == 200 and answer.get_data(), asset
            texts.append(answer.get_data(as_text=True))
    assert any(DOC_URL in text for text in texts)
    assert doc_client.get("/api/docs/assets/nope.js").status_code == 404


# --- what client generators need ---------------------------------------------------------------


def _request_schemas(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every request body schema of the document, by operation id."""
    return {op["operationId"]: resolve(doc, media["schema"])
            for op in operations(doc).values() if "requestBody" in op
            for media in op["requestBody"]["content"].values()}  # fmt: skip


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object inside ``node``."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_operation_ids_read_well_in_camel_case(ops: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Unique, camelCase, and no word twice in a row (no ``get_get_me``)."""
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids))
    for op_id in ids:
        assert CAMEL_CASE.fullmatch(op_id), op_id
        words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+", op_id)]
        assert all(a != b for a, b in itertools.pairwise(words)), op_id
    named = {key: ops[key]["operationId"] for key in ops}
    assert named[("get", "/api/v1/auth/me")] == "getMe"
    assert named[("patch", "/api/v1/tasks/{}")] == "patchTask"
    assert named[("get", "/api/v1/tasks")] == "listTasks"
    assert named[("post", "/api/v1/tasks")] == "createTask"


def test_request_schemas_carry_no_defaults(doc: dict[str, Any]) -> None:
    """Generators make a field with a ``default`` required (openapi-typescript does): request
    schemas carry none, and require exactly the contract's required fields."""
    schemas = _request_schemas(doc)
    for op_id, schema in schemas.items():
        defaults = [node for node in _walk(schema) if "default" in node]
        assert not defaults, (op_id, defaults)
    required = {op_id: set(schema.get("required", [])) for op_id, schema in schemas.items()}
    assert required["register"] == {"email", "password"}
    assert required["login"] == {"email", "password"}
    assert required["refresh"] == set()
    assert required["createTask"] == required["replaceTask"] == {"title"}
    assert required["patchTask"] == set()
    assert required["updateMe"] == {"name"}
    patch = schemas["patchTask"]["properties"]
    assert {"type": "null"} in patch["due_at"]["anyOf"], "null clears due_at"
    nullable = {name for name, prop in patch.items() if "anyOf" in prop}
    clearable = {"due_at", "parent_id", "recurrence", "timezone"}
    assert nullable == clearable | {"completed_at", "next_occurrence_id"}, (
        "due_at, parent_id (back to the top level), recurrence (none) and timezone (UTC), and "
        "the ignored completed_at and next_occurrence_id"
    )


def test_server_set_fields_are_read_only(doc: dict[str, Any]) -> None:
    """A client may send back what it read: server-set fields are accepted, marked readOnly,
    typed as they are read, and never required."""
    server_set = {"id", "completed_at", "created_at", "updated_at", "version"}
    for op_id in ("createTask", "replaceTask", "patchTask"):
        schema = _request_schemas(doc)[op_id]
        assert schema["additionalProperties"] is False
        for name in server_set:
            prop = schema["properties"][name]
            assert prop["readOnly"] is True and ("type" in prop or "anyOf" in prop), (op_id, name)
        assert not server_set & set(schema.get("required", []))


def test_response_fields_always_sent_are_required(doc: dict[str, Any]) -> None:
    """Fields the server always sends are required; fields it leaves out are never null."""
    schemas = doc["components"]["schemas"]
    assert set(schemas["TokenPair"]["required"]) == {"access_token", "token_type", "expires_in"}
    assert schemas["TokenPair"]["properties"]["refresh_token"] == {
        **schemas["TokenPair"]["properties"]["refresh_token"], "type": "string"}  # fmt: skip
    assert schemas["ChangeItem"]["properties"]["task"]["$ref"].endswith("/TaskPublic")
    assert "details" not in schemas["ErrorBody"]["required"]
    assert schemas["ErrorBody"]["properties"]["details"]["type"] == "array"


def test_query_parameters_are_described_booleans_are_booleans(doc: dict[str, Any]) -> None:
    """Every query parameter has a description and no null; boolean ones are booleans."""
    for (method, path), op in operations(doc).items():
        for param in op["parameters"]:
            assert param.get("description"), (method, path, param["name"])
            if param["in"] == "query":
                assert {"type": "null"} not in param["schema"].get("anyOf", []), param
                assert param["schema"].get("default", 0) is not None, param
    listing = {p["name"]: p for p in operations(doc)[("get", "/api/v1/tasks")]["parameters"]}
    assert listing["completed"]["schema"] == {"type": "boolean"}
    assert listing["completed"]["required"] is False
    clear = operations(doc)[("delete", "/api/v1/tasks")]["parameters"]
    assert clear == [{**clear[0], "schema": {"type": "boolean", "enum": [True]}, "required": True}]


def test_boolean_query_parameters_take_true_and_false(alice: User) -> None:
    """What a generated client sends for a boolean (``true``/``false``) is what the server
    reads; anything else is 400."""
    alice.create_task(title="done", completed=True)
    alice.create_task(title="open")
    for value, titles in (("true", ["done"]), ("false", ["open"])):
        page = alice.request("GET", "/api/v1/tasks", query_string={"completed": value})
        assert [task["title"] for task in page.json["items"]] == titles
    for value in ("True", "1", "yes", ""):
        page = alice.request("GET", "/api/v1/tasks", query_string={"completed": value})
        assert page.status_code == 400 and page.json["details"][0]["field"] == "completed"


def _server_codes() -> set[str]:
    """Every code the server can put in an error body, from where it makes them."""
    from taskapi import errors, server

    codes = {code for _, code in errors.DOMAIN_STATUS.values()}
    codes |= {code for code, _ in errors.HTTP_CODES.values()}
    codes |= {refusal[2] for refusal in server.REFUSALS}
    package = Path(errors.__file__).parent
    pattern = re.compile(r'(?:ApiError\(\s*\d{3},\s*|unauthorized\(\s*|"code":\s*)"([a-z_]+)"')
    for source in package.rglob("*.py"):
        codes |= set(pattern.findall(source.read_text()))
    return codes


def test_error_codes_are_an_enum_of_every_code(doc: dict[str, Any]) -> None:
    """``ErrorBody.code`` lists the contract's codes and every other code the server sends."""
    enum = resolve(doc, {"$ref": ERROR_REF})["properties"]["code"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) >= CONTRACT_CODES, CONTRACT_CODES - set(enum)
    assert set(enum) == _server_codes() | CONTRACT_CODES


def test_error_responses_name_their_codes(ops: dict[tuple[str, str], dict[str, Any]],
                                          doc: dict[str, Any]) -> None:  # fmt: skip
    """Each error response names its codes; a few route-specific ones, as samples."""

    def codes(method: str, path: str, status: int) -> set[str]:
        return set(error_codes(doc, ops[(method, path)]["responses"][str(status)]))

    assert codes("post", "/api/v1/auth/login", 401) >= {"invalid_credentials"}
    assert "token_expired" not in codes("post", "/api/v1/auth/login", 401)
    assert codes("post", "/api/v1/auth/register", 409) == {"email_taken"}
    assert codes("post", "/api/v1/tasks", 409) == {"idempotency_conflict", "quota_exceeded"}
    assert codes("post", "/api/v1/tasks", 400) == {"invalid_json", "validation_error"}
    assert codes("get", "/api/v1/tasks", 400) == {"validation_error"}
    assert codes("get", "/api/v1/tasks/{}", 401) >= {"unauthorized", "token_expired",
                                                     "token_revoked"}  # fmt: skip
    assert codes("post", "/api/v1/auth/refresh", 403) == {"csrf_failed"}
    assert codes("post", "/api/v1/auth/password", 403) == {
        "insufficient_scope",  # a personal token: account routes take sessions only
        "invalid_credentials",
    }
    assert codes("get", "/api/v1/tasks/changes", 410) == {"sync_token_expired"}
    assert codes("put", "/api/v1/tasks/{}", 428) == {"precondition_required"}
    assert codes("get", "/api/v1/tasks", 408) == {"request_timeout"}


def test_headers_are_documented(ops: dict[tuple[str, str], dict[str, Any]],
                                doc: dict[str, Any]) -> None:  # fmt: skip
    """RateLimit-* wherever the limiter counted, Retry-After on 429, Set-Cookie on login,
    refresh and logout, ETag on 304, Location and Link, and 405 with Allow."""
    rate = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    for (method, path), op in ops.items():
        limited = path.startswith("/api/v1") and path != DOC_URL
        for status, response in op["responses"].items():
            headers = set(response.get("headers", {}))
            assert "X-Request-ID" in headers, (method, path, status)
            counted = limited and status not in BEFORE_LIMITER and not status.startswith("5")
            if counted:
                assert rate <= headers, (method, path, status)
            elif not limited or status in BEFORE_LIMITER:
                assert not rate & headers, (method, path, status)
    for path in ("/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"):
        ok = next(r for s, r in ops[("post", path)]["responses"].items() if s.startswith("2"))
        assert "Set-Cookie" in ok["headers"], path
    not_modified = ops[("get", "/api/v1/tasks/{}")]["responses"]["304"]
    assert "ETag" in not_modified["headers"] and "content" not in not_modified
    created = ops[("post", "/api/v1/tasks")]["responses"]["201"]["headers"]
    assert {"Location", "ETag", "Idempotent-Replayed"} <= set(created)
    assert "absolute" in created["Location"]["description"]
    assert "Link" in ops[("get", "/api/v1/tasks")]["responses"]["200"]["headers"]
    refused = doc["components"]["responses"]["MethodNotAllowed"]
    assert refused["headers"]["Allow"]["required"] is True
    assert error_codes(doc, refused) == ["method_not_allowed"]
    assert "components/responses/MethodNotAllowed" in doc["info"]["description"]


def test_servers_and_descriptions(ops: dict[tuple[str, str], dict[str, Any]],
                                  doc: dict[str, Any]) -> None:  # fmt: skip
    """A relative server (works wherever the API is served); delta sync and idempotency keys
    are explained."""
    assert doc["servers"] == [{**doc["servers"][0], "url": "/"}]
    changes = ops[("get", "/api/v1/tasks/changes")]
    assert "Without since" in changes["description"] and "410" in changes["description"]
    since = next(p for p in changes["parameters"] if p["name"] == "since")
    assert "beginning" in since["description"] and "410" in since["description"]
    key = next(p for p in ops[("post", "/api/v1/tasks")]["parameters"]
               if p["name"] == "Idempotency-Key")  # fmt: skip
    assert "24 hours" in key["description"] and "this user" in key["description"]
    assert {tag["name"] for tag in doc["tags"]} >= {t for op in ops.values() for t in op["tags"]}


def test_every_component_is_used(doc: dict[str, Any]) -> None:
    """Every component schema is referenced (redocly's no-unused-components ignores only the
    405 response, which no operation can answer: see clients/redocly.yaml)."""
    text = json.dumps({k: v for k, v in doc.items() if k != "components"})
    schemas = doc["components"]["schemas"]
    referenced = set(re.findall(r"#/components/schemas/(\w+)", text + json.dumps(schemas)))
    assert set(schemas) <= referenced, set(schemas) - referenced


def test_location_and_link_are_absolute(alice: User) -> None:
    """One rule for URLs in headers: both absolute, on the request's host."""
    first = alice.request("POST", "/api/v1/tasks", json={"title": "one"})
    alice.request("POST", "/api/v1/tasks", json={"title": "two"})
    assert first.headers["Location"] == f"http://localhost/api/v1/tasks/{first.json['id']}"
    page = alice.request("GET", "/api/v1/tasks", query_string={"limit": 1})
    assert page.headers["Link"].startswith("<http://localhost/api/v1/tasks?")
