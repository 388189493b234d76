"""Helpers for the browser tests: Chromium, a static server for the example SPA, an API client.

The SPA (``examples/spa``) is served by a tiny ``http.server`` on its own port, so it and the
API are two origins, as in a real deployment. The API client here talks to the API from
Python (body mode), to set things up and to check what the browser did (or did not) do.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import IN_CI, PASSWORD

ROOT = Path(__file__).resolve().parents[1]
SPA_DIR = ROOT / "examples" / "spa"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
REFRESH_COOKIE = "taskapi_refresh"


def need_chromium() -> str:
    """Debian's Chromium (never Playwright's download); skip without it, fail in CI."""
    if not os.access(CHROMIUM, os.X_OK):
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return CHROMIUM


def need_playwright() -> None:
    """The playwright package; skip without it, fail in CI."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("the playwright package is required in CI (uv sync)")
        pytest.skip("the playwright package is not installed")


class _QuietFiles(SimpleHTTPRequestHandler):
    """Static files without access logs, never cached (each test sees the files as they are)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest's output clean."""

    def end_headers(self) -> None:
        """Add ``Cache-Control: no-store``."""
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class StaticServer:
    """Serve a folder on 127.0.0.1 from a thread of the test process."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(directory))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def origin(self, host: str = "127.0.0.1") -> str:
        """The origin of the files under ``host`` (127.0.0.1 and localhost are two origins)."""
        return f"http://{host}:{self.port}"

    def start(self) -> StaticServer:
        """Start serving in the background."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class Api:
    """The API from Python, in body mode: set-up and checks from outside the browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def url(self, path: str) -> str:
        """The full URL of an /api/v1 path."""
        return f"{self.base}/api/v1{path}"

    def register(self, email: str | None = None, name: str = "") -> str:
        """Create an account and return its email."""
        email = email or f"spa-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD, "name": name}
        answer = self.http.post(self.url("/auth/register"), json=body, timeout=10)
        assert answer.status_code == 201, answer.text
        return email

    def try_register(self, email: str) -> int:
        """The status of a registration attempt (201 when the email was free)."""
        body = {"email": email, "password": PASSWORD}
        return self.http.post(self.url("/auth/register"), json=body, timeout=10).status_code

    def login(self, email: str) -> str:
        """Log in (body mode) and return an access token."""
        body = {"email": email, "password": PASSWORD}
        answer = self.http.post(self.url("/auth/login"), json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def get(self, token: str, path: str) -> Any:
        """GET an /api/v1 path with a token; the JSON body."""
        answer = self.http.get(self.url(path), headers=bearer(token), timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def create_task(self, token: str, title: str, **fields: Any) -> dict[str, Any]:
        """Create a task and return it."""
        answer = self.http.post(
            self.url("/tasks"), json={"title": title, **fields}, headers=bearer(token), timeout=10
        )
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def delete_task(self, token: str, task_id: str) -> None:
        """Delete a task."""
        answer = self.http.delete(self.url(f"/tasks/{task_id}"), headers=bearer(token), timeout=10)
        assert answer.status_code == 204, answer.text

    def tasks(self, token: str) -> list[dict[str, Any]]:
        """Every task of the user, following next_cursor."""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = self.get(token, f"/tasks{query}")
            found.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    def sessions(self, token: str) -> list[dict[str, Any]]:
        """The user's live sessions."""
        return self.get(token, "/auth/sessions?limit=100")["items"]  # type: ignore[no-any-return]

    def with_cookie(self, method: str, path: str, cookie: str, csrf: str | None = None) -> Any:
        """A request carrying only a refresh cookie (and a CSRF header), as a browser would."""
        headers = {"Cookie": f"{REFRESH_COOKIE}={cookie}"}
        if csrf is not None:
            headers["X-CSRF-TOKEN"] = csrf
        return self.http.request(method, self.url(path), headers=headers, timeout=10)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}
