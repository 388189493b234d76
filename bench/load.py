"""Load benchmark: taskapi's endpoints under wrk, each as a ratio to a ceiling app.

    bash bench/setup.sh                  # once: installs wrk (Debian package)
    uv run python bench/load.py          # 6 rounds of 15 s per scenario, 15 to 20 minutes
    uv run python bench/load.py --quick  # 2 rounds of 5 s, a smoke run

Needs PostgreSQL (``--postgres``, default postgres@127.0.0.1:5432, trust) and Redis
(``--redis``, default database 13 on 127.0.0.1:6379, flushed at start and end). It creates a
database ``bench_<hex>`` of its own and drops it at the end, then starts two servers side by
side on free ports: the ceiling (``bench/ceiling_app.py``: a bare Flask app under the same
gunicorn set-up that decodes a JWT and selects one row by primary key through the ORM) and
``taskapi serve --workers 2`` with rate limits on (Redis) but every budget out of reach and
bcrypt at cost 12. It seeds users and tasks (bulk inserts through the models; tokens from
real logins) and runs interleaved rounds; each round runs every scenario once with
``wrk -t2 -c32``:

- the ceiling's GET by id, then taskapi's GET by id, list 50, POST, PATCH, DELETE and a mix
  (list 50 %, get 20 %, create 10 %, patch 15 %, delete 5 %), each as a ratio to the ceiling;
- a GET by id on 8 connections alone, then beside a login storm (32 connections logging in).

It prints req/s, p50, p99 and errors (non-2xx answers and socket errors) per round, then the
medians. The Lua scripts are in ``bench/lua``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import Engine, func, insert, select, update

import taskapi
from taskapi.db import make_engine, utcnow
from taskapi.models import Task, TaskList, User
from taskapi.passwords import hash_password
from taskapi.services.positions import spread

BENCH = Path(__file__).resolve().parent
# The tree whose taskapi is measured: this checkout, or another one put first on PYTHONPATH.
SOURCE = Path(taskapi.__file__).resolve().parent.parent
LUA = BENCH / "lua"
SECRET = "bench-load-secret-bench-load-secret-0123456789"
PASSWORD = "a long bench passphrase"
BCRYPT_ROUNDS = 12
OUT_OF_REACH = "1000000000/minute"
LIMIT_VARIABLES = (
    "DEFAULT", "LOGIN", "LOGIN_FAILURES", "LOGIN_EMAIL", "REGISTER", "PASSWORD_CHECKS",
    "PASSWORD_CHECKS_ADDRESS",
)  # fmt: skip
# The scenarios compared with the ceiling, in the order each round runs them: (name, script).
ENDPOINTS = (
    ("GET /tasks/<id>", "get.lua"),
    ("GET /tasks?limit=50", "list.lua"),
    ("POST /tasks", "create.lua"),
    ("PATCH /tasks/<id>", "patch.lua"),
    ("DELETE /tasks/<id>", "delete.lua"),
    ("mix", "mix.lua"),
)
CEILING = "ceiling: GET by id"
PROBE_ALONE = "GET by id, 8 conn"
PROBE_STORM = "  same, beside storm"
STORM = "login storm"
QUIET = 0.10  # the machine counts as idle below this CPU use
STORM_LEAD_SECONDS = 2  # the storm runs this long before the probe starts, to saturate


@dataclass(frozen=True)
class Options:
    """What to run: rounds, durations and connection counts, and where the services are."""

    rounds: int
    duration: int
    connections: int
    threads: int
    probe_connections: int
    storm_connections: int
    users: int
    tasks_per_user: int
    sample_per_user: int
    postgres: str
    redis: str
    json_path: Path | None
    keep_logs: Path | None


@dataclass
class Result:
    """One wrk run: throughput, latency and errors."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    timeouts: int
    wrapped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    busy_before: float = 0.0  # the machine's CPU use just before the run (0 to 1)

    @property
    def rps(self) -> float:
        """Requests per second (completed answers, errors included)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Non-2xx answers plus connect, read, write errors and timeouts."""
        return self.non2xx + self.socket_errors + self.timeouts


@dataclass
class Server:
    """A server process we started, its base URL and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@dataclass
class Seed:
    """What the Lua scripts need, besides tokens: accounts and tasks in the database."""

    user_ids: list[uuid.UUID]
    emails: list[str]
    storm_emails: list[str]
    sample: list[tuple[int, uuid.UUID]]  # (user index from 1, task id), users interleaved


# --- options and tools -----------------------------------------------------------------------


def parse_options(argv: list[str] | None = None) -> Options:
    """Command-line flags; ``--quick`` means 2 rounds of 5 s unless given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 6; quick 2)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 15; quick 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--probe-connections", type=int, default=8)
    parser.add_argument("--storm-connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=32, help="accounts the load spreads over")
    parser.add_argument("--tasks-per-user", type=int, default=500)
    parser.add_argument("--sample-per-user", type=int, default=20, help="tasks GET/PATCH walk")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 5 s")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--keep-logs", type=Path, help="copy the server logs to this folder")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    duration = args.duration or (5 if args.quick else 15)
    return Options(
        rounds=rounds, duration=duration, connections=args.connections, threads=args.threads,
        probe_connections=args.probe_connections, storm_connections=args.storm_connections,
        users=args.users, tasks_per_user=args.tasks_per_user,
        sample_per_user=min(args.sample_per_user, args.tasks_per_user),
        postgres=args.postgres.rstrip("/"), redis=args.redis, json_path=args.json,
        keep_logs=args.keep_logs,
    )  # fmt: skip


def ensure_wrk() -> str:
    """The path of wrk, installing it with bench/setup.sh when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing; running bench/setup.sh (apt-get install -y wrk)", flush=True)
    subprocess.run(["bash", str(BENCH / "setup.sh")], check=False)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: run `sudo bash bench/setup.sh`, then try again")
    return found


def describe_machine(postgres: str, redis_url: str) -> str:
    """CPUs, CPU model, memory and the versions that matter, for the report."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown CPU")  # fmt: skip
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    with psycopg.connect(f"{postgres}/postgres") as connection:
        pg = connection.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(redis_url)
    redis_version = client.info("server")["redis_version"]
    client.close()
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), {memory_kib / 2**20:.1f} GiB; "
        f"Python {sys.version.split()[0]}, {wrk.stdout.split(' [')[0]}, "
        f"PostgreSQL {pg[0] if pg else '?'}, Redis {redis_version}"
    )


def describe_source() -> str:
    """Which taskapi is measured: its folder, and its git commit when it is a checkout."""
    git = subprocess.run(["git", "-C", str(SOURCE), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    commit = git.stdout.strip() if git.returncode == 0 else "not a git checkout"
    return f"taskapi: {SOURCE} ({commit})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- services --------------------------------------------------------------------------------


@contextmanager
def bench_database(postgres: str) -> Iterator[str]:
    """A fresh database ``bench_<hex>``, dropped at the end; yields its SQLAlchemy URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def bench_redis(url: str) -> Iterator[None]:
    """Our Redis database, flushed before and after (nobody else's)."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield
    finally:
        client.flushdb()
        client.close()


def server_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """taskapi's settings for the run: limits on (Redis) but out of reach, bcrypt at 12."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    env.update({
        "TASKAPI_DATABASE_URL": database_url,
        "TASKAPI_REDIS_URL": redis_url,
        "TASKAPI_SECRET_KEY": SECRET,
        "TASKAPI_DATA_DIR": str(data_dir),
        "TASKAPI_WORKERS": "2",
        "TASKAPI_BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
        "TASKAPI_ACCESS_TOKEN_SECONDS": "86400",
        "TASKAPI_RATELIMIT_ENABLED": "true",
        "TASKAPI_LOG_FORMAT": "json",
    })  # fmt: skip
    env.update({f"TASKAPI_RATELIMIT_{name}": OUT_OF_REACH for name in LIMIT_VARIABLES})
    return env


def start_server(name: str, command: list[str], env: dict[str, str], folder: Path) -> Server:
    """Start a server on a free port (``--port`` is appended) and wait until it answers."""
    port = free_port()
    log = folder / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, cwd=SOURCE)  # fmt: skip
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    wait_answering(server)
    return server


def wait_answering(server: Server, seconds: float = 60) -> None:
    """Wait until the server answers HTTP at all (any status); stop if it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{server.url}/api/v1/tasks/probe", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"{server.name} did not answer within {seconds:.0f} s")


def stop_server(server: Server) -> None:
    """SIGTERM the gunicorn master (it stops its workers), then wait; kill if it hangs."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(40)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# --- data ------------------------------------------------------------------------------------


def seed(engine: Engine, users: int, storm_users: int, tasks: int, sample: int) -> Seed:
    """Bulk-insert accounts (one bcrypt hash shared) and each workload user's tasks."""
    password_hash = hash_password(PASSWORD, rounds=BCRYPT_ROUNDS)
    now, run = utcnow(), uuid.uuid4().hex[:6]
    emails = [f"load-{run}-{i}@example.com" for i in range(users)]
    storm_emails = [f"storm-{run}-{i}@example.com" for i in range(storm_users)]
    user_ids = [uuid.uuid4() for _ in emails]
    task_ids = [[uuid.uuid4() for _ in range(tasks)] for _ in emails]
    accounts = [(user_id, email, tasks) for user_id, email in zip(user_ids, emails, strict=True)]
    accounts += [(uuid.uuid4(), email, 0) for email in storm_emails]
    inboxes = {user_id: uuid.uuid4() for user_id, _, _ in accounts}
    keys = spread(tasks)  # newest first, as a migrated account holds them
    with engine.begin() as connection:
        connection.execute(insert(User), [
            {"id": user_id, "email": email, "name": "", "password_hash": password_hash,
             "created_at": now, "change_seq": count, "task_count": count}
            for user_id, email, count in accounts
        ])  # fmt: skip
        connection.execute(insert(TaskList), [
            {"id": inboxes[user_id], "owner_id": user_id, "title": "Inbox", "position": "a0",
             "inbox": True, "created_at": now, "updated_at": now, "version": 1, "change_seq": 0}
            for user_id, _, _ in accounts
        ])  # fmt: skip
        for user_id, ids in zip(user_ids, task_ids, strict=True):
            connection.execute(insert(Task), [
                {**task_row(user_id, task_id, i, now), "list_id": inboxes[user_id],
                 "position": keys[i]}
                for i, task_id in enumerate(ids)
            ])  # fmt: skip
        connection.exec_driver_sql("ANALYZE")
    picked = [(u + 1, task_ids[u][i]) for i in range(sample) for u in range(users)]
    return Seed(user_ids, emails, storm_emails, picked)


def task_row(owner: uuid.UUID, task_id: uuid.UUID, i: int, now: Any) -> dict[str, Any]:
    """A varied, realistic task row (the ``i``-th of its owner, older as ``i`` grows)."""
    return {
        "id": task_id, "owner_id": owner, "title": f"Task number {i}",
        "notes": f"Some notes about task {i}" if i % 2 else "", "completed": i % 3 == 0,
        "completed_at": now if i % 3 == 0 else None,
        "due_at": now + timedelta(days=i % 30) if i % 2 else None, "priority": i % 4,
        "tags": ["bench", f"tag{i % 5}"], "created_at": now - timedelta(minutes=i),
        "updated_at": now, "version": 1, "change_seq": i + 1,
    }  # fmt: skip


def delete_supply(engine: Engine, user_ids: list[uuid.UUID], count: int) -> list[tuple[int, Any]]:
    """Insert ``count`` old tasks spread over the users, to be deleted once each.

    Each owner's ``change_seq`` and ``task_count`` move with them, as a create would.
    """
    per_user = -(-count // len(user_ids))
    now, rows, picked = utcnow(), [], []
    with engine.begin() as connection:
        for user_id in user_ids:
            inbox, last_key = connection.execute(
                select(TaskList.id, func.max(Task.position))
                .join(Task, Task.list_id == TaskList.id, isouter=True)
                .where(TaskList.owner_id == user_id, TaskList.inbox.is_(True))
                .group_by(TaskList.id)
            ).one()
            keys = spread(per_user, after=last_key)
            last = connection.scalar(
                update(User).where(User.id == user_id)
                .values(change_seq=User.change_seq + per_user,
                        task_count=User.task_count + per_user)
                .returning(User.change_seq)
            )  # fmt: skip
            first = int(last) - per_user + 1
            for i in range(per_user):
                row = task_row(user_id, uuid.uuid4(), 100_000 + i, now)
                rows.append({**row, "title": "To be deleted", "change_seq": first + i,
                             "list_id": inbox, "position": keys[i]})  # fmt: skip
        for start in range(0, len(rows), 5000):
            connection.execute(insert(Task), rows[start : start + 5000])
    for i in range(per_user):
        for u in range(len(user_ids)):
            picked.append((u + 1, rows[u * per_user + i]["id"]))
    return picked


def login(url: str, email: str) -> str:
    """A real login through the API; the access token (valid a day)."""
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    sent = urllib.request.Request(f"{url}/api/v1/auth/login", data=body, method="POST",
                                  headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(sent, timeout=60) as response:
        return str(json.load(response)["access_token"])


def write_rows(path: Path, rows: list[tuple[Any, ...]] | list[str]) -> None:
    """One row per line, fields separated by tabs, for bench/lua/common.lua."""
    lines = ["\t".join(map(str, row)) if isinstance(row, tuple) else row for row in rows]
    path.write_text("\n".join(lines) + "\n")


# --- measuring -------------------------------------------------------------------------------


def run_wrk(script: str, url: str, data: Path, *, connections: int, threads: int,
            seconds: int, timeout: int = 10) -> Result:  # fmt: skip
    """Run wrk with one of bench/lua's scripts; parse the JSON line its ``done`` prints."""
    threads = min(threads, connections)
    env = {**os.environ, "BENCH_LUA": str(LUA), "BENCH_DATA": str(data),
           "BENCH_THREADS": str(threads)}  # fmt: skip
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
               f"--timeout={timeout}s", "-s", str(LUA / script), url]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return to_result(json.loads(line.removeprefix("BENCH_JSON ")))
    raise SystemExit(f"wrk {script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def to_result(raw: dict[str, Any]) -> Result:
    """A Result from the numbers common.lua's ``done`` printed (microseconds)."""
    return Result(
        requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000, p99_ms=raw["p99_us"] / 1000, non2xx=raw["non2xx"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"], timeouts=raw["timeout"],
        wrapped=raw["wrapped"], statuses=raw["statuses"],
    )  # fmt: skip


def cpu_busy_fraction(window: float = 0.5) -> float:
    """The machine's CPU use over ``window`` seconds, from /proc/stat (0 to 1)."""

    def sample() -> tuple[int, int]:
        """(busy, total) jiffies since boot."""
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(window)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def settle(limit: float = 20) -> float:
    """Wait (at most ``limit`` s) until the machine is nearly idle, so that queued bcrypt
    work, the database's background writes and the previous run's tail do not leak into the
    next run; returns the last CPU use seen (above ``QUIET`` when something else kept the
    machine busy)."""
    deadline = time.monotonic() + limit
    busy = cpu_busy_fraction()
    while busy > QUIET and time.monotonic() < deadline:
        busy = cpu_busy_fraction()
    return busy


def vacuum(engine: Engine) -> None:
    """Reclaim dead row versions and refresh the planner's statistics (VACUUM needs
    autocommit), then let the machine settle."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE)")
    settle()


class Bench:
    """Everything a round needs: options, servers, data folder, seed and the DB engine."""

    def __init__(self, options: Options, ceiling: Server, taskapi: Server, data: Path,
                 seeded: Seed, engine: Engine) -> None:  # fmt: skip
        self.options, self.ceiling, self.taskapi = options, ceiling, taskapi
        self.data, self.seeded, self.engine = data, seeded, engine

    def run(self, script: str, server: Server, **kwargs: Any) -> Result:
        """One settled wrk run with the round's defaults (-t, -c, -d)."""
        busy = settle()
        kwargs.setdefault("connections", self.options.connections)
        kwargs.setdefault("threads", self.options.threads)
        kwargs.setdefault("seconds", self.options.duration)
        result = run_wrk(script, server.url, self.data, **kwargs)
        result.busy_before = busy
        return result

    def supply_deletes(self, count: int) -> None:
        """Fresh tasks for DELETE (and the mix's deletes), written to deletes.txt."""
        rows = delete_supply(self.engine, self.seeded.user_ids, count)
        write_rows(self.data / "deletes.txt", rows)

    def round(self) -> dict[str, Result]:
        """Every scenario once: the ceiling, taskapi's endpoints, then the login storm.

        The round starts with ``VACUUM (ANALYZE)``, as autovacuum would have done by then in
        production: each round's writes leave tens of thousands of dead row versions (a PATCH
        changes ``updated_at``, an indexed column, so no update is HOT), most of them on the
        very tasks the list and GET scripts read, and a server running with autovacuum off
        (as the development machine's does) made every later round slower than the first.
        """
        vacuum(self.engine)
        results = {CEILING: self.run("get.lua", self.ceiling)}
        ceiling_rps = results[CEILING].rps
        for name, script in ENDPOINTS:
            if script == "delete.lua":
                self.supply_deletes(int(ceiling_rps * self.options.duration * 1.5) + 1000)
            elif script == "mix.lua":
                self.supply_deletes(int(ceiling_rps * self.options.duration * 0.15) + 500)
            results[name] = self.run(script, self.taskapi)
        results.update(self.storm())
        return results

    def storm(self) -> dict[str, Result]:
        """The 8-connection GET by id alone, then beside 32 connections logging in."""
        probe = {"connections": self.options.probe_connections}
        alone = self.run("get.lua", self.taskapi, **probe)
        busy = settle()
        storm_seconds = self.options.duration + STORM_LEAD_SECONDS + 1
        with ThreadPoolExecutor(1) as pool:
            storm = pool.submit(run_wrk, "login.lua", self.taskapi.url, self.data,
                                connections=self.options.storm_connections,
                                threads=self.options.threads, seconds=storm_seconds,
                                timeout=60)  # fmt: skip
            time.sleep(STORM_LEAD_SECONDS)
            beside = run_wrk("get.lua", self.taskapi.url, self.data, threads=self.options.threads,
                             seconds=self.options.duration, **probe)  # fmt: skip
            stormed = storm.result()
        beside.busy_before = stormed.busy_before = busy
        return {PROBE_ALONE: alone, PROBE_STORM: beside, STORM: stormed}

    def warm_up(self) -> None:
        """A few seconds of GET and list on each server: pools filled, code paths warm."""
        seconds = max(2, min(5, self.options.duration // 3))
        for script, server in (("get.lua", self.ceiling), ("get.lua", self.taskapi),
                               ("list.lua", self.taskapi)):  # fmt: skip
            self.run(script, server, seconds=seconds)


# --- reporting -------------------------------------------------------------------------------

HEADER = f"{'scenario':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  ratio"


def ratio_note(name: str, results: dict[str, Result]) -> str:
    """The ratio column: to the ceiling for endpoints, to the lone probe beside the storm."""
    if name in dict(ENDPOINTS):
        return f"x{results[name].rps / results[CEILING].rps:.2f} of ceiling"
    if name == PROBE_STORM:
        alone, beside = results[PROBE_ALONE], results[PROBE_STORM]
        return f"req/s x{beside.rps / alone.rps:.2f}, p99 x{beside.p99_ms / alone.p99_ms:.2f}"
    return ""


def row(name: str, result: Result, note: str) -> str:
    """One table line; odd statuses and an exhausted DELETE supply are spelled out."""
    extra = ""
    if result.statuses:
        extra += "  statuses " + ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items()))
    if result.wrapped:
        extra += f"  (delete supply ran out {result.wrapped} times)"
    if result.timeouts:
        extra += f"  ({result.timeouts} timeouts)"
    if result.busy_before > QUIET:
        extra += f"  (machine {result.busy_before:.0%} busy before: noisy)"
    return (f"{name:<24}{result.rps:>9.1f}{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}"
            f"{result.errors:>8}  {note}{extra}")  # fmt: skip


def print_round(number: int, options: Options, results: dict[str, Result]) -> None:
    """The table of one round."""
    print(f"\nround {number} of {options.rounds} ({options.duration} s per run)\n{HEADER}")
    for name, result in results.items():
        print(row(name, result, ratio_note(name, results)))
    sys.stdout.flush()


def median_result(results: list[Result]) -> Result:
    """Medians of req/s, p50 and p99 across rounds; errors are summed."""
    rps = statistics.median(r.rps for r in results)
    return Result(
        requests=round(rps * 1000), seconds=1000.0,
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        timeouts=sum(r.timeouts for r in results), wrapped=sum(r.wrapped for r in results),
    )  # fmt: skip


def median_ratio(rounds: list[dict[str, Result]], name: str, base: str, metric: str) -> float:
    """The median across rounds of ``name``'s metric over ``base``'s in the same round."""
    return statistics.median(getattr(r[name], metric) / getattr(r[base], metric) for r in rounds)


def print_summary(options: Options, rounds: list[dict[str, Result]]) -> None:
    """Medians over the rounds, with each ratio the median of the per-round ratios."""
    print(f"\nmedian of {len(rounds)} rounds ({options.duration} s per run, wrk "
          f"-t{options.threads} -c{options.connections}; errors summed)\n{HEADER}")  # fmt: skip
    for name in rounds[0]:
        note = ""
        if name in dict(ENDPOINTS):
            note = f"x{median_ratio(rounds, name, CEILING, 'rps'):.2f} of ceiling"
        elif name == PROBE_STORM:
            note = (f"req/s x{median_ratio(rounds, name, PROBE_ALONE, 'rps'):.2f}, "
                    f"p99 x{median_ratio(rounds, name, PROBE_ALONE, 'p99_ms'):.2f}")  # fmt: skip
        print(row(name, median_result([r[name] for r in rounds]), note))


def save_json(path: Path, options: Options, rounds: list[dict[str, Result]]) -> None:
    """Every run's numbers, for comparing two runs later."""
    payload = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "rounds": [{n: {**asdict(r), "rps": r.rps} for n, r in rs.items()} for rs in rounds],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --- main ------------------------------------------------------------------------------------


@contextmanager
def servers(env: dict[str, str], folder: Path, keep: Path | None) -> Iterator[tuple[Server, ...]]:
    """taskapi (which migrates the database first) and the ceiling; both stopped at the end."""
    started: list[Server] = []
    try:
        started.append(start_server("taskapi", [sys.executable, "-m", "taskapi.cli", "serve",
                                                "--workers", "2"], env, folder))  # fmt: skip
        started.append(start_server("ceiling", [sys.executable, str(BENCH / "ceiling_app.py")],
                                    env, folder))  # fmt: skip
        yield tuple(started)
    finally:
        for server in started:
            stop_server(server)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for server in started:
                shutil.copy(server.log, keep / server.log.name)


def prepare_data(bench_url: str, engine: Engine, options: Options, data: Path) -> Seed:
    """Seed the database and write tokens, tasks and storm logins for the Lua scripts."""
    print(f"seeding {options.users} users x {options.tasks_per_user} tasks, "
          f"{options.storm_connections} storm users; logging in ...", flush=True)  # fmt: skip
    seeded = seed(engine, options.users, options.storm_connections, options.tasks_per_user,
                  options.sample_per_user)  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda email: login(bench_url, email), seeded.emails))
    write_rows(data / "tokens.txt", tokens)
    write_rows(data / "tasks.txt", seeded.sample)
    write_rows(data / "logins.txt", [(email, PASSWORD) for email in seeded.storm_emails])
    write_rows(data / "deletes.txt", [])
    return seeded


def main(argv: list[str] | None = None) -> None:
    """Set up, run the rounds, print and clean up."""
    options = parse_options(argv)
    ensure_wrk()
    print(describe_machine(options.postgres, options.redis), flush=True)
    print(describe_source(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="taskapi-load-") as tmp,
        bench_database(options.postgres) as database_url,
        bench_redis(options.redis),
    ):
        folder = Path(tmp)
        env = server_env(database_url, options.redis, folder / "instance")
        with servers(env, folder, options.keep_logs) as (taskapi, ceiling):
            engine = make_engine(database_url)
            try:
                seeded = prepare_data(taskapi.url, engine, options, folder)
                bench = Bench(options, ceiling, taskapi, folder, seeded, engine)
                bench.warm_up()
                rounds = []
                for number in range(1, options.rounds + 1):
                    rounds.append(bench.round())
                    print_round(number, options, rounds[-1])
            finally:
                engine.dispose()
    print_summary(options, rounds)
    if options.json_path:
        save_json(options.json_path, options, rounds)


if __name__ == "__main__":
    main()
