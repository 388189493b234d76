"""Migrations produce exactly the schema the models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from taskapi.db import Base, make_engine
from taskapi.migrate import objects_of


def test_migrated_schema_matches_models(database_url: str) -> None:
    """Alembic finds no difference between the migrated database and the models."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            options = {
                "compare_type": True,
                "include_object": objects_of(connection.dialect.name),
            }
            context = MigrationContext.configure(connection, opts=options)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
