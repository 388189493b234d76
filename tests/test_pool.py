"""The database pool's sizes come from the settings."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.pool import QueuePool

from tests.support import engine_of


def test_pool_sizes_come_from_the_settings(make_app: Any, database_url: str) -> None:
    """TASKAPI_DB_POOL_SIZE and TASKAPI_DB_MAX_OVERFLOW size each worker's PostgreSQL pool."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite connections are not pooled this way")
    pool = engine_of(make_app(db_pool_size=7, db_max_overflow=3)).pool
    assert isinstance(pool, QueuePool)
    assert (pool.size(), pool._max_overflow) == (7, 3)
