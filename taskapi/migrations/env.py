"""Alembic environment: runs on the connection ``taskapi.migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from taskapi import models  # noqa: F401  (registers the tables on Base.metadata)
from taskapi.db import Base
from taskapi.migrate import objects_of


def run_migrations(connection: Connection) -> None:
    """Migrate on ``connection``; batch mode lets ALTERs work on SQLite too."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=objects_of(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `taskapi db upgrade`")
run_migrations(connection)
