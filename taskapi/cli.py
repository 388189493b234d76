"""The ``taskapi`` command: serve the API and manage its database.

Every command fails the same way: one line on stderr naming the setting at fault and what to
do, exit code 2, never a traceback (``OperatorGroup``): a bad setting, a database that is
unreachable or does not exist, a SQLite file that cannot be written, a refused Redis, a port
in use.
"""

from __future__ import annotations

import errno
import re
import socket
import sys
from typing import Any, NoReturn

import click

from taskapi.settings import Settings, SettingsError, load_settings, masked_url

# Where the running command keeps the settings it loaded (click's context ``meta``, shared by
# every module's commands, even when this one runs as ``__main__``), so an error can name the
# database it used.
LOADED = "taskapi.settings"


def fail(message: str) -> NoReturn:
    """Stop with ``taskapi: <message>`` on stderr and exit code 2."""
    click.echo(f"taskapi: {message}", err=True)
    sys.exit(2)


def settings_or_exit(*, prepare: bool = True, **overrides: Any) -> Settings:
    """Load settings or stop with one line naming the bad variable."""
    try:
        settings = load_settings(
            prepare=prepare, **{k: v for k, v in overrides.items() if v is not None}
        )
    except SettingsError as error:
        fail(str(error))
    except OSError as error:  # the data folder, its secret or the SQLite file
        where = error.filename or "the data folder"
        fail(
            f"TASKAPI_DATA_DIR: cannot create {where} ({error.strerror}); "
            "point TASKAPI_DATA_DIR at a folder this user can write"
        )
    context = click.get_current_context(silent=True)
    if context is not None:
        context.meta[LOADED] = settings
    return settings


def database_label(settings: Settings) -> str:
    """The database URL with its password masked."""
    return masked_url(settings.sqlalchemy_url)


def explain(error: BaseException) -> str | None:
    """One line for an operator's error (bad database, Redis, port); None for a bug."""
    from redis import exceptions as redis_errors
    from sqlalchemy.exc import DBAPIError

    context = click.get_current_context(silent=True)
    settings = context.meta.get(LOADED) if context is not None else None
    if isinstance(error, DBAPIError):
        return _explain_database(str(error.orig), settings)
    if isinstance(error, redis_errors.ConnectionError | redis_errors.TimeoutError):
        url = masked_url(settings.redis_url or "") if settings else "Redis"
        return (
            f"TASKAPI_REDIS_URL: cannot reach {url} ({_first_line(str(error))}); start Redis, "
            "fix the URL, or set TASKAPI_REDIS_REQUIRED=false to count limits in memory"
        )
    return None


def _first_line(text: str) -> str:
    """The last meaningful line of a driver's message, without its ``FATAL:`` prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else text
    line = re.sub(r"^(FATAL|ERROR):\s+", "", line)
    return re.sub(r"\s+", " ", line).rstrip(".")


def _explain_database(message: str, settings: Settings | None) -> str:
    """One line for a database error, naming TASKAPI_DATABASE_URL (or TASKAPI_DATA_DIR)."""
    from sqlalchemy.engine import make_url

    url = settings.sqlalchemy_url if settings else ""
    label = masked_url(url) if url else "the database"
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        setting = (
            "TASKAPI_DATABASE_URL" if settings and settings.database_url else "TASKAPI_DATA_DIR"
        )
        return (
            f"{setting}: cannot use the SQLite database {path} ({_first_line(message)}); make "
            f"its folder writable by this user or point {setting} elsewhere"
        )
    missing = re.search(r'database "([^"]+)" does not exist', message)
    if missing:
        name = missing.group(1)
        parsed = make_url(url) if url else None
        server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}" if parsed else "server"
        return (
            f"TASKAPI_DATABASE_URL: database {name!r} does not exist on the server {server} "
            f"({label}); create it (createdb {name}) or fix the URL"
        )
    if "Connection refused" in message:
        return (
            f"TASKAPI_DATABASE_URL: cannot connect to {label} (connection refused); start "
            "PostgreSQL or fix the host and port in the URL"
        )
    if "password authentication failed" in message or "no password supplied" in message:
        return (
            f"TASKAPI_DATABASE_URL: {_first_line(message)} on {label}; fix the user or "
            "password in the URL"
        )
    return f"TASKAPI_DATABASE_URL: {label}: {_first_line(message)}; check the URL and the server"


class OperatorGroup(click.Group):
    """A click group whose commands end in one line, not a traceback, on an operator's error."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn database, Redis and settings errors into one line, exit 2."""
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            fail(str(error))
        except Exception as error:
            line = explain(error)
            if line is None:
                raise
            fail(line)


def migrate_database(settings: Settings) -> tuple[str | None, list[str]]:
    """Apply migrations with a short-lived engine that is disposed before any fork.

    Returns the revision the database was at and the revisions applied, oldest first.
    """
    from taskapi import migrate
    from taskapi.db import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    try:
        before = current_revision(engine)
        migrate.upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    return before, revisions_between(before, after)


def current_revision(engine: Any) -> str | None:
    """The database's alembic revision, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()  # type: ignore[no-any-return]


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    from alembic.script import ScriptDirectory

    from taskapi import migrate

    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


def revisions_between(before: str | None, after: str | None) -> list[str]:
    """Revisions after ``before`` up to ``after``, oldest first."""
    from alembic.script import ScriptDirectory

    from taskapi import migrate

    if after is None or after == before:
        return []
    script = ScriptDirectory.from_config(migrate.alembic_config())
    steps = script.iterate_revisions(after, before)
    return [step.revision for step in reversed(list(steps))]


def ensure_port_free(host: str, port: int) -> None:
    """Stop with one line if ``host:port`` cannot be bound (in use, foreign address, privileged).

    gunicorn would retry for five seconds and then exit with several lines of its own.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            fail(
                f"--port / TASKAPI_PORT: {host}:{port} is already in use; stop the process "
                "listening there or choose another port"
            )
        if error.errno == errno.EACCES:
            fail(f"--port / TASKAPI_PORT: binding port {port} needs privileges; use 1024 or above")
        fail(f"--host / TASKAPI_HOST: cannot listen on {host}:{port} ({error.strerror})")


def ensure_redis(settings: Settings) -> None:
    """With ``TASKAPI_REDIS_REQUIRED=true``, a Redis that does not answer stops start-up."""
    if not (settings.redis_url and settings.redis_required):
        return
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


@click.group(cls=OperatorGroup, help="taskapi: an authenticated, multi-user task API.")
def main() -> None:
    """Entry point of the ``taskapi`` command."""


@main.command(help="Apply migrations, then serve the API under gunicorn (gevent workers).")
@click.option(
    "--host", envvar="TASKAPI_HOST", default="127.0.0.1", show_default=True,
    help="Address to bind [TASKAPI_HOST].",
)  # fmt: skip
@click.option(
    "--port", envvar="TASKAPI_PORT", default=8000, show_default=True,
    type=click.IntRange(1, 65535), help="Port to bind [TASKAPI_PORT].",
)  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes [TASKAPI_WORKERS].")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="bcrypt threads per worker [TASKAPI_THREADS; default: the usable cores divided among "
    "the workers, at least 1].",
)
@click.option(
    "--instance-name",
    help="This instance's name among several on one host: its process title and runtime "
    "folder (<data folder>/run/<name>) [TASKAPI_INSTANCE_NAME; default port<PORT>].",
)
def serve(
    host: str, port: int, workers: int | None, threads: int | None, instance_name: str | None
) -> None:
    """Validate settings and create the dev secret before forking, then run gunicorn."""
    from taskapi.server import run

    settings = settings_or_exit(workers=workers, threads=threads, instance_name=instance_name)
    if settings.instance_name is None:
        settings = settings.model_copy(update={"instance_name": f"port{port}"})
    ensure_port_free(host, port)
    ensure_redis(settings)
    migrate_database(settings)
    run(settings, host=host, port=port)


@main.command(help="Show the resolved settings (secrets masked), the database and its revision.")
@click.option("--data-dir", "data_dir_only", is_flag=True, help="Print only the data folder.")
def info(data_dir_only: bool) -> None:
    """What this environment resolves to; creates nothing."""
    from taskapi.db import make_engine
    from taskapi.settings import masked_settings

    settings = settings_or_exit(prepare=False)
    if data_dir_only:
        click.echo(str(settings.data_dir))
        return
    click.echo(f"data folder: {settings.data_dir}")
    click.echo(f"database: {database_label(settings)}")
    head = head_revision()
    if settings.uses_sqlite and not _sqlite_file_exists(settings):
        click.echo(f"revision: none, the file does not exist yet (head {head})")
    else:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
        state = "up to date" if current == head else "run `taskapi db upgrade`"
        click.echo(f"revision: {current or 'none'} (head {head}; {state})")
    click.echo(f"bcrypt threads per worker: {settings.bcrypt_threads}")
    click.echo("settings:")
    for name, value in masked_settings(settings).items():
        click.echo(f"  {name}={value}")


def _sqlite_file_exists(settings: Settings) -> bool:
    """Whether the SQLite file exists (``info`` must not create it by connecting)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    path = make_url(settings.sqlalchemy_url).database
    return not path or path == ":memory:" or Path(path).exists()


@main.command(help="Exit 0 when this host's API answers /api/health (the container check).")
@click.option("--port", envvar="TASKAPI_PORT", default=8000, type=click.IntRange(1, 65535))
def healthcheck(port: int) -> None:
    """GET http://127.0.0.1:<port>/api/health with an allowed Host; exit 1 unless 200."""
    import http.client

    settings = settings_or_exit(prepare=False)
    host = settings.allowed_hosts[0].lstrip(".") if settings.allowed_hosts else "127.0.0.1"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        connection.request("GET", "/api/health", headers={"Host": host})
        status = connection.getresponse().status
    except OSError as error:
        click.echo(f"taskapi: 127.0.0.1:{port} does not answer ({error})", err=True)
        sys.exit(1)
    finally:
        connection.close()
    if status != 200:
        click.echo(f"taskapi: /api/health answered {status}", err=True)
        sys.exit(1)


@main.group(help="Database tasks.")
def db() -> None:
    """Database commands."""


@db.command(help="Apply migrations up to the latest revision.")
def upgrade() -> None:
    """Bring the schema up to date and say which database and revisions."""
    settings = settings_or_exit()
    before, applied = migrate_database(settings)
    label = database_label(settings)
    if applied:
        click.echo(f"{label}: applied {', '.join(applied)}; now at {applied[-1]}")
    else:
        click.echo(f"{label}: already at {before or 'an empty schema'}, nothing to apply")


@db.command(
    help="Delete expired and revoked sessions, old tombstones and idempotency keys, mail sent "
    "or refused over 7 days ago, and used or expired account tokens."
)
def prune() -> None:
    """Housekeeping, safe to run from cron at any time."""
    from taskapi.db import make_engine, make_session_factory, utcnow
    from taskapi.services.maintenance import prune_all

    settings = settings_or_exit()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_session_factory(engine)() as session:
            counts = prune_all(session, now=utcnow(), tombstone_days=settings.tombstone_days)
    finally:
        engine.dispose()
    click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))


# --- mail: the outbox sender, for operators who run it apart from ``serve`` ----------------


@main.group("mail", help="Mail: deliver the outbox.")
def mail_group() -> None:
    """Mail commands."""


@mail_group.command("send-pending", help="Send every message that is due, once, then exit.")
def mail_send_pending() -> None:
    """One round of the sender; prints what was sent, failed (to retry), refused and left."""
    from sqlalchemy.exc import SQLAlchemyError

    from taskapi.db import make_engine, make_session_factory, reads_in_autocommit
    from taskapi.logs import configure_logging
    from taskapi.mail import backlog, deliver_due

    settings = settings_or_exit()
    configure_logging(settings)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        tally = deliver_due(engine, settings)
        with make_session_factory(reads_in_autocommit(engine))() as session:
            left = backlog(session).pending
    except SQLAlchemyError as error:
        if explain(error) is not None:  # unreachable or missing database: one line, exit 2
            raise
        click.echo(f"taskapi: cannot read the outbox: {type(error).__name__}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo(
        f"sent: {tally.sent}, failed: {tally.failed}, refused: {tally.refused}, left: {left}"
    )


@main.command(
    help="Run the mail sender in the foreground until SIGTERM or SIGINT (for deployments that "
    "set TASKAPI_MAIL_SENDER=false on the web processes)."
)
def worker() -> None:
    """The sender loop; a signal lets the message in hand finish, then it exits 0."""
    import signal

    from taskapi.db import make_engine
    from taskapi.logs import configure_logging
    from taskapi.mail import Sender

    settings = settings_or_exit()
    configure_logging(settings)
    engine = make_engine(settings.sqlalchemy_url)
    try:  # a database that cannot be reached stops the worker now, in one line
        with engine.connect():
            pass
    except BaseException:
        engine.dispose()
        raise
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Signals are taken with sigwait in this thread instead of a handler, which could run
    # while the loop holds the lock that setting the stop event needs.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    sender = Sender(engine, settings)
    sender.start()  # the thread inherits the blocked mask
    try:
        received = signal.sigwait(stop_signals)
        click.echo(f"taskapi worker: {signal.Signals(received).name}, stopping", err=True)
        sender.stop(timeout=settings.smtp_timeout_seconds * 10)
    finally:
        engine.dispose()


def _operator_commands() -> None:
    """Commands that live in their own modules."""
    from taskapi.admin import users

    main.add_command(users)


_operator_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
