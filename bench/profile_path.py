"""Where a hot-path request's time goes, in process: taskapi's endpoints against the ceiling.

    uv run python bench/profile_path.py                    # ms per request, each endpoint
    uv run python bench/profile_path.py --profile get      # and cProfile of one endpoint

Builds taskapi's app (``create_app``) and the ceiling app (``bench/ceiling_app.py``) in this
process on a fresh PostgreSQL database (created and dropped) with rate limits on Redis
(database 12, flushed) but out of reach, registers a user through the API, creates tasks,
and calls each endpoint through Flask's test client, alternating samples: no network, no
gunicorn, no wrk. It prints the median milliseconds per request of each endpoint and its
ratio to the ceiling's GET, and with ``--profile`` the functions that took the time. It is
what guided each change to the hot path (see ``bench/README.md``); ``load.py`` is the judge.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
import redis
from flask.testing import FlaskClient

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ceiling_app import create_ceiling_app  # noqa: E402

from taskapi import create_app  # noqa: E402
from taskapi.db import make_engine  # noqa: E402
from taskapi.migrate import upgrade  # noqa: E402
from taskapi.settings import Settings  # noqa: E402

SECRET = "profile-path-secret-" + "x" * 40
OUT_OF_REACH = "1000000000/minute"
PASSWORD = "correct horse battery staple"


@contextmanager
def scratch_database(postgres: str) -> Iterator[str]:
    """A fresh database, migrated, dropped at the end; yields its SQLAlchemy URL."""
    name = f"profile_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{postgres.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def settings_for(url: str, redis_url: str, data_dir: Path) -> Settings:
    """load.py's settings: limits on, on Redis, every budget out of reach; JSON logs."""
    budgets = ("default", "login", "login_failures", "login_email", "register",
               "password_checks", "password_checks_address")  # fmt: skip
    return Settings(
        database_url=url,
        redis_url=redis_url,
        secret_key=SECRET,
        data_dir=data_dir,
        bcrypt_rounds=4,
        access_token_seconds=86400,
        ratelimit_enabled=True,
        log_format="json",
        mail_sender=False,
        **{f"ratelimit_{name}": OUT_OF_REACH for name in budgets},
    )


class Caller:
    """One signed-in user of the app, through its test client."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        email = f"profile-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": PASSWORD}
        assert client.post("/api/v1/auth/register", json=body).status_code == 201
        token = client.post("/api/v1/auth/login", json=body).get_json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ids = [self.create()["id"] for _ in range(200)]
        self.turn = 0

    def create(self) -> dict[str, Any]:
        """POST one task."""
        answer = self.client.post("/api/v1/tasks", json=TASK, headers=self.headers)
        assert answer.status_code == 201, answer.get_json()
        data: dict[str, Any] = answer.get_json()
        return data

    def create_only(self) -> None:
        """POST one task, answer unused."""
        self.create()

    def next_id(self) -> str:
        """The tasks in turn."""
        self.turn = (self.turn + 1) % len(self.ids)
        return self.ids[self.turn]

    def get(self) -> None:
        answer = self.client.get(f"/api/v1/tasks/{self.next_id()}", headers=self.headers)
        assert answer.status_code == 200

    def list(self) -> None:
        answer = self.client.get("/api/v1/tasks?limit=50", headers=self.headers)
        assert answer.status_code == 200

    def patch(self) -> None:
        task_id = self.next_id()
        body = {"completed": self.turn % 2 == 0}
        answer = self.client.patch(f"/api/v1/tasks/{task_id}", json=body, headers=self.headers)
        assert answer.status_code == 200

    def delete(self) -> None:
        task_id = self.create()["id"]  # a create and a delete: subtract the POST's figure
        answer = self.client.delete(f"/api/v1/tasks/{task_id}", headers=self.headers)
        assert answer.status_code == 204


TASK = {"title": "Buy milk", "notes": "two litres", "priority": "medium", "tags": ["home", "shop"],
        "due_at": "2027-01-02T03:04:05Z"}  # fmt: skip


def timed(call: Callable[[], None], count: int) -> tuple[float, float]:
    """(wall, CPU of this process) milliseconds per call, over ``count`` calls. Under load
    the CPU figure is what counts: the wall time includes waiting for the database."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        call()
    return ((time.perf_counter() - start) * 1000 / count,
            (time.process_time() - cpu) * 1000 / count)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--count", type=int, default=300, help="requests per sample")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--profile", choices=["get", "list", "create", "patch", "delete"])
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callers", help="with --profile: who calls the functions matching this")
    args = parser.parse_args()
    redis.Redis.from_url(args.redis).flushdb()
    with TemporaryDirectory() as folder, scratch_database(args.postgres) as url:
        settings = settings_for(url, args.redis, Path(folder))
        app = create_app(settings)
        ceiling = create_ceiling_app(settings).test_client()
        caller = Caller(app.test_client())
        ceiling_headers = caller.headers

        def ceiling_get() -> None:
            answer = ceiling.get(f"/api/v1/tasks/{caller.next_id()}", headers=ceiling_headers)
            assert answer.status_code == 200

        calls: dict[str, Callable[[], None]] = {
            "ceiling": ceiling_get, "get": caller.get, "list": caller.list,
            "create": caller.create_only, "patch": caller.patch,
            "delete": caller.delete,
        }  # fmt: skip
        for call in calls.values():
            timed(call, 50)  # warm up: statement caches, imports
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        for _ in range(args.samples):
            for name, call in calls.items():
                figures[name].append(timed(call, args.count))
        ceiling_wall = statistics.median(wall for wall, _ in figures["ceiling"])
        ceiling_cpu = statistics.median(cpu for _, cpu in figures["ceiling"])
        print(f"{'endpoint':<10} {'wall ms':>8} {'ratio':>6} {'CPU ms':>8} {'ratio':>6}")
        for name, samples in figures.items():
            wall = statistics.median(w for w, _ in samples)
            cpu = statistics.median(c for _, c in samples)
            print(f"{name:<10} {wall:>8.3f} {ceiling_wall / wall:>6.2f} {cpu:>8.3f} "
                  f"{ceiling_cpu / cpu:>6.2f}")  # fmt: skip
        if args.profile:
            profiler = cProfile.Profile(time.process_time)
            profiler.runcall(timed, calls[args.profile], args.count * 3)
            stats = pstats.Stats(profiler)
            stats.sort_stats(args.sort).print_stats(args.top)
            if args.callers:
                stats.print_callers(args.callers)
        app.extensions["taskapi"].engine.dispose()
    redis.Redis.from_url(args.redis).flushdb()


if __name__ == "__main__":
    main()
