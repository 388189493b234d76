"""gunicorn, run in-process so ``taskapi serve`` works from any directory and any install."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from taskapi.logs import JsonFormatter, configure_logging, uses_json
from taskapi.settings import Settings


def gunicorn_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """Production defaults: gthread workers (bcrypt blocks), recycling, sane timeouts."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": settings.workers,
        "threads": settings.threads,
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 2000,
        "max_requests_jitter": 200,
        # Each worker builds its own app, so no database pool crosses a fork.
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "limit_request_line": 8190,
        "forwarded_allow_ips": "127.0.0.1",
        "logger_class": JsonGunicornLogger if uses_json(settings) else Logger,
    }


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


def run(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``graceful_timeout`` to finish."""
    configure_logging(settings)
    TaskApiServer(settings, gunicorn_options(settings, host=host, port=port)).run()
