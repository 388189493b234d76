"""taskapi: an authenticated, multi-user task API. ``create_app`` wires every part."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from taskapi.api import auth, docs, health, tasks
from taskapi.api.deps import close_db_session
from taskapi.db import make_engine, make_session_factory
from taskapi.errors import ApiError, register_error_handlers
from taskapi.limits import LoginFailureGuard, make_limiter
from taskapi.logs import install_access_log
from taskapi.security import REFRESH_COOKIE_NAME, init_jwt, jwt_config
from taskapi.settings import Settings, load_settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EXPOSED_HEADERS = [
    "ETag", "Location", "Link", "Retry-After", "X-Request-ID", "Idempotent-Replayed",
    "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
]  # fmt: skip
ALLOWED_HEADERS = [
    "Authorization", "Content-Type", "X-CSRF-TOKEN", "Idempotency-Key", "If-Match",
    "If-None-Match", "X-Request-ID",
]  # fmt: skip


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application from settings (read from the environment when not given)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        **jwt_config(settings),
    )
    engine = make_engine(settings.sqlalchemy_url)
    app.extensions["taskapi"] = {
        "settings": settings,
        "engine": engine,
        "session_factory": make_session_factory(engine),
    }
    register_error_handlers(app)
    init_jwt(app)
    _install_request_hooks(app, settings)
    install_access_log(app)
    if settings.cors_origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origins)}},
            supports_credentials=True,
            expose_headers=EXPOSED_HEADERS,
            allow_headers=ALLOWED_HEADERS,
            max_age=settings.cors_max_age,
            vary_header=True,
        )
    for blueprint in (auth.bp, tasks.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    # After the request-id and body-size hooks, so 413 ranks before 429.
    limiter = make_limiter(app, settings)
    app.extensions["taskapi"]["login_guard"] = LoginFailureGuard(settings)
    if settings.redis_url:
        app.extensions["taskapi"]["redis_probe"] = limiter.storage.check
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    app.teardown_appcontext(close_db_session)
    return app


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    """Request ids, the early body-size check and response headers."""

    @app.before_request
    def assign_request_id() -> None:
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex

    @app.before_request
    def reject_oversized_body() -> None:
        # Checked before auth and rate limits: the contract ranks 413 above 401 and 429.
        # Unknown routes and methods still answer 404/405 first, as the contract orders them.
        length = request.content_length
        if (
            request.routing_exception is None
            and length is not None
            and length > settings.max_body_bytes
        ):
            raise ApiError(413, "payload_too_large", "The request body is too large.")

    @app.after_request
    def add_standard_headers(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/v1/auth"):
            response.headers["Cache-Control"] = "no-store"
        if settings.hsts and settings.is_production:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if response.status_code == 401 and "WWW-Authenticate" not in response.headers:
            _add_bearer_challenge(app, response)
        if request.method == "OPTIONS" and not response.get_data():
            # Flask's automatic OPTIONS answer is an empty text/html 200; say "no content".
            response.status_code = 204
            response.headers.pop("Content-Type", None)
        if settings.cors_origins:
            response.vary.add("Origin")
        return response


def _add_bearer_challenge(app: Flask, response: Response) -> None:
    """RFC 6750: every 401 of a guarded route (wrong password on /auth/password too) challenges."""
    view = app.view_functions.get(request.endpoint or "")
    operation = getattr(view, "operation", None)
    if operation is None or operation.auth is None:
        return
    sent = "Authorization" in request.headers or REFRESH_COOKIE_NAME in request.cookies
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if sent else "Bearer"
