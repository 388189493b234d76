"""What the server refuses before (or while) reading a request, in the contract's JSON shape.

gunicorn refuses a request line over the limit (414), headers too large (431) and malformed
requests (400) itself; a malformed chunked body reaches the app as an unreadable body (400
``invalid_json``, counted by the rate limiter). None of it is an HTML page or a traceback.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import PASSWORD, LiveServer, server_env, start_server, unique_email

pytestmark = pytest.mark.slow  # every test here talks to a real server

AUTH = "/api/v1/auth"
CHUNKED_LOGIN = (
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@pytest.fixture(scope="module")
def server(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for this module, rate limits on (as shipped)."""
    workdir = tmp_path_factory.mktemp("errors")
    live = start_server({**server_env(workdir), "TASKAPI_DATABASE_URL": sqlite_url}, workdir)
    yield live
    live.stop()


def exchange(server: LiveServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split(" ")[1]), headers, body


def assert_json_error(
    status: int, headers: dict[str, str], body: bytes, expected: tuple[int, str]
) -> dict[str, Any]:
    """The contract's error shape with this status and code."""
    assert status == expected[0], body
    assert headers["content-type"] == "application/json", headers
    assert "x-request-id" in headers, headers
    payload = json.loads(body)
    assert payload["code"] == expected[1], payload
    assert isinstance(payload["error"], str), payload
    return payload  # type: ignore[no-any-return]


def test_a_request_line_over_the_limit_is_a_json_414(server: LiveServer) -> None:
    """A long cursor makes the request line too long: 414 ``uri_too_long``."""
    answer = requests.get(f"{server.url}/api/v1/tasks", params={"cursor": "a" * 9000}, timeout=10)
    assert_json_error(
        answer.status_code, dict(answer.headers.lower_items()), answer.content,
        (414, "uri_too_long"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "a" * 9000}, {f"X-Many-{n}": "a" for n in range(120)}],
    ids=["one-huge-header", "too-many-headers"],
)
def test_headers_too_large_are_a_json_431(server: LiveServer, headers: dict[str, str]) -> None:
    """A header field over the limit, or too many fields: 431 ``headers_too_large``."""
    answer = requests.get(f"{server.url}/api/health", headers=headers, timeout=10)
    assert_json_error(
        answer.status_code, dict(answer.headers.lower_items()), answer.content,
        (431, "headers_too_large"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /api/health HTTP/9.9\r\nHost: localhost\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["request-line", "http-version", "header-name", "length-and-chunked"],
)
def test_a_malformed_request_is_a_json_400(server: LiveServer, raw: bytes) -> None:
    """gunicorn's refusals of malformed requests: 400 ``validation_error``, not HTML."""
    status, headers, body = exchange(server, raw)
    assert_json_error(status, headers, body, (400, "validation_error"))


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;=\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-chunk-size", "missing-crlf", "bad-extension"],
)
def test_a_malformed_chunked_body_is_a_counted_json_400(server: LiveServer, chunks: bytes) -> None:
    """400 ``invalid_json`` from the app, counted by the limiter, and no traceback logged."""
    remaining = []
    for _ in range(2):
        status, headers, body = exchange(server, CHUNKED_LOGIN + chunks)
        assert_json_error(status, headers, body, (400, "invalid_json"))
        remaining.append(int(headers["ratelimit-remaining"]))
    assert remaining[1] == remaining[0] - 1, remaining
    assert "Traceback" not in server.log(), server.log()


def test_a_malformed_chunked_body_on_a_guarded_route(server: LiveServer) -> None:
    """Ranked like any bad body: 401 without a token, 400 ``invalid_json`` with one."""
    body = {"email": unique_email(), "password": PASSWORD}
    assert requests.post(f"{server.url}{AUTH}/register", json=body, timeout=10).ok
    token = requests.post(f"{server.url}{AUTH}/login", json=body, timeout=10).json()
    request = (
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n%s\r\n"
        b"5\r\n{}XXXXX\r\n0\r\n\r\n"
    )
    status, headers, answer = exchange(server, request % b"")
    assert_json_error(status, headers, answer, (401, "unauthorized"))
    auth = f"Authorization: Bearer {token['access_token']}\r\n".encode()
    status, headers, answer = exchange(server, request % auth)
    assert_json_error(status, headers, answer, (400, "invalid_json"))
    assert "Traceback" not in server.log(), server.log()


def test_the_document_lists_the_server_refusals(server: LiveServer) -> None:
    """Every operation documents 408, 414 and 431 with the error schema, its code narrowed to
    the refusal's own."""
    document = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
    codes = {"408": "request_timeout", "414": "uri_too_long", "431": "headers_too_large"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, code in codes.items():
                response = operation["responses"].get(status)
                assert response is not None, (method, path, status)
                schema = response["content"]["application/json"]["schema"]
                narrowed = {"type": "object", "required": ["code"],
                            "properties": {"code": {"enum": [code]}}}  # fmt: skip
                assert schema == {"allOf": [{"$ref": "#/components/schemas/ErrorBody"}, narrowed]}
