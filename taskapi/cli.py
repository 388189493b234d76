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


@db.command(help="Delete expired and revoked sessions, old tombstones and idempotency keys.")
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


if __name__ == "__main__":  # pragma: no cover
    main()
