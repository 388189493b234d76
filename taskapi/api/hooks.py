"""Request and response hooks every route shares: ids, body size, headers."""

from __future__ import annotations

import io
import logging
import re
import sys
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from flask import Flask, Response, g, request

from taskapi.api.deps import CALLER_CHECKS, FoldingChecks
from taskapi.errors import ApiError, invalid_json, payload_too_large
from taskapi.security import resolve_caller
from taskapi.settings import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BODYLESS_STATUSES = (204, 304)


def _assign_request_id() -> None:
    """Echo a well-formed client X-Request-ID, or make one."""
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _read_credentials(app: Flask) -> None:
    """Decide who is calling, once, before the limiter keys on it (see ``security``)."""
    if request.routing_exception is not None:
        return
    operation = getattr(app.view_functions.get(request.endpoint or ""), "operation", None)
    if operation is None or operation.auth is None:
        return
    checks = CALLER_CHECKS
    if operation.folded_read is not None:
        checks = FoldingChecks(operation.folded_read, request.view_args or {})
    g.credentials = resolve_caller(operation.auth, checks)


log = logging.getLogger("taskapi.hooks")


class _BodyTimeoutError(Exception):
    """The body's deadline passed. An ``Exception`` raised inside the server's reader, so that
    gunicorn marks the body failed and closes the connection after the answer."""


class _UnreadableBody(io.RawIOBase):
    """The body of a request whose body could not be read: reading it is a 400."""

    def readable(self) -> bool:
        """A stream that can be read, and fails when it is."""
        return True

    def readinto(self, buffer: object) -> int:
        """Refuse, with the contract's error."""
        raise invalid_json("The request body could not be read: malformed chunks, or cut short.")


def _body_deadline(seconds: int) -> AbstractContextManager[object]:
    """A deadline for reading the body: gevent's Timeout when gevent drives this process."""
    monkey = sys.modules.get("gevent.monkey")  # never import gevent just to ask
    if monkey is None or not monkey.is_module_patched("socket"):
        return nullcontext()
    import gevent

    deadline: AbstractContextManager[object] = gevent.Timeout(seconds, _BodyTimeoutError)
    return deadline


def _check_body_size(limit: int, timeout: int) -> None:
    """413 before auth and limits, as the contract ranks it; route 404/405 still come first.

    The body (at most ``limit`` bytes) is read here and handed on in memory, sized:
    a chunked body has no Content-Length, and Werkzeug would silently cut it at the limit.
    Under gevent (``taskapi serve``) the read has a deadline of ``timeout`` seconds, so a
    client that trickles or stalls its body gets a 408 and a closed connection. A body that
    cannot be read (broken chunked framing, or it ends early) is handed on as unreadable:
    the request is ranked and counted like any other (404, 429, 401, 415), reading its body
    is a 400 ``invalid_json``, and the server closes the connection after the answer.
    """
    if request.routing_exception is not None:
        return
    length = request.content_length
    if length is not None and length > limit:
        raise payload_too_large()
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return
    environ = request.environ
    try:
        with _body_deadline(timeout):
            body = environ["wsgi.input"].read(limit + 1)
    except _BodyTimeoutError:
        raise ApiError(408, "request_timeout", "The body did not arrive in time.") from None
    except Exception as error:  # the server's reader failed: malformed chunks, a lost client
        log.info("unreadable request body (request %s): %s", g.get("request_id"),
                 type(error).__name__)  # fmt: skip
        body = None
    if body is not None and len(body) > limit:
        raise payload_too_large()
    if body is None or (length is not None and len(body) < length):
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = _UnreadableBody(), "1"
    else:
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


class FoldHostCase:
    """WSGI middleware: host names are case-insensitive (RFC 9110), and Flask's trusted-host
    check is not, so the Host header is folded before routing checks it."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST")
        if host:
            environ["HTTP_HOST"] = host.lower()
        return self.wsgi_app(environ, start_response)


def install_request_hooks(app: Flask, settings: Settings) -> None:
    """Register the hooks; call before the limiter so that 413 ranks above 429."""
    app.before_request(_assign_request_id)
    app.before_request(
        lambda: _check_body_size(settings.max_body_bytes, settings.body_timeout_seconds)
    )
    app.before_request(lambda: _read_credentials(app))

    @app.after_request
    def add_standard_headers(response: Response) -> Response:
        """Request id, security headers, bodyless answers, Vary."""
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/v1/auth"):
            response.headers["Cache-Control"] = "no-store"
        if settings.hsts and settings.is_production:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if request.method == "OPTIONS" and not response.get_data():
            # Flask's automatic OPTIONS answer is an empty text/html 200: say "no content".
            response.status_code = 204
        if response.status_code in BODYLESS_STATUSES:
            response.headers.pop("Content-Type", None)
        if settings.cors_origins:
            response.vary.add("Origin")
        return response
