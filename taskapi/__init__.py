"""taskapi: an authenticated, multi-user task API. ``create_app`` wires every part."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from taskapi.api import account, auth, docs, health, lists, tasks, tokens
from taskapi.api.deps import AppState, close_db_session
from taskapi.api.hooks import FoldHostCase, install_request_hooks
from taskapi.api.tasks import TaskIdConverter
from taskapi.db import make_engine, make_session_factory, reads_in_autocommit
from taskapi.errors import register_error_handlers
from taskapi.limits import Counters, PasswordGuard, install_request_budgets
from taskapi.logs import install_access_log
from taskapi.metrics import install_metrics
from taskapi.passwords import dummy_hash
from taskapi.security import init_jwt, jwt_config
from taskapi.settings import Settings, load_settings

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
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, **jwt_config(settings))
    if settings.allowed_hosts:
        # Checked while routing, before any view can echo the Host into a Link URL.
        app.config["TRUSTED_HOSTS"] = list(settings.allowed_hosts)
        app.wsgi_app = FoldHostCase(app.wsgi_app)  # type: ignore[method-assign]
    engine = make_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    counters = Counters(settings.redis_url)
    app.extensions["taskapi"] = AppState(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(reads_in_autocommit(engine)),
        counters=counters,
        password_guard=PasswordGuard(settings, counters),
        redis_probe=counters.redis_answers if settings.redis_url else None,
    )
    init_jwt(app)
    register_error_handlers(app)
    install_request_hooks(app, settings)
    install_access_log(app)
    _init_cors(app, settings)
    # "changes" is a route of its own, so /tasks/changes must not match /tasks/<task_id>.
    app.url_map.converters["task_id"] = TaskIdConverter
    for blueprint in (auth.bp, account.bp, tokens.bp, tasks.bp, lists.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    install_request_budgets(app, settings, counters)  # after the body-size hook: 413 first
    sessions = app.extensions["taskapi"].session_factory
    install_metrics(app, settings, engine=engine, sessions=sessions, counters=counters)
    if settings.otel_endpoint:  # otherwise nothing of OpenTelemetry is even imported
        from taskapi.tracing import install_tracing

        install_tracing(app, settings, engine=engine, counters=counters)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    app.teardown_appcontext(close_db_session)
    # Hash the decoy now, so that even the first login with an unknown email costs one bcrypt.
    dummy_hash(settings.bcrypt_rounds)
    return app


def _init_cors(app: Flask, settings: Settings) -> None:
    """CORS for the exact origins on the allowlist only, with credentials."""
    if not settings.cors_origins:
        return
    CORS(
        app,
        resources={r"/api/*": {"origins": list(settings.cors_origins)}},
        supports_credentials=True,
        expose_headers=EXPOSED_HEADERS,
        allow_headers=ALLOWED_HEADERS,
        max_age=settings.cors_max_age,
        vary_header=True,
        # flask-cors answers requests without an Origin too by default; browsers never need it.
        always_send=False,
    )
