"""gunicorn settings for operators who run gunicorn directly instead of `taskapi serve`.

    gunicorn -c config/gunicorn.conf.py 'taskapi:create_app()'

The values mirror the defaults `taskapi serve` uses (taskapi/server.py). Settings are
validated, the development secret created and migrations applied once, in the master,
before any worker forks.
"""

from __future__ import annotations

import os

from taskapi.cli import _migrate, _settings
from taskapi.logs import configure_logging
from taskapi.server import gunicorn_options

_settings_at_start = _settings()
_options = gunicorn_options(
    _settings_at_start,
    host=os.environ.get("TASKAPI_HOST", "127.0.0.1"),
    port=int(os.environ.get("TASKAPI_PORT", "8000")),
)

bind = _options["bind"]
worker_class = _options["worker_class"]
workers = _options["workers"]
threads = _options["threads"]
timeout = _options["timeout"]
graceful_timeout = _options["graceful_timeout"]
keepalive = _options["keepalive"]
max_requests = _options["max_requests"]
max_requests_jitter = _options["max_requests_jitter"]
preload_app = False
errorlog = "-"
accesslog = None  # taskapi writes its own JSON access log with request and user ids


def on_starting(_server: object) -> None:
    """Configure logging and apply migrations once, before workers fork."""
    configure_logging(_settings_at_start)
    _migrate(_settings_at_start)
