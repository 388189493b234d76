"""Migrations produce exactly the schema the models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from taskapi.db import Base, make_engine


def test_migrated_schema_matches_models(database_url: str) -> None:
    """Alembic finds no difference between the migrated database and the models."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
