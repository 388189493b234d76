"""Logging: one JSON object per line in production, a readable line in development.

The access log is written here (not by gunicorn) so every line carries the request id and
user id. Only method, path, status and timing are logged: never headers, bodies or query
strings, so tokens and passwords cannot leak into logs.

Neither format lets logged text forge a line: JSON escapes it, and the console format writes
control characters (newlines, carriage returns, terminal escapes, Unicode line separators and
bidi controls) and backslashes as Python-style escapes such as ``\\n`` and ``\\x1b``, quotes
field values holding spaces, quotes or ``=``, and starts every line of a traceback with ``  | ``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from flask import Flask, Response, g, request

from taskapi.security import logged_user_id
from taskapi.settings import Settings

access_log = logging.getLogger("taskapi.access")
FIELDS = ("request_id", "method", "path", "status", "duration_ms", "user_id", "remote_addr")
_HANDLER_MARK = "_taskapi_handler"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What could end a line, drive a terminal or reorder the text shown: C0 and C1 controls, DEL,
# U+2028/U+2029 and the bidi embedding, override and isolate controls; and the backslash, so
# that an escape in the output always stands for a character of the input.
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TRACEBACK_PREFIX = "  | "


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


def _escape_match(match: re.Match[str]) -> str:
    """One unsafe character as ``\\n``, ``\\x1b`` or ``\\u2028``."""
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` made safe for one line of a terminal or a log file."""
    return _UNSAFE.sub(_escape_match, text)


def _field_value(value: object) -> str:
    """An escaped ``key=value`` value, quoted when a space, quote or ``=`` could fake a field."""
    text = escape(str(value))
    if text and not any(char.isspace() or char in '"=' for char in text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


class ConsoleFormatter(logging.Formatter):
    """A readable line for development, with the request fields appended, that cannot be forged."""

    def format(self, record: logging.LogRecord) -> str:
        """``time level logger: message key=value ...``, then any traceback, each line prefixed."""
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        fields = [f"{k}={_field_value(getattr(record, k))}" for k in FIELDS if hasattr(record, k)]
        lines = [" ".join([escape(self.formatMessage(record)), *fields])]
        blocks = [
            self.formatException(record.exc_info) if record.exc_info else record.exc_text,
            self.formatStack(record.stack_info) if record.stack_info else None,
        ]
        for block in filter(None, blocks):
            lines += [_TRACEBACK_PREFIX + escape(line) for line in block.split("\n")]
        return "\n".join(lines)


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
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter(CONSOLE_FORMAT))
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
                "user_id": logged_user_id(),
                "remote_addr": request.remote_addr,
            },
        )
        return response
