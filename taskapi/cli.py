"""The ``taskapi`` command: serve the API and manage its database."""

from __future__ import annotations

import sys
from typing import Any

import click

from taskapi.settings import Settings, SettingsError, load_settings


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings or stop with one line naming the bad variable."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as error:
        click.echo(f"taskapi: {error}", err=True)
        sys.exit(2)


def migrate_database(settings: Settings) -> None:
    """Apply migrations with a short-lived engine that is disposed before any fork."""
    from taskapi import migrate
    from taskapi.db import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@click.group(help="taskapi: an authenticated, multi-user task API.")
def main() -> None:
    """Entry point of the ``taskapi`` command."""


@main.command(help="Apply migrations, then serve the API under gunicorn (gevent workers).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes [TASKAPI_WORKERS].")
@click.option(
    "--threads", type=click.IntRange(min=1), help="bcrypt threads per worker [TASKAPI_THREADS]."
)
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Validate settings and create the dev secret before forking, then run gunicorn."""
    from taskapi.server import run

    settings = settings_or_exit(workers=workers, threads=threads)
    migrate_database(settings)
    run(settings, host=host, port=port)


@main.group(help="Database tasks.")
def db() -> None:
    """Database commands."""


@db.command(help="Apply migrations up to the latest revision.")
def upgrade() -> None:
    """Bring the schema up to date."""
    migrate_database(settings_or_exit())
    click.echo("database is up to date")


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
