"""One user floods password checks; another user's login latency should barely move.

    uv run python bench/bench_password_flood.py [--seconds 15] [--flooders 16]

Starts ``taskapi serve`` as shipped (2 workers, bcrypt cost 12, limits on, SQLite in a temp
folder), then measures user B's login latency alone, and again while user A's stolen access
token hammers ``POST /auth/password`` with wrong passwords from many threads and addresses
(``X-Forwarded-For`` through one trusted proxy hop). Prints p50/p99 of both and their ratio:
the per-user and per-address password-check budgets keep the flood from reaching bcrypt, so
the ratio should stay under 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

SECRET = "bench-secret-bench-secret-bench-secret-0123"
PASSWORD = "a long bench passphrase"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``taskapi serve`` with the shipped defaults but for the data folder and a proxy hop."""
    port = free_port()
    env = {**os.environ, "TASKAPI_DATA_DIR": str(folder), "TASKAPI_SECRET_KEY": SECRET,
           "TASKAPI_TRUSTED_PROXIES": "1"}  # fmt: skip
    log = (folder / "server.log").open("wb")
    command = [sys.executable, "-m", "taskapi.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/api/health", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


def account(url: str, address: str) -> tuple[str, str]:
    """Register and log in a user; (email, access token)."""
    email = f"bench-{os.urandom(4).hex()}@example.com"
    body = {"email": email, "password": PASSWORD}
    headers = {"X-Forwarded-For": address}
    requests.post(f"{url}/api/v1/auth/register", json=body, headers=headers, timeout=30)
    answer = requests.post(f"{url}/api/v1/auth/login", json=body, headers=headers, timeout=30)
    return email, answer.json()["access_token"]


def login_latencies(url: str, email: str, seconds: float) -> list[float]:
    """Seconds each of B's logins took, one after another, for ``seconds``."""
    body = {"email": email, "password": PASSWORD}
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # A fresh address each time, so B's own per-address budget never refuses B.
        address = f"10.200.{len(samples) // 250}.{len(samples) % 250}"
        started = time.perf_counter()
        answer = requests.post(f"{url}/api/v1/auth/login", json=body,
                               headers={"X-Forwarded-For": address}, timeout=60)  # fmt: skip
        samples.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return samples


def flood(url: str, token: str, stop: threading.Event, counts: dict[int, int], n: int) -> None:
    """Wrong current passwords with A's token, from a rotating set of addresses."""
    session = requests.Session()
    body = {"current_password": "wrong guess", "new_password": "another long passphrase"}
    i = 0
    while not stop.is_set():
        i += 1
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"10.{n}.{i % 250}.1"}
        status = session.post(f"{url}/api/v1/auth/password", json=body, headers=headers,
                              timeout=60).status_code  # fmt: skip
        counts[status] = counts.get(status, 0) + 1


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile in milliseconds (the largest sample when there are few)."""
    if len(samples) < 100:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000
    return statistics.quantiles(samples, n=100)[int(p) - 1] * 1000


def main() -> None:
    """Measure idle, then under flood, and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--flooders", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start(Path(tmp))
        try:
            _a_email, a_token = account(url, "10.1.1.1")
            b_email, _b_token = account(url, "10.9.9.9")
            login_latencies(url, b_email, 2)  # warm up
            idle = login_latencies(url, b_email, args.seconds)
            stop, counts = threading.Event(), {}  # type: ignore[var-annotated]
            threads = [threading.Thread(target=flood, args=(url, a_token, stop, counts, n))
                       for n in range(args.flooders)]  # fmt: skip
            for thread in threads:
                thread.start()
            time.sleep(1)
            loaded = login_latencies(url, b_email, args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            if os.environ.get("BENCH_KEEP_LOG"):
                (Path(os.environ["BENCH_KEEP_LOG"])).write_bytes(
                    (Path(tmp) / "server.log").read_bytes()
                )
    print(f"flood answers by status: {dict(sorted(counts.items()))}")
    print(f"B's login idle:    p50 {percentile(idle, 50):7.1f} ms  "
          f"p99 {percentile(idle, 99):7.1f} ms  ({len(idle)} logins)")  # fmt: skip
    print(
        f"B's login flooded: p50 {percentile(loaded, 50):7.1f} ms  "
        f"p99 {percentile(loaded, 99):7.1f} ms  ({len(loaded)} logins)"
    )
    print(f"p99 flooded / idle: {percentile(loaded, 99) / percentile(idle, 99):.2f}")


if __name__ == "__main__":
    main()
