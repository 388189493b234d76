"""Apply alembic migrations shipped inside the package, once, even with several instances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

# Any constant works; it only has to be the same for every instance of taskapi.
MIGRATION_LOCK_ID = 0x7A5C_A91


def alembic_config() -> Config:
    """An alembic config pointing at ``taskapi/migrations`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", "taskapi:migrations")
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; on PostgreSQL an advisory lock serializes instances."""
    config = alembic_config()
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()


def objects_of(dialect: str) -> Callable[..., bool]:
    """An alembic ``include_object`` that skips schema items meant for another database
    (such as PostgreSQL's trigram indexes, declared with ``ddl_if``)."""

    def include(obj: Any, _name: str | None, _type: str, _reflected: bool, _other: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include
