"""Logging: one JSON object per line in production, a readable line in development.

The access log is written here (not by gunicorn) so every line carries the request id and
user id. Only method, path, status and timing are logged: never headers, bodies or query
strings, so tokens and passwords cannot leak into logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from flask import Flask, Response, g, request

from taskapi.settings import Settings

access_log = logging.getLogger("taskapi.access")
FIELDS = ("request_id", "method", "path", "status", "duration_ms", "user_id", "remote_addr")
_HANDLER_MARK = "_taskapi_handler"


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's message, level, logger, time and any request fields."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """A readable line for development, with the request fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        """``time level logger: message key=value ...``."""
        base = super().format(record)
        extras = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k))
        return f"{base} {extras}".rstrip()


def uses_json(settings: Settings) -> bool:
    """JSON unless configured otherwise; development defaults to the console format."""
    return (settings.log_format or ("json" if settings.is_production else "console")) == "json"


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the root logger (once per process)."""
    root = logging.getLogger()
    if any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    use_json = uses_json(settings)
    console = ConsoleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if use_json else console)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


def install_access_log(app: Flask) -> None:
    """Time each request and log one line when it ends."""

    @app.before_request
    def start_timer() -> None:
        """Remember when the request started."""
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        """One access-log line with the request's fields (never headers or bodies)."""
        started = g.get("started")
        duration = (time.perf_counter() - started) * 1000 if started else 0.0
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration, 2),
                "user_id": g.get("user_id"),
                "remote_addr": request.remote_addr,
            },
        )
        return response
