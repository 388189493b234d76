"""Prometheus metrics, counted in every gunicorn worker and exposed off the public listener.

Off unless ``TASKAPI_METRICS_PORT`` or ``TASKAPI_METRICS_TOKEN`` is set; then nothing of
``prometheus_client`` is imported before ``taskapi serve`` has set ``PROMETHEUS_MULTIPROC_DIR``.

Multiprocess mode: ``taskapi serve`` gives each server a fresh private folder (created before
the fork, removed at exit, ``multiprocess_directory``) where every worker writes its values;
whoever answers a scrape adds up every worker's files, and a worker that exits is marked dead
(``child_exit``) so its live gauges drop out while its counts stay in the totals.

Exposure: ``TASKAPI_METRICS_PORT`` serves the sum from the master process on
``TASKAPI_METRICS_BIND`` (127.0.0.1 by default), apart from the public port;
``TASKAPI_METRICS_TOKEN`` answers ``GET /metrics`` on the public port to
``Authorization: Bearer <token>`` and is a 404 to anyone else, as if absent.

Labels are bounded: a route is its URL rule (``/api/v1/tasks/<task_id:task_id>``), never the
raw path; unknown paths are ``unmatched``, unknown methods ``other``.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, g, request
from flask.signals import request_finished, request_started
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from taskapi.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.registry import Collector

    from taskapi.limits import Counters

log = logging.getLogger("taskapi.metrics")

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "unmatched"
REVOKE_REASONS = ("logout", "logout_all", "session_delete", "refresh_reuse")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# How taskapi serve hands the database URL to its metrics listener process.
LISTENER_DATABASE = "_TASKAPI_METRICS_DATABASE_URL"


def enabled(settings: Settings) -> bool:
    """Whether metrics are exposed at all (a port or a token); otherwise nothing is counted."""
    return settings.metrics_port is not None or settings.metrics_token is not None


# --- the instruments (one set per process) ---------------------------------------------------


@dataclass(frozen=True)
class Instruments:
    """Every metric a worker writes."""

    requests: Counter
    latency: Histogram
    rate_limited: Counter
    logins: Counter
    login_failures: Counter
    refresh_reuse: Counter
    sessions_revoked: Counter
    db_errors: Counter
    pool_checked_out: Gauge
    pool_size: Gauge
    redis_fallback: Gauge


_instruments: Instruments | None = None
_building = threading.Lock()


def _build() -> Instruments:
    """Create the metrics in the default registry (imported here, after the fork)."""
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        requests=Counter(
            "taskapi_http_requests", "Requests answered, by route template, method and status.",
            ["route", "method", "status"],
        ),
        latency=Histogram(
            "taskapi_http_request_duration_seconds",
            "Time from the start of a request to its response, by route template and method.",
            ["route", "method"],
        ),
        rate_limited=Counter(
            "taskapi_http_rate_limited", "Requests refused with 429 by a rate limit.", ["route"]
        ),
        logins=Counter("taskapi_logins", "Successful logins."),
        login_failures=Counter(
            "taskapi_login_failures", "Logins refused for a wrong password, unknown email or "
            "disabled account (not counting 429s).",
        ),
        refresh_reuse=Counter(
            "taskapi_refresh_token_reuse",
            "Refresh tokens presented again after rotation (the session is revoked).",
        ),
        sessions_revoked=Counter(
            "taskapi_session_revocations",
            "Revocations that ended sessions, by reason (logout_all counts once per call).",
            ["reason"],
        ),
        db_errors=Counter(
            "taskapi_db_errors", "Requests answered 503 because the database failed.", ["kind"]
        ),
        pool_checked_out=Gauge(
            "taskapi_db_pool_checked_out", "Database connections in use, summed over workers.",
            multiprocess_mode="livesum",
        ),
        pool_size=Gauge(
            "taskapi_db_pool_size", "Persistent database connections the workers' pools keep "
            "(each may open its max_overflow more).", multiprocess_mode="livesum",
        ),
        redis_fallback=Gauge(
            "taskapi_redis_fallback", "1 while a worker counts rate limits in memory because "
            "Redis is unreachable.", multiprocess_mode="livemax",
        ),
    )  # fmt: skip


def instruments() -> Instruments:
    """This process's instruments, created on first use."""
    global _instruments
    with _building:
        if _instruments is None:
            _instruments = _build()
            for reason in REVOKE_REASONS:  # present at zero, so increase() sees the first one
                _instruments.sessions_revoked.labels(reason)
        return _instruments


# What views and hooks call: no-ops while metrics are off.


def login_succeeded() -> None:
    """A login succeeded."""
    if _instruments is not None:
        _instruments.logins.inc()


def login_failed() -> None:
    """A login was refused (wrong password, unknown email, disabled account)."""
    if _instruments is not None:
        _instruments.login_failures.inc()


def refresh_reuse_detected() -> None:
    """A rotated refresh token came back; its session was revoked."""
    if _instruments is not None:
        _instruments.refresh_reuse.inc()
        _instruments.sessions_revoked.labels("refresh_reuse").inc()


def session_revoked(reason: str) -> None:
    """A logout, logout-all or session delete ended sessions (``reason``: REVOKE_REASONS)."""
    if _instruments is not None:
        _instruments.sessions_revoked.labels(reason).inc()


def redis_fallback(in_memory: bool) -> None:
    """Rate limits moved to memory (Redis unreachable) or back to Redis."""
    if _instruments is not None:
        _instruments.redis_fallback.set(1 if in_memory else 0)


# --- the worker side: counting requests, the pool, and /metrics with a token ------------------


def install_metrics(
    app: Flask,
    settings: Settings,
    *,
    engine: Engine,
    sessions: Callable[[], Session],
    counters: Counters,
) -> None:
    """Count this app's requests, pool and Redis fallback; serve /metrics with the token."""
    if not enabled(settings):
        return
    found = instruments()
    _count_requests(app, found)
    _watch_pool(engine, found)
    found.redis_fallback.set(0)
    counters.on_fallback = redis_fallback
    if settings.metrics_token is not None:
        token = settings.metrics_token.get_secret_value()
        app.register_blueprint(_token_blueprint(token, _worker_registry(sessions)))


def _count_requests(app: Flask, found: Instruments) -> None:
    """Requests, latency, 429s and database errors, from Flask's request signals.

    Signals see every request that reaches a view or an error handler, whatever order other
    hooks run in, and ``request_finished`` sees the final response.
    """

    def started(_sender: Flask, **_extra: Any) -> None:
        """Remember when the request started."""
        g.metrics_started = time.perf_counter()

    def finished(_sender: Flask, response: Response, **_extra: Any) -> None:
        """Count the answer under the route's template, never the raw path."""
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        status = response.status_code
        found.requests.labels(route, method, str(status)).inc()
        started_at = g.pop("metrics_started", None)
        if started_at is not None:
            found.latency.labels(route, method).observe(time.perf_counter() - started_at)
        if status == 429:
            found.rate_limited.labels(route).inc()
        kind = g.pop("database_error", None)  # set by the 503 handler in taskapi.errors
        if kind is not None:
            found.db_errors.labels(str(kind)).inc()

    request_started.connect(started, app, weak=False)
    request_finished.connect(finished, app, weak=False)


def _watch_pool(engine: Engine, found: Instruments) -> None:
    """Keep the pool gauges current on every checkout and checkin (QueuePool only)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return
    found.pool_size.inc(pool.size())

    # Counted, not sampled: at "checkin" the pool still counts the connection as out.
    event.listen(pool, "checkout", lambda *_args: found.pool_checked_out.inc())
    event.listen(pool, "checkin", lambda *_args: found.pool_checked_out.dec())


class OutboxCollector:
    """The mail outbox backlog, read from the database at scrape time."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Any]:
        """Pending messages and the oldest one's age; nothing when the database fails."""
        from prometheus_client.core import GaugeMetricFamily

        from taskapi.mail import backlog

        try:
            with self.sessions() as db:
                found = backlog(db)
        except Exception as error:  # the scrape still answers, without these two
            log.warning("metrics: mail outbox backlog unavailable: %s", type(error).__name__)
            return
        yield GaugeMetricFamily(
            "taskapi_mail_outbox_pending", "Messages waiting to be sent.", value=found.pending
        )
        yield GaugeMetricFamily(
            "taskapi_mail_outbox_oldest_age_seconds",
            "How long the oldest waiting message has waited (0 when none waits).",
            value=found.oldest_age_seconds or 0.0,
        )


class _Forward:
    """A collector that hands on another registry's metrics."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        """Everything the source has."""
        yield from self.source.collect()


def _worker_registry(sessions: Callable[[], Session]) -> CollectorRegistry:
    """What a worker answers: every worker's files in multiprocess mode, else its own."""
    from prometheus_client import REGISTRY, CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(OutboxCollector(sessions))
    return registry


def _token_blueprint(token: str, registry: CollectorRegistry) -> Blueprint:
    """``GET /metrics`` for ``Authorization: Bearer <token>``; a 404 to anyone else."""
    from prometheus_client import generate_latest
    from werkzeug.exceptions import NotFound

    bp = Blueprint("metrics", __name__)
    expected = f"Bearer {token}".encode()

    @bp.get("/metrics")
    def metrics() -> Response:
        """The metrics text, to the holder of the token only."""
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise NotFound()
        return Response(generate_latest(registry), content_type=CONTENT_TYPE)

    return bp


# --- the master side: the private folder, dead workers, the listener -------------------------


@contextmanager
def multiprocess_directory(settings: Settings) -> Iterator[str | None]:
    """A fresh private folder for the workers' files, in ``PROMETHEUS_MULTIPROC_DIR`` before
    any worker forks (and before ``prometheus_client`` is imported); removed at exit.

    One per server: never shared with another instance, never holding an earlier run's files.
    """
    if not enabled(settings):
        yield None
        return
    path = tempfile.mkdtemp(prefix="taskapi-metrics-")  # 0700, empty
    os.environ[MULTIPROC_VARIABLE] = path
    log.info("metrics: worker files in %s", path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)


def mark_worker_dead(_server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit``: drop an exited worker's live gauges (its counts stay)."""
    if os.environ.get(MULTIPROC_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


@contextmanager
def master_listener(settings: Settings) -> Iterator[None]:
    """Serve every worker's metrics on TASKAPI_METRICS_BIND:PORT, if set, from a small process
    of its own that lives as long as the server.

    Not a thread of gunicorn's master: a thread there when a worker forks kept workers from
    exiting on SIGTERM (gevent's patched shutdown then waits out the graceful timeout), and a
    database connection open in the master could be copied into a worker. Started and bound
    before gunicorn, so a port in use stops ``taskapi serve`` with one line (exit code 2).
    """
    if settings.metrics_port is None:
        yield
        return
    code = "import sys; from taskapi.metrics import serve_listener; serve_listener(sys.argv[1:])"
    args = [settings.metrics_bind, str(settings.metrics_port), str(os.getpid())]
    env = {**os.environ, LISTENER_DATABASE: settings.sqlalchemy_url}
    process = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":  # it said why on stderr
        process.wait()
        sys.exit(2)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_listener(argv: list[str]) -> None:
    """The listener process: ``<bind> <port> <server pid>``; ends with the server."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from taskapi.db import make_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    bind, port, server_pid = argv[0], int(argv[1]), int(argv[2])
    engine = make_engine(os.environ[LISTENER_DATABASE])
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(OutboxCollector(lambda: Session(engine)))
    try:
        start_http_server(port, addr=bind, registry=registry)
    except OSError as error:
        print(
            f"taskapi: TASKAPI_METRICS_PORT: cannot listen on {bind}:{port} ({error.strerror}); "
            "choose a free port or unset it",
            file=sys.stderr,
        )
        sys.exit(2)
    log.info("metrics: listening on http://%s:%d/metrics", bind, port)
    print("ready", flush=True)
    while os.getppid() == server_pid:  # the server died without stopping us: stop too
        time.sleep(1)


def gunicorn_hooks(settings: Settings) -> dict[str, Any]:
    """gunicorn options for metrics: mark exited workers dead (nothing when metrics are off)."""
    return {"child_exit": mark_worker_dead} if enabled(settings) else {}
