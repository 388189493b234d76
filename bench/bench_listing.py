"""Keyset pagination benchmark: a deep page costs what the first page costs.

    uv run python bench/bench_listing.py [--tasks 20000] [--database-url URL]

Seeds one user's tasks, then times GET /api/v1/tasks for page 1 and for a page near the
end (reached with a real cursor), and, for contrast, the same deep page fetched with
OFFSET; the first page of other sorts (half the tasks have a due date); and searches with q
(a rare word, a common prefix, a word no task has). Prints median milliseconds and the ratios
measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from taskapi import create_app, migrate
from taskapi.db import make_engine, utcnow
from taskapi.models import Task, User
from taskapi.settings import Settings

SECRET = "bench-secret-bench-secret-bench-secret-0123"


def seed(url: str, count: int) -> tuple[str, str]:
    """Create a user with ``count`` tasks; return (email, password)."""
    from taskapi.passwords import hash_password

    engine = make_engine(url)
    migrate.upgrade(engine)
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench password 1"
    user_id = uuid.uuid4()
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(insert(User).values(
            id=user_id, email=email, name="", password_hash=hash_password(password, rounds=4),
            created_at=now, change_seq=0))  # fmt: skip
        rows = [
            {"id": uuid.uuid4(), "owner_id": user_id,
             "title": f"task {i}" + (" rare needle" if i % 1000 == 7 else ""),
             "notes": f"note {i * 7919 % 100_000}",
             "completed": i % 3 == 0, "priority": i % 4, "tags": ["bench"],
             "due_at": now + timedelta(minutes=i) if i % 2 else None,
             "created_at": now - timedelta(seconds=i), "updated_at": now, "version": 1,
             "change_seq": i + 1}
            for i in range(count)
        ]  # fmt: skip
        for start in range(0, count, 5000):
            connection.execute(insert(Task), rows[start : start + 5000])
        if connection.dialect.name == "postgresql":  # autovacuum would, given a minute
            connection.exec_driver_sql("ANALYZE tasks")
    engine.dispose()
    return email, password


def timed(client: Any, url: str, headers: dict[str, str], runs: int) -> float:
    """Median milliseconds of ``runs`` GETs of ``url``."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.json
    return statistics.median(samples)


def deep_cursor(client: Any, headers: dict[str, str], pages: int) -> str:
    """Walk ``pages`` pages of 100 to get a real cursor deep into the list."""
    cursor = None
    for _ in range(pages):
        url = "/api/v1/tasks?limit=100" + (f"&cursor={cursor}" if cursor else "")
        cursor = client.get(url, headers=headers).json["next_cursor"]
    assert cursor
    return cursor


def offset_page_ms(app: Any, user_email: str, offset: int, runs: int) -> float:
    """Median milliseconds of the same deep page fetched with OFFSET, for contrast."""
    engine = app.extensions["taskapi"].engine
    with engine.connect() as connection:
        owner = connection.scalar(select(User.id).where(User.email == user_email))
        order = (Task.created_at.desc(), Task.id.desc())
        statement = select(Task).where(Task.owner_id == owner).order_by(*order)
        statement = statement.offset(offset).limit(51)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            connection.execute(statement).all()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    """Seed, measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        email, password = seed(url, args.tasks)
        app = create_app(Settings(database_url=url, secret_key=SECRET, bcrypt_rounds=4,
                                  ratelimit_enabled=False, data_dir=Path(tmp)))  # fmt: skip
        client = app.test_client()
        token = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        headers = {"Authorization": f"Bearer {token.json['access_token']}"}
        pages = (args.tasks - 100) // 100
        cursor = deep_cursor(client, headers, pages)
        timed(client, "/api/v1/tasks?limit=50", headers, 5)  # warm caches and the pool
        first = timed(client, "/api/v1/tasks?limit=50", headers, args.runs)
        deep = timed(client, f"/api/v1/tasks?limit=50&cursor={cursor}", headers, args.runs)
        by_due = {
            sort: timed(client, f"/api/v1/tasks?limit=50&sort={sort}", headers, args.runs)
            for sort in ("due_at", "-due_at", "title", "priority")
        }
        searches = {
            q: timed(client, f"/api/v1/tasks?limit=50&q={q}", headers, args.runs)
            for q in ("needle", "note%2012", "absent-word")
        }
        offset = offset_page_ms(app, email, pages * 100, args.runs)
        keyset_sql = offset_page_ms(app, email, 0, args.runs)
        engine = app.extensions["taskapi"].engine
        with engine.begin() as connection:  # tasks and sessions go with the user
            connection.execute(delete(User).where(User.email == email))
        engine.dispose()
    backend = url.split(":", 1)[0]
    print(f"backend={backend} tasks={args.tasks} runs={args.runs}")
    print(f"GET page 1 (limit 50):            {first:8.2f} ms median")
    print(f"GET page at row {pages * 100:>6} (cursor): {deep:8.2f} ms median")
    print(f"ratio deep/first (keyset):        {deep / first:8.2f}")
    for sort, ms in by_due.items():
        print(f"GET page 1 sort={sort:<9}            {ms:8.2f} ms median (x{ms / first:.2f})")
    for q, ms in searches.items():
        print(f"GET page 1 q={q:<12}            {ms:8.2f} ms median (x{ms / first:.2f})")
    print(f"SQL only, OFFSET {pages * 100:>6} vs 0:     {offset:8.2f} ms vs {keyset_sql:.2f} ms "
          f"(ratio {offset / keyset_sql:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
