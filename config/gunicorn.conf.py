"""gunicorn settings for operators who run gunicorn directly instead of `taskapi serve`.

    gunicorn -c config/gunicorn.conf.py -b 0.0.0.0:8000 'taskapi:create_app()'

Every option is the one `taskapi serve` uses (taskapi/server.py), so the two cannot drift:
gevent workers (`taskapi.server.TaskApiWorker`: a waiting client costs a greenlet, not a
thread; JSON answers for gunicorn's own 400/414/431), `keepalive` as the deadline for a
request's headers (TASKAPI_HEADER_TIMEOUT_SECONDS), `threads` as the size of each worker's
thread pool for bcrypt (TASKAPI_THREADS). `-b` on the command line overrides the bind
address; do not override `worker_class`: the slow-client deadlines rest on gevent. Settings
are validated, the development secret created and migrations applied once, in the master,
before workers fork.
"""

from __future__ import annotations

from contextlib import ExitStack

from taskapi.cli import migrate_database, settings_or_exit
from taskapi.logs import configure_logging
from taskapi.metrics import gunicorn_hooks, master_listener, multiprocess_directory
from taskapi.server import gunicorn_options

_settings = settings_or_exit()
configure_logging(_settings)
globals().update(gunicorn_options(_settings, host="127.0.0.1", port=8000))
# Metrics (when TASKAPI_METRICS_PORT or _TOKEN is set), as `taskapi serve` does: the workers'
# multiprocess folder and the metrics listener, before any worker forks; closed on exit.
_metrics = ExitStack()
_metrics.enter_context(multiprocess_directory(_settings))
_metrics.enter_context(master_listener(_settings))
globals().update(gunicorn_hooks(_settings))


def on_exit(_server: object) -> None:
    """Remove the metrics folder and stop the metrics listener."""
    _metrics.close()


def on_starting(_server: object) -> None:
    """Apply migrations once, before workers fork."""
    migrate_database(_settings)
