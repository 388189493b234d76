"""Keyset pagination benchmark: a deep page costs what the first page costs.

    uv run python bench/bench_listing.py [--tasks 20000] [--database-url URL]

Seeds one user's tasks (in their inbox), then times GET /api/v1/tasks for page 1 and for a
page near the end (reached with a real cursor), the same two pages of the inbox sorted by
position, and, for contrast, the same deep page fetched with
OFFSET; the first page of other sorts (half the tasks have a due date); and searches with q
(a rare word, a common prefix, a word no task has). Prints median milliseconds and the ratios
measured in this one run.

    uv run python bench/bench_listing.py --big --database-url postgresql+psycopg://HOST/DB

``--big`` (PostgreSQL only) creates a database ``bench_listing_<hex>`` on that server (dropped
at the end), bulk-loads with COPY one user with 1,000,000 tasks, 20 users with 10,000 each and
one with 100, each user's tasks in their inbox (positions newest first, as the migration to
lists leaves them), and times through HTTP, for the big user, the first page and a page 10,000
deep for every sort, and a rare and a common ``q`` and ``tag``; and in the inbox (GET
/lists/<id>/tasks, sorted by position) the first page and a deep page of the big user and of
the 100-task user: p50, p99, the ratio to the default first page, the in-list first page's
ratio of the big user to the 100-task user, and the targets (p99 < 25 ms), printed, never
asserted.
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

from fractional_indexing import generate_n_keys_between
from sqlalchemy import delete, insert, select

from taskapi import create_app, migrate
from taskapi.db import make_engine, utcnow
from taskapi.models import Task, TaskList, User
from taskapi.settings import Settings

SECRET = "bench-secret-bench-secret-bench-secret-0123"


def seed(url: str, count: int) -> tuple[str, str]:
    """Create a user with ``count`` tasks in their inbox (manual order: newest first, as the
    migration to lists leaves them); return (email, password)."""
    from taskapi.passwords import hash_password

    engine = make_engine(url)
    migrate.upgrade(engine)
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench password 1"
    user_id, inbox = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    keys = generate_n_keys_between(None, None, count)
    with engine.begin() as connection:
        connection.execute(insert(User).values(
            id=user_id, email=email, name="", password_hash=hash_password(password, rounds=4),
            created_at=now, change_seq=count + 1, task_count=count))  # fmt: skip
        connection.execute(insert(TaskList).values(
            id=inbox, owner_id=user_id, title="Inbox", position="a0", inbox=True,
            created_at=now, updated_at=now, version=1, change_seq=count + 1))  # fmt: skip
        rows = [
            {"id": uuid.uuid4(), "owner_id": user_id,
             "title": f"task {i}" + (" rare needle" if i % 1000 == 7 else ""),
             "notes": f"note {i * 7919 % 100_000}",
             "completed": i % 3 == 0, "priority": i % 4, "tags": ["bench"],
             "due_at": now + timedelta(minutes=i) if i % 2 else None,
             "created_at": now - timedelta(seconds=i), "updated_at": now, "version": 1,
             "change_seq": i + 1, "list_id": inbox, "position": keys[i]}
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
    return statistics.median(samples_ms(client, url, headers, runs))


def deep_cursor(
    client: Any, headers: dict[str, str], pages: int, path: str = "/api/v1/tasks"
) -> str:
    """Walk ``pages`` pages of 100 of ``path`` to get a real cursor deep into the list."""
    cursor = None
    for _ in range(pages):
        url = f"{path}?limit=100" + (f"&cursor={cursor}" if cursor else "")
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
    parser.add_argument("--big", action="store_true", help="1M-task user, PostgreSQL only")
    args = parser.parse_args()
    if args.big:
        if not (args.database_url or "").startswith("postgresql"):
            parser.error("--big needs --database-url pointing at a PostgreSQL server")
        big_main(args.database_url, args.runs)
        return
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
        inbox = client.get("/api/v1/lists", headers=headers).json["items"][0]["id"]
        in_list = f"/api/v1/lists/{inbox}/tasks"  # sort=position, the default in a list
        list_cursor = deep_cursor(client, headers, pages, in_list)
        list_first = timed(client, f"{in_list}?limit=50", headers, args.runs)
        list_deep = timed(client, f"{in_list}?limit=50&cursor={list_cursor}", headers, args.runs)
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
    print(f"GET inbox page 1 (position):      {list_first:8.2f} ms median "
          f"(x{list_first / first:.2f})")  # fmt: skip
    print(f"GET inbox at row {pages * 100:>6} (cursor):{list_deep:8.2f} ms median "
          f"(x{list_deep / first:.2f})")  # fmt: skip
    for q, ms in searches.items():
        print(f"GET page 1 q={q:<12}            {ms:8.2f} ms median (x{ms / first:.2f})")
    print(f"SQL only, OFFSET {pages * 100:>6} vs 0:     {offset:8.2f} ms vs {keyset_sql:.2f} ms "
          f"(ratio {offset / keyset_sql:.1f})")  # fmt: skip


# --- --big: the 1,000,000-task user -------------------------------------------------------

BIG_TASKS, SMALL_USERS, SMALL_TASKS, TINY_TASKS = 1_000_000, 20, 10_000, 100
RARE_WORD, COMMON_WORD = "zyzzogeton", "errand"  # 1 in 100,000 and 1 in 3 tasks
RARE_TAG, COMMON_TAG = "tag-rare", "tag-common"
SORTS = ("-created_at", "created_at", "-updated_at", "updated_at", "-due_at", "due_at",
         "-priority", "priority", "-title", "title")  # fmt: skip
TARGET_MS = 25.0
TASK_COLUMNS = ("id, owner_id, title, notes, completed, completed_at, due_at, priority, tags, "
                "created_at, updated_at, version, change_seq, list_id, position")  # fmt: skip


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL, for psycopg."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def task_lines(owner: uuid.UUID, inbox: uuid.UUID, count: int, now: Any, salt: int) -> Any:
    """COPY text-format lines for ``count`` tasks of ``owner`` (no tabs or backslashes), all in
    the owner's inbox in the order the migration to lists gives: newest first."""
    keys = generate_n_keys_between(None, None, count)
    for i in range(count):
        k = i + salt
        rare = k % 100_000 == 41_234
        title = f"task {i} item {k * 7919 % 1_000_003}"
        title += f" {COMMON_WORD}" if k % 3 == 1 else ""
        title += f" {RARE_WORD}" if rare else ""
        notes = f"note {k * 104_729 % 999_983} about things"
        tags = ["bench"] + ([COMMON_TAG] if k % 3 == 2 else []) + ([RARE_TAG] if rare else [])
        created = now - timedelta(seconds=i)
        updated = created + timedelta(seconds=k * 7919 % 86_400)
        completed = k % 3 == 0
        due = (now + timedelta(minutes=k * 31 % 500_009)).isoformat() if k % 2 else "\\N"
        yield "\t".join((
            str(uuid.uuid4()), str(owner), title, notes, "t" if completed else "f",
            updated.isoformat() if completed else "\\N", due, str(k % 4),
            '["' + '", "'.join(tags) + '"]', created.isoformat(), updated.isoformat(),
            "1", str(i + 1), str(inbox), keys[i],
        )) + "\n"  # fmt: skip


def big_seed(url: str) -> tuple[str, str, str]:
    """COPY the users, their inboxes and their tasks in (task indexes rebuilt afterwards),
    ANALYZE; return the logins (email) of the 1M-task user and of the 100-task user, and the
    password."""
    import psycopg

    from taskapi.passwords import hash_password

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    password = "bench password 1"
    password_hash = hash_password(password, rounds=4)
    now = utcnow()
    owners = [(uuid.uuid4(), BIG_TASKS)]
    owners += [(uuid.uuid4(), SMALL_TASKS) for _ in range(SMALL_USERS)]
    owners += [(uuid.uuid4(), TINY_TASKS)]
    emails = [f"big-{n}@example.com" for n in range(len(owners))]
    inboxes = [uuid.uuid4() for _ in owners]
    started = time.perf_counter()
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        connection.execute("SET maintenance_work_mem = '512MB'")
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        with connection.cursor() as cursor:
            with cursor.copy("COPY users (id, email, name, password_hash, created_at, "
                             "change_seq, task_count) FROM STDIN") as copy:  # fmt: skip
                for (owner, count), email in zip(owners, emails, strict=True):
                    # change numbers: the tasks 1..count, the inbox count + 1
                    copy.write_row((owner, email, "", password_hash, now, count + 1, count))
            with cursor.copy("COPY lists (id, owner_id, title, position, inbox, created_at, "
                             "updated_at, version, change_seq) FROM STDIN") as copy:  # fmt: skip
                for (owner, count), inbox in zip(owners, inboxes, strict=True):
                    copy.write_row((inbox, owner, "Inbox", "a0", True, now, now, 1, count + 1))
            with cursor.copy(f"COPY tasks ({TASK_COLUMNS}) FROM STDIN") as copy:
                for n, ((owner, count), inbox) in enumerate(zip(owners, inboxes, strict=True)):
                    batch: list[str] = []
                    for line in task_lines(owner, inbox, count, now, salt=n * 7):
                        batch.append(line)
                        if len(batch) == 10_000:
                            copy.write("".join(batch))
                            batch.clear()
                    copy.write("".join(batch))
        loaded = time.perf_counter() - started
        for _, definition in indexes:
            connection.execute(definition)
        connection.execute("ANALYZE users")
        connection.execute("ANALYZE lists")
        connection.execute("ANALYZE tasks")
    rebuilt = time.perf_counter() - started - loaded
    total = sum(count for _, count in owners)
    print(f"loaded {total} tasks with COPY in {loaded:.0f} s, "
          f"indexes rebuilt and ANALYZE in {rebuilt:.0f} s")  # fmt: skip
    return emails[0], emails[-1], password


def samples_ms(client: Any, url: str, headers: dict[str, str], runs: int) -> list[float]:
    """Milliseconds of ``runs`` GETs of ``url``."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.json
    return samples


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile (inclusive interpolation over the samples)."""
    return statistics.median(samples), statistics.quantiles(samples, n=100, method="inclusive")[98]


def cursor_at(
    client: Any, headers: dict[str, str], query: str, rows: int, path: str = "/api/v1/tasks"
) -> str:
    """A real cursor ``rows`` deep, walked 100 rows a page (fewer when ``rows`` is small)."""
    cursor, size = None, min(100, rows)
    for _ in range(rows // size):
        url = f"{path}?limit={size}{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.json
        cursor = answer.json["next_cursor"]
    assert cursor
    return cursor


def explain(engine: Any, client: Any, url: str, headers: dict[str, str]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the tasks query that one GET of ``url`` runs."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM tasks" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        client.get(url, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = seen[-1]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.close()
    return plan


def big_main(server_url: str, runs: int) -> None:
    """Create a database, bulk-load it, measure through HTTP, print, drop it."""
    import psycopg

    name = f"bench_listing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            email, tiny_email, password = big_seed(url)
            app = create_app(Settings(database_url=url, secret_key=SECRET, bcrypt_rounds=4,
                                      ratelimit_enabled=False, data_dir=Path(tmp)))  # fmt: skip
            try:
                big_measure(app, email, tiny_email, password, runs)
            finally:
                app.extensions["taskapi"].engine.dispose()
    finally:
        with psycopg.connect(libpq(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def login_headers(client: Any, email: str, password: str) -> dict[str, str]:
    """The Authorization header of a real login."""
    token = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {token.json['access_token']}"}


def inbox_tasks(client: Any, headers: dict[str, str]) -> str:
    """The path of the user's inbox tasks (``sort=position`` is the default there)."""
    lists = client.get("/api/v1/lists", headers=headers).json["items"]
    (inbox,) = [item["id"] for item in lists if item["inbox"]]
    return f"/api/v1/lists/{inbox}/tasks"


def big_measure(app: Any, email: str, tiny_email: str, password: str, runs: int) -> None:
    """Time every listing of the 1M-task user, and the in-list pages of the 100-task user
    beside them; print the table."""
    client = app.test_client()
    headers = login_headers(client, email, password)
    tiny_headers = login_headers(client, tiny_email, password)
    cases: list[tuple[str, str, bool, dict[str, str]]] = []  # (label, url, target, headers)
    for sort in SORTS:
        query = f"&sort={sort}"
        cursor = cursor_at(client, headers, query, 10_000)
        cases.append((f"sort={sort} first", f"/api/v1/tasks?limit=50{query}", True, headers))
        cases.append((f"sort={sort} @10000", f"/api/v1/tasks?limit=50{query}&cursor={cursor}",
                      True, headers))  # fmt: skip
    cases += [
        (f"q={RARE_WORD} (rare)", f"/api/v1/tasks?limit=50&q={RARE_WORD}", True, headers),
        (f"q={COMMON_WORD} (common)", f"/api/v1/tasks?limit=50&q={COMMON_WORD}", False, headers),
        (f"tag={RARE_TAG} (rare)", f"/api/v1/tasks?limit=50&tag={RARE_TAG}", True, headers),
        (f"tag={COMMON_TAG} (common)", f"/api/v1/tasks?limit=50&tag={COMMON_TAG}", False,
         headers),
    ]  # fmt: skip
    # In a list, by position: the 1M-task user's inbox against the 100-task user's.
    in_lists = [("1M user", headers, 10_000), ("100-task user", tiny_headers, 50)]
    for who, user_headers, deep in in_lists:
        path = inbox_tasks(client, user_headers)
        cursor = cursor_at(client, user_headers, "", deep, path)
        cases.append((f"inbox {who} first", f"{path}?limit=50", True, user_headers))
        cases.append((f"inbox {who} @{deep}", f"{path}?limit=50&cursor={cursor}", True,
                      user_headers))  # fmt: skip
    found = {}
    for _, url, _, case_headers in cases:  # warm caches and the pool; count the page's rows
        samples_ms(client, url, case_headers, 3)
        found[url] = len(client.get(url, headers=case_headers).json["items"])
    results = [(label, url, target, case_headers,
                p50_p99(samples_ms(client, url, case_headers, runs)))
               for label, url, target, case_headers in cases]  # fmt: skip
    base = results[0][4][0]
    print(f"backend=postgresql tasks={BIG_TASKS} (+{SMALL_USERS}x{SMALL_TASKS}, "
          f"+1x{TINY_TASKS}) runs={runs}")  # fmt: skip
    print(f"{'GET (limit 50)':<32} {'rows':>4} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ratio':>6}  target")  # fmt: skip
    missed = []
    p50s = {}
    for label, url, target, case_headers, (p50, p99) in results:
        p50s[label] = p50
        verdict = "-"
        if target:
            verdict = f"p99<{TARGET_MS:.0f}: " + ("met" if p99 < TARGET_MS else "MISSED")
            if p99 >= TARGET_MS:
                missed.append((label, url, case_headers))
        print(f"{label:<32} {found[url]:4} {p50:8.2f} {p99:8.2f} {p50 / base:6.2f}  {verdict}")
    print("ratio: p50 over the p50 of the default sort's (-created_at) first page")
    print(
        "in-list first page (sort=position), 1M-task user over 100-task user, p50: "
        f"x{p50s['inbox 1M user first'] / p50s['inbox 100-task user first']:.2f}"
    )
    for label, url, case_headers in missed:
        print(f"\nEXPLAIN ANALYZE, missed target: {label}\n")
        print(explain(app.extensions["taskapi"].engine, client, url, case_headers))


if __name__ == "__main__":
    main()
