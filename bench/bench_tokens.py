"""A GET with a personal access token beside the same GET with a session access token.

    bash bench/setup.sh                         # once: installs wrk (Debian package)
    uv run python bench/bench_tokens.py         # 6 rounds of 3 x 15 s, about 6 minutes
    uv run python bench/bench_tokens.py --quick # 3 rounds of 3 x 5 s, about 1.5 minutes

Needs PostgreSQL (``--postgres``, default postgres@127.0.0.1:5432, trust) and Redis
(``--redis``, default database 12 on 127.0.0.1:6379, flushed at start and end). It creates a
database ``bench_<hex>`` of its own and drops it at the end, and starts ``taskapi serve
--workers 2`` exactly as ``bench/load.py`` does (rate limits on, in Redis, every budget out of
reach; bcrypt at 12; JSON access log). It seeds users and tasks with load.py's code, logs each
user in for a session access token, and makes each user a personal token with ``tasks:read``
through ``POST /api/v1/auth/tokens``.

Then, in interleaved rounds, ``wrk -t2 -c32`` runs ``bench/lua/get.lua`` (GET /tasks/<id>,
each task with its owner's credential) once with the session tokens and once with the personal
tokens, alternating which goes first, and then both at once (``-t1 -c16`` each), so that
whatever else the machine is doing slows both alike. It prints req/s, p50 and p99 per round and
path, and the median over the rounds of each round's token/session ratio, alone and side by
side. Target: the token path costs no more than the session path (a side-by-side req/s ratio
of 1.00 or more, within 3 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

# bench/ is this script's folder, so it is on sys.path: reuse the load benchmark's set-up.
from load import (
    QUIET,
    Result,
    bench_database,
    bench_redis,
    describe_machine,
    describe_source,
    ensure_wrk,
    login,
    median_result,
    run_wrk,
    seed,
    server_env,
    settle,
    start_server,
    stop_server,
    write_rows,
)

from taskapi.db import make_engine

PATHS = ("session", "token")
SCOPES = ["tasks:read"]
NOISE = 0.03  # ratios within this of 1.00 count as equal


@dataclass(frozen=True)
class Options:
    """Rounds, run length, wrk's connections and threads, data size, and the services."""

    rounds: int
    duration: int
    connections: int
    threads: int
    users: int
    tasks_per_user: int
    sample_per_user: int
    postgres: str
    redis: str
    json_path: Path | None


def parse_options(argv: list[str] | None = None) -> Options:
    """Command-line flags; ``--quick`` means 3 rounds of 5 s unless given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 6; quick 3)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 15; quick 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--users", type=int, default=32, help="accounts the load spreads over")
    parser.add_argument("--tasks-per-user", type=int, default=500)
    parser.add_argument("--sample-per-user", type=int, default=20, help="tasks the GETs walk")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds of 5 s")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    args = parser.parse_args(argv)
    return Options(
        rounds=args.rounds or (3 if args.quick else 6),
        duration=args.duration or (5 if args.quick else 15),
        connections=args.connections, threads=args.threads, users=args.users,
        tasks_per_user=args.tasks_per_user,
        sample_per_user=min(args.sample_per_user, args.tasks_per_user),
        postgres=args.postgres.rstrip("/"), redis=args.redis, json_path=args.json,
    )  # fmt: skip


def personal_token(url: str, access_token: str) -> str:
    """A personal token with ``tasks:read``, made through the API with the user's session."""
    body = json.dumps({"name": "bench", "scopes": SCOPES}).encode()
    sent = urllib.request.Request(f"{url}/api/v1/auth/tokens", data=body, method="POST",
                                  headers={"Content-Type": "application/json",
                                           "Authorization": f"Bearer {access_token}"})  # fmt: skip
    with urllib.request.urlopen(sent, timeout=60) as response:
        return str(json.load(response)["token"])


def check_answers(url: str, credential: str, task_id: str) -> None:
    """One GET with the credential must answer 200 before anything is measured."""
    sent = urllib.request.Request(f"{url}/api/v1/tasks/{task_id}",
                                  headers={"Authorization": f"Bearer {credential}"})  # fmt: skip
    with urllib.request.urlopen(sent, timeout=10) as response:
        assert response.status == 200, response.status


def prepare(url: str, database_url: str, options: Options, folder: Path) -> dict[str, Path]:
    """Seed, log in, make the personal tokens; one data folder per path for the Lua script
    (the same tasks, each with its owner's session token or personal token)."""
    print(f"seeding {options.users} users x {options.tasks_per_user} tasks; logging in and "
          "making a personal token per user ...", flush=True)  # fmt: skip
    engine = make_engine(database_url)
    try:  # load.py's accounts: each an inbox holding its tasks; no login-storm accounts
        seeded = seed(engine, options.users, 0, options.tasks_per_user, options.sample_per_user)
    finally:
        engine.dispose()
    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(lambda email: login(url, email), seeded.emails))
        tokens = list(pool.map(lambda access: personal_token(url, access), sessions))
    folders = {}
    for path, credentials in zip(PATHS, (sessions, tokens), strict=True):
        folders[path] = folder / path
        folders[path].mkdir()
        write_rows(folders[path] / "tokens.txt", credentials)
        write_rows(folders[path] / "tasks.txt", seeded.sample)
        user, task_id = seeded.sample[0]
        check_answers(url, credentials[user - 1], str(task_id))
    return folders


def side_by_side(url: str, data: dict[str, Path], options: Options) -> dict[str, Result]:
    """Both paths at once, half the connections each: whatever else the machine does hits
    both alike, and in a closed loop their req/s ratio is the inverse of their cost ratio."""
    busy = settle()
    half = max(1, options.connections // 2)
    threads = max(1, options.threads // 2)
    with ThreadPoolExecutor(2) as pool:
        running = {path: pool.submit(run_wrk, "get.lua", url, data[path], connections=half,
                                     threads=threads, seconds=options.duration)
                   for path in PATHS}  # fmt: skip
        results = {path: running[path].result() for path in PATHS}
    for result in results.values():
        result.busy_before = busy
    return results


def measure(url: str, data: Path, options: Options, seconds: int) -> Result:
    """One settled wrk run of GET /tasks/<id> with the credentials in ``data``."""
    busy = settle()
    result = run_wrk("get.lua", url, data, connections=options.connections,
                     threads=options.threads, seconds=seconds)  # fmt: skip
    result.busy_before = busy
    return result


HEADER = f"{'path':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"


def line(name: str, result: Result) -> str:
    """One table line."""
    noisy = f"  (machine {result.busy_before:.0%} busy before: noisy)" if (
        result.busy_before > QUIET) else ""  # fmt: skip
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items()))
    return (f"{name:<16}{result.rps:>9.1f}{result.p50_ms:>9.2f}{result.p99_ms:>9.1f}"
            f"{result.errors:>8}{'  statuses ' + statuses if statuses else ''}{noisy}")  # fmt: skip


def ratios(results: dict[str, Result], suffix: str = "") -> tuple[float, float, float]:
    """token/session for req/s, p50 and p99 (of the runs alone, or with `` (both)``)."""
    token, session = results["token" + suffix], results["session" + suffix]
    return (token.rps / session.rps, token.p50_ms / session.p50_ms,
            token.p99_ms / session.p99_ms)  # fmt: skip


def print_ratios(rounds: list[dict[str, Result]], *, flush: bool = False) -> float:
    """token/session of the runs alone and of the runs side by side: the median over
    ``rounds`` of each round's ratio. Returns the median req/s ratio side by side."""
    found = 0.0
    for label, suffix in (("alone", ""), ("side by side", " (both)")):
        per_round = [ratios(r, suffix) for r in rounds]
        rps, p50, p99 = (statistics.median(values) for values in zip(*per_round, strict=True))
        spread = f" (rounds: {', '.join(f'{r[0]:.3f}' for r in per_round)})" if (
            len(rounds) > 1) else ""  # fmt: skip
        print(f"token/session, {label + ':':<14}req/s x{rps:.3f}{spread}, p50 x{p50:.3f}, "
              f"p99 x{p99:.3f}", flush=flush)  # fmt: skip
        found = rps
    return found


def main(argv: list[str] | None = None) -> None:
    """Set up, run the interleaved rounds, print the medians, clean up."""
    options = parse_options(argv)
    ensure_wrk()
    print(describe_machine(options.postgres, options.redis), flush=True)
    print(describe_source(), flush=True)
    rounds: list[dict[str, Result]] = []
    with (
        tempfile.TemporaryDirectory(prefix="taskapi-tokens-") as tmp,
        bench_database(options.postgres) as database_url,
        bench_redis(options.redis),
    ):
        folder = Path(tmp)
        env = server_env(database_url, options.redis, folder / "instance")
        command = [sys.executable, "-m", "taskapi.cli", "serve", "--workers", "2"]
        server = start_server("taskapi", command, env, folder)
        try:
            data = prepare(server.url, database_url, options, folder)
            for path in PATHS:  # warm up: pools filled, code paths and signature cache warm
                measure(server.url, data[path], options, max(2, min(5, options.duration // 3)))
            for number in range(1, options.rounds + 1):
                order = PATHS if number % 2 else tuple(reversed(PATHS))
                results = {path: measure(server.url, data[path], options, options.duration)
                           for path in order}  # fmt: skip
                both = side_by_side(server.url, data, options)
                rounds.append({**{path: results[path] for path in PATHS},
                               **{f"{path} (both)": both[path] for path in PATHS}})  # fmt: skip
                print(f"\nround {number} of {options.rounds} ({options.duration} s per run, "
                      f"{order[0]} first; then both at once)\n{HEADER}")  # fmt: skip
                for name, result in rounds[-1].items():
                    print(line(name, result))
                print_ratios(rounds[-1:], flush=True)
        finally:
            stop_server(server)
    print_summary(options, rounds)
    if options.json_path:
        payload = {"options": {k: str(v) for k, v in asdict(options).items()},
                   "rounds": [{p: {**asdict(r), "rps": r.rps} for p, r in rs.items()}
                              for rs in rounds]}  # fmt: skip
        options.json_path.write_text(json.dumps(payload, indent=2) + "\n")


def print_summary(options: Options, rounds: list[dict[str, Result]]) -> None:
    """Medians per path, and the median of the per-round token/session ratios."""
    print(f"\nmedian of {len(rounds)} rounds ({options.duration} s per run, wrk "
          f"-t{options.threads} -c{options.connections}; errors summed)\n{HEADER}")  # fmt: skip
    for name in rounds[0]:
        print(line(name, median_result([r[name] for r in rounds])))
    rps = print_ratios(rounds)
    verdict = "met" if rps >= 1 - NOISE else "missed"
    print(f"target: the token path costs no more than the session path (side-by-side req/s "
          f"ratio >= {1 - NOISE:.2f}): {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
