"""Where a live server's CPU goes under load: py-spy on taskapi's workers while wrk runs.

    uv tool install py-spy              # once (from PyPI); needs ptrace (root, CAP_SYS_PTRACE)
    uv run python bench/spy.py get      # or list, create, patch, delete, mix
    uv run python bench/spy.py get --seconds 20 --top 40 --raw /tmp/get.txt

Sets up what ``load.py`` does (its own database and Redis database, ``taskapi serve
--workers 2``, seeded users and tasks, real logins) but starts only taskapi, runs one of the
Lua scenarios with ``wrk -t2 -c32`` and records both workers with ``py-spy record
--subprocesses`` meanwhile. It prints the share of samples spent in each function (inclusive:
anywhere on the stack, and self: at the top) and, with ``--raw``, keeps the collapsed stacks
for a flame graph. Samples are wall-clock samples of busy threads (``--idle`` off).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import load  # noqa: E402

from taskapi.db import make_engine  # noqa: E402

SCRIPTS = {"get": "get.lua", "list": "list.lua", "create": "create.lua", "patch": "patch.lua",
           "delete": "delete.lua", "mix": "mix.lua"}  # fmt: skip


def summarize(raw: Path, top: int) -> None:
    """Inclusive and self shares per function, from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit(
            "/", 1)[-1] + ")" for frame in stack.split(";")]  # fmt: skip
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    print(f"{total} samples\n\ninclusive (anywhere on the stack):")
    for frame, count in inclusive.most_common(top):
        print(f"{100 * count / total:6.1f} %  {frame}")
    print("\nself (at the top of the stack):")
    for frame, count in own.most_common(top):
        print(f"{100 * count / total:6.1f} %  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCRIPTS))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path.home() / ".local/bin/py-spy")
    options = load.parse_options(["--quick", "--postgres", args.postgres, "--redis", args.redis])
    load.ensure_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="taskapi-spy-") as tmp,
        load.bench_database(args.postgres) as database_url,
        load.bench_redis(args.redis),
    ):
        folder = Path(tmp)
        env = load.server_env(database_url, args.redis, folder / "instance")
        command = [sys.executable, "-m", "taskapi.cli", "serve", "--workers", "2"]
        server = load.start_server("taskapi", command, env, folder)
        engine = make_engine(database_url)
        try:
            seeded = load.prepare_data(server.url, engine, options, folder)
            if args.scenario in ("delete", "mix"):
                supply = load.delete_supply(engine, seeded.user_ids, 40_000)
                load.write_rows(folder / "deletes.txt", supply)
            raw = args.raw or folder / "stacks.txt"
            wrk_env = {**os.environ, "BENCH_LUA": str(load.LUA), "BENCH_DATA": str(folder),
                       "BENCH_THREADS": "2"}  # fmt: skip
            wrk = subprocess.Popen(
                ["wrk", "-t2", "-c32", f"-d{args.seconds + 4}s", "-s",
                 str(load.LUA / SCRIPTS[args.scenario]), server.url],
                cwd=folder, env=wrk_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            subprocess.run([spy, "record", "--pid", str(server.process.pid), "--subprocesses",
                            "--format", "raw", "--rate", "200", "--duration", str(args.seconds),
                            "--output", str(raw), "--nonblocking"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            out, _ = wrk.communicate()
            for line in out.decode(errors="replace").splitlines():
                if line.startswith("BENCH_JSON "):
                    found = load.to_result(json.loads(line.removeprefix("BENCH_JSON ")))
                    print(f"wrk: {found.rps:.0f} req/s, p50 {found.p50_ms:.1f} ms, "
                          f"{found.errors} errors")  # fmt: skip
            summarize(raw, args.top)
        finally:
            engine.dispose()
            load.stop_server(server)


if __name__ == "__main__":
    main()
