"""The OpenAPI document describes exactly the contract, with the server's own bounds."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
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

# Every operation of API.md: (method, path, guard, success status, has a JSON body, extra statuses).
CONTRACT = [
    ("post", "/api/v1/auth/register", None, 201, True, {409}),
    ("post", "/api/v1/auth/login", None, 200, True, set()),
    ("post", "/api/v1/auth/refresh", "refresh", 200, True, {403}),
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
            schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, status
    for status, header in ((401, "WWW-Authenticate"), (429, "Retry-After")):
        if status in declared:
            assert header in op["responses"][str(status)].get("headers", {}), status


@pytest.mark.parametrize(("method", "path", "guard", "ok", "body", "extra"), CONTRACT, ids=IDS)
def test_operation_security_and_body(
    doc: dict[str, Any], ops: dict[Any, Any],
    method: str, path: str, guard: str | None, ok: int, body: bool, extra: set[int],
) -> None:  # fmt: skip
    """Guarded operations require the bearer scheme; bodies are JSON (PATCH: merge-patch too)."""
    op = ops[(method, path)]
    required = {name for option in op.get("security", doc.get("security", [])) for name in option}
    assert bool(required & _bearer_names(doc)) == bool(guard)
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
    fields = ["created_at", "updated_at", "due_at", "priority", "title"]
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
