"""gunicorn, run in-process so ``taskapi serve`` works from any directory and any install.

Worker model: gunicorn's gevent worker (``TaskApiWorker``). A connection costs a greenlet,
not a thread, so clients that trickle their headers or body cost a little memory each, not a
share of a small thread pool that every other request waits for. What a greenlet cannot
do is block the process: psycopg 3 and redis-py wait cooperatively once gevent has patched
the standard library, and bcrypt runs in gevent's thread pool (``taskapi.passwords``).

Slow clients are bounded twice: a request's line and headers must arrive within
``TASKAPI_HEADER_TIMEOUT_SECONDS`` (gunicorn's ``keepalive``, see ``timeout_ctx``), its body
within ``TASKAPI_BODY_TIMEOUT_SECONDS`` (``taskapi.api.hooks``). gunicorn's own refusals
(414, 431, a malformed request) answer in the contract's JSON shape (``handle_error``).

Each worker also runs the mail sender (``taskapi.mail``) as a greenlet beside its requests,
unless ``TASKAPI_MAIL_SENDER=false``; it stops when the worker does.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

import gevent
from flask import Flask
from gevent.monkey import MonkeyPatchWarning
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.http import errors
from gunicorn.workers.ggevent import GeventWorker

from taskapi.logs import JsonFormatter, configure_logging, uses_json
from taskapi.mail import Sender, start_background_sender
from taskapi.metrics import gunicorn_hooks, master_listener, multiprocess_directory
from taskapi.settings import Settings, SettingsError, masked_url

# Connections one worker holds at once (greenlets); more wait in the listen backlog. Each
# costs a file descriptor and, while its body is read, up to TASKAPI_MAX_BODY_BYTES.
WORKER_CONNECTIONS = 1000
# On a worker's exit, how long its mail sender may take to finish the message in hand.
MAIL_SENDER_STOP_SECONDS = 10

# gunicorn's refusals before the app, as (status, code, message); the first match wins.
REFUSALS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str, str], ...] = (
    (errors.LimitRequestLine, 414, "uri_too_long", "The request line (URL) is too long."),
    (errors.LimitRequestHeaders, 431, "headers_too_large", "The request headers are too large."),
    (
        (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension),
        400, "invalid_json", "The request body's chunked encoding is malformed.",
    ),
    (errors.UnsupportedTransferCoding, 501, "not_implemented", "Unsupported Transfer-Encoding."),
    (errors.ExpectationFailed, 417, "expectation_failed", "Unsupported Expect header."),
    (errors.ForbiddenProxyRequest, 403, "forbidden", "Request forbidden."),
    (errors.ParseException, 400, "validation_error", "The request is malformed."),
)  # fmt: skip


def gunicorn_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """Production defaults: gevent workers, deadlines for slow clients, recycling, timeouts."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": TaskApiWorker,
        "workers": settings.workers,
        "worker_connections": WORKER_CONNECTIONS,
        # Under gevent, the size of each worker's thread pool for blocking work (bcrypt).
        "threads": settings.bcrypt_threads,
        "timeout": 30,
        "graceful_timeout": 30,
        # The gevent worker gives a request's line and headers this long (and an idle
        # keep-alive connection), then closes the connection: the header deadline.
        "keepalive": settings.header_timeout_seconds,
        # No recycling: a worker's boot and exit cost about a second of CPU, and under load
        # every worker reached max_requests together, leaving none to answer. Nothing in
        # taskapi grows per request; operators who want it can set max_requests themselves.
        "max_requests": 0,
        # Each worker builds its own app, so no database pool crosses a fork.
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # gunicorn's control socket lives under $HOME by default and would be shared (and
        # fought over) by every instance on a host; taskapi is managed with signals instead.
        "control_socket_disable": True,
        # The process title when setproctitle is installed (see set_process_name otherwise).
        "proc_name": process_name(settings),
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        "forwarded_allow_ips": "127.0.0.1",
        "logger_class": JsonGunicornLogger if uses_json(settings) else Logger,
    }


class TaskApiWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, with a documented header deadline and JSON refusals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.awaiting_requests: set[gevent.Greenlet] = set()

    @contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """The deadline for reading a request's line and headers (and for an idle keep-alive
        connection): ``keepalive`` seconds, then the connection closes without an answer.

        gunicorn's async loop wraps ``next(parser)`` (the whole request head) in this, as its
        own gevent worker does; restated here because slowloris protection rests on it.
        """
        current = gevent.getcurrent()
        self.awaiting_requests.add(current)
        try:
            with gevent.Timeout(self.cfg.keepalive, False):
                yield
        finally:
            self.awaiting_requests.discard(current)

    def run(self) -> None:
        """Serve; once the worker is told to stop (SIGTERM, ``max_requests``), close the
        connections that are waiting for a request, as gthread does, so that only requests
        in flight hold up the exit, not idle keep-alive connections."""

        def close_waiting_connections() -> None:
            """After the worker stops being alive, end every wait for a request head."""
            while True:
                gevent.sleep(0.25)
                if not self.alive:
                    for greenlet in list(self.awaiting_requests):
                        greenlet.kill(errors.NoMoreData(), block=False)

        gevent.spawn(close_waiting_connections)
        sender = start_mail_sender(self.wsgi)
        try:
            super().run()
        finally:
            if sender is not None:
                # After the last request: the loop ends after the message in hand (a
                # message cut off here is sent again once its claim's lease ends).
                sender.stop(timeout=MAIL_SENDER_STOP_SECONDS)

    def patch(self) -> None:
        """gevent's patching, without its warning that ``ssl`` was imported first.

        ``python -m taskapi.cli`` imports the whole package (flask, PyJWT, gunicorn, hence
        ``ssl``) before any fork, so the warning would open every worker's log, in plain text.
        Nothing keeps an ``ssl`` object from before the patch: redis-py looks ``ssl`` up when
        it connects, psycopg uses libpq's own TLS.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MonkeyPatchWarning)
            super().patch()

    def load_wsgi(self) -> None:
        """After gevent has patched the process (before the app is built): size the thread
        pool and let psycopg choose its wait function again.

        psycopg picks a blocking C wait when it is imported before gevent patches ``select``,
        and ``taskapi serve`` imports it in the master to apply migrations.
        """
        gevent.get_hub().threadpool.maxsize = self.cfg.threads
        waiting = sys.modules.get("psycopg.waiting")
        if waiting is not None:
            importlib.reload(waiting)
        super().load_wsgi()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer gunicorn's refusals (414, 431, 400, ...) in the contract's JSON shape.

        gunicorn's own version writes an HTML page; the logging mirrors it: one warning line
        for a client's error, a traceback only for a fault of ours.
        """
        known = refusal_of(exc)
        if known is not None:
            address = addr[0] if isinstance(addr, tuple) else addr
            self.log.warning("Invalid request from ip=%s: %s", address, type(exc).__name__)
            status, code, message = known
        else:
            self.log.exception("Error handling request (no response sent by the app)")
            status, code, message = 500, "internal_error", "An unexpected error occurred."
        try:
            util.write_nonblock(client, refusal(status, code, message))
        except Exception:
            self.log.debug("Failed to send error message.")


def start_mail_sender(app: Any) -> Sender | None:
    """This worker's mail sender (``TASKAPI_MAIL_SENDER``, on by default), sharing the app's
    database pool; None when it is off or one already runs in this process.

    Every worker of every instance runs one: claims keep them from sending a row twice
    (``taskapi.mail``). Started here, in the worker after the fork and gevent's patching,
    so it never runs in the master, in tests' apps, or twice in a process.
    """
    state = getattr(app, "extensions", {}).get("taskapi")
    if state is None or not state.settings.mail_sender:
        return None
    return start_background_sender(state.session_factory, state.settings)


def refusal_of(exc: BaseException) -> tuple[int, str, str] | None:
    """(status, code, message) of a client's error gunicorn refuses; None for anything else."""
    for kinds, status, code, message in REFUSALS:
        if isinstance(exc, kinds):
            return status, code, message
    return None


def refusal(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response with the contract's JSON body; the connection closes."""
    body = json.dumps({"error": message, "code": code}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class JsonGunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's own lines (start, workers, signals) as JSON too, one object per line."""

    def setup(self, cfg: Any) -> None:
        """Let gunicorn install its handlers, then give them our formatter."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


class TaskApiServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application whose workers each call ``create_app`` with fixed settings."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options instead of reading a config file."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker (after the fork)."""
        from taskapi import create_app

        return create_app(self.settings)


def process_name(settings: Settings) -> str:
    """``taskapi-<instance name>``: how ``ps``, ``top`` and the logs tell instances apart."""
    return f"taskapi-{settings.instance_name or 'default'}"


def instance_runtime_dir(settings: Settings) -> Path:
    """This instance's own folder for runtime files, ``<data folder>/run/<instance name>``.

    Anything two instances on one host must not share (such as a Prometheus multiprocess
    folder) goes under it. ``run`` creates it (0700) and holds its ``lock`` for the life of
    the master, so a second instance of the same name (and data folder) refuses to start;
    workers inherit the settings, so they compute the same path. ``taskapi serve`` always
    sets ``instance_name`` (``--instance-name``, else ``port<PORT>``).
    """
    return settings.data_dir / "run" / (settings.instance_name or "default")


def claim_instance(settings: Settings) -> IO[str]:
    """Create this instance's runtime folder and lock it; the open lock file must be kept.

    Raises ``SettingsError`` naming TASKAPI_INSTANCE_NAME when another live process holds it.
    """
    folder = instance_runtime_dir(settings)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    handle = (folder / "lock").open("a+")  # not "w": a refused start must not truncate it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SettingsError(
            f"--instance-name / TASKAPI_INSTANCE_NAME: an instance named "
            f"{settings.instance_name!r} already runs with the data folder {settings.data_dir}; "
            "give each instance its own name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def set_process_name(name: str) -> None:
    """Name the process for ``ps -o comm``, ``top`` and ``pkill -x`` (Linux keeps 15 bytes);
    workers inherit it at the fork."""
    with suppress(OSError):  # not Linux: gunicorn's proc_name applies with setproctitle
        Path("/proc/self/comm").write_text(name[:15])


def run(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``graceful_timeout`` to finish."""
    configure_logging(settings)
    lock = claim_instance(settings)
    set_process_name(process_name(settings))
    logging.getLogger("taskapi.server").info(
        "taskapi instance %s serving http://%s:%d (pid %d); data folder %s; database %s",
        settings.instance_name, host, port, os.getpid(), settings.data_dir,
        masked_url(settings.sqlalchemy_url),
    )  # fmt: skip
    try:
        options = {**gunicorn_options(settings, host=host, port=port), **gunicorn_hooks(settings)}
        # Metrics: the workers' private folder, then the master's listener, before any fork.
        with multiprocess_directory(settings), master_listener(settings):
            TaskApiServer(settings, options).run()
    finally:
        lock.close()
