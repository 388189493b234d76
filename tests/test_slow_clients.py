"""Slow clients against a real ``taskapi serve``: held connections cost no thread, and end.

Raw sockets on loopback play the attacker: uploads whose chunked body never finishes, and
slowloris connections that trickle their headers. Everyone else must still be answered
quickly, and every slow request must end (a 408 or a closed connection) within its deadline.
The server runs one worker, so nothing here is absorbed by a second process.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from sqlalchemy import make_url

from taskapi.server import gunicorn_options
from taskapi.settings import Settings, usable_cores
from tests.conftest import PASSWORD, LiveServer, server_env, start_server, unique_email

AUTH = "/api/v1/auth"
SLOW = 64  # of each kind
DEADLINE = 2  # seconds: TASKAPI_HEADER_TIMEOUT_SECONDS and TASKAPI_BODY_TIMEOUT_SECONDS here
ANSWER_WITHIN = 2.0
SLACK = 2.0  # for scheduling and loopback under load


@pytest.fixture(scope="module")
def slow_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One server per database for this module, with short deadlines for slow clients."""
    workdir = tmp_path_factory.mktemp("slow")
    env = {
        **server_env(workdir),
        "TASKAPI_DATABASE_URL": database_url,
        "TASKAPI_HEADER_TIMEOUT_SECONDS": str(DEADLINE),
        "TASKAPI_BODY_TIMEOUT_SECONDS": str(DEADLINE),
    }
    server = start_server(env, workdir)
    yield server
    server.stop()


def address(server: LiveServer) -> tuple[str, int]:
    """(host, port) of a live server."""
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def slow_upload(where: tuple[str, int]) -> socket.socket:
    """An unauthenticated POST whose chunked body starts and never finishes."""
    sock = socket.create_connection(where, timeout=5)
    sock.sendall(
        b"POST /api/v1/auth/register HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffff\r\n{"
    )
    return sock


def slowloris(where: tuple[str, int]) -> socket.socket:
    """A request whose headers start and never finish."""
    sock = socket.create_connection(where, timeout=5)
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Padding: ")
    return sock


@dataclass
class Attack:
    """Held-open slow connections, each with when it was opened."""

    opened: dict[socket.socket, float] = field(default_factory=dict)

    def close(self) -> None:
        """Close every socket we opened."""
        for sock in self.opened:
            sock.close()


@contextmanager
def held_open(where: tuple[str, int]) -> Iterator[Attack]:
    """SLOW stalled uploads and SLOW slowloris connections, all closed at the end."""
    attack = Attack()
    try:
        for _ in range(SLOW):
            attack.opened[slow_upload(where)] = time.monotonic()
            attack.opened[slowloris(where)] = time.monotonic()
        yield attack
    finally:
        attack.close()


def trickle_until_all_end(attack: Attack, limit: float) -> tuple[int, float, list[bytes]]:
    """Trickle a byte into every open connection each 0.25 s until the server ends each one.

    Returns how many are still open, the longest any stayed open, and the status lines the
    server sent before closing.
    """
    selector = selectors.DefaultSelector()
    for sock in attack.opened:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    received = dict.fromkeys(attack.opened, b"")
    ended: dict[socket.socket, float] = {}
    stop = time.monotonic() + limit
    while len(ended) < len(attack.opened) and time.monotonic() < stop:
        for sock in attack.opened.keys() - ended.keys():
            with suppress(OSError):  # the server closed it; the read below sees that too
                sock.send(b"a")
        for key, _ in selector.select(timeout=0.25):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)
            except OSError:  # reset: the server closed with our trickle unread
                data = b""
            if data:
                received[sock] += data
                continue
            ended[sock] = time.monotonic()
            selector.unregister(sock)
    selector.close()
    longest = max((ended[s] - attack.opened[s] for s in ended), default=0.0)
    lines = [received[s].split(b"\r\n", 1)[0] for s in ended if received[s]]
    return len(attack.opened) - len(ended), longest, lines


def read_until_closed(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` passes)."""
    sock.setblocking(True)
    sock.settimeout(limit)
    data = b""
    with suppress(TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    """A request's response and how long it took."""
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def signup(server: LiveServer) -> tuple[dict[str, str], dict[str, str]]:
    """Register and log in over HTTP: (credentials, Authorization header)."""
    body = {"email": unique_email("slow"), "password": PASSWORD}
    made = requests.post(f"{server.url}{AUTH}/register", json=body, timeout=10)
    assert made.status_code == 201, made.text
    answer = requests.post(f"{server.url}{AUTH}/login", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return body, {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.mark.slow
def test_slow_clients_do_not_starve_the_server(slow_server: LiveServer) -> None:
    """With 64 stalled uploads and 64 slowloris connections held open, health, an
    authenticated read and a login answer within 2 s; every slow request ends in time,
    a stalled body with the contract's JSON 408."""
    credentials, auth = signup(slow_server)
    url = slow_server.url
    with held_open(address(slow_server)) as attack:
        witness = slow_upload(address(slow_server))  # never trickled into: its answer is read
        witness_opened = time.monotonic()
        health, health_took = timed(lambda: requests.get(f"{url}/api/health", timeout=5))
        me, me_took = timed(lambda: requests.get(f"{url}{AUTH}/me", headers=auth, timeout=5))
        login, login_took = timed(
            lambda: requests.post(f"{url}{AUTH}/login", json=credentials, timeout=5)
        )
        assert [health.status_code, me.status_code, login.status_code] == [200, 200, 200]
        assert max(health_took, me_took, login_took) < ANSWER_WITHIN, (
            health_took, me_took, login_took,
        )  # fmt: skip
        still_open, longest, lines = trickle_until_all_end(attack, limit=DEADLINE + 3 * SLACK)
        with witness:
            answer = read_until_closed(witness, limit=SLACK)
            witness_took = time.monotonic() - witness_opened
    assert still_open == 0
    assert longest < DEADLINE + SLACK, longest
    # Trickled headers are cut off without a word; stalled bodies hear why (unless the reset
    # our trickle causes overtakes the answer). Nothing else is ever said.
    assert {line.split(b" ")[1] for line in lines} <= {b"408"}, lines
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert "content-type: application/json" in head.decode().lower(), head
    assert json.loads(body)["code"] == "request_timeout", body
    assert witness_took < DEADLINE + SLACK, witness_took
    assert requests.get(f"{url}/api/health", timeout=ANSWER_WITHIN).ok
    assert "Traceback" not in slow_server.log(), slow_server.log()


@pytest.mark.slow
def test_a_query_waiting_on_a_lock_does_not_block_the_worker(
    slow_server: LiveServer, database_url: str, is_postgres: bool
) -> None:
    """psycopg waits cooperatively in the gevent worker: while a login waits for a row lock
    held elsewhere, the same (single) worker still answers health checks."""
    if not is_postgres:
        pytest.skip("row locks that make a query wait: PostgreSQL only")
    credentials, _ = signup(slow_server)
    dsn = make_url(database_url).set(drivername="postgresql")
    results: list[requests.Response] = []

    def log_in() -> None:
        """A login, which locks the user's row to open its session."""
        url = f"{slow_server.url}{AUTH}/login"
        results.append(requests.post(url, json=credentials, timeout=20))

    with psycopg.connect(dsn.render_as_string(hide_password=False)) as holder:
        holder.execute("SELECT id FROM users WHERE email = %s FOR UPDATE", [credentials["email"]])
        login = threading.Thread(target=log_in)
        login.start()
        time.sleep(1)  # the login now waits for the lock, inside PostgreSQL
        health, took = timed(lambda: requests.get(f"{slow_server.url}/api/health", timeout=5))
        assert health.status_code == 200
        assert took < ANSWER_WITHIN, took
        assert not results, "the login should still be waiting for the lock"
        holder.rollback()
    login.join(20)
    assert [r.status_code for r in results] == [200]


@pytest.mark.slow
def test_idle_keep_alive_connections_do_not_delay_shutdown(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    """SIGTERM (or recycling after max_requests) closes connections waiting for a request at
    once: only requests in flight hold up a worker's exit, not the header deadline."""
    server = live_server_factory({"TASKAPI_HEADER_TIMEOUT_SECONDS": "20"})
    with socket.create_connection(address(server), timeout=5) as idle:
        idle.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):  # the whole answer; the connection stays open
            answer += idle.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(30)
        took = time.monotonic() - started
    assert server.process.returncode == 0
    assert took < 5, took
    assert "Traceback" not in server.log(), server.log()


@pytest.mark.slow
def test_bcrypt_runs_off_the_event_loop(live_server_factory: Callable[..., LiveServer]) -> None:
    """While logins hash at a real cost (bcrypt in the thread pool), the one worker's event
    loop still answers health checks at once."""
    server = live_server_factory({"TASKAPI_BCRYPT_ROUNDS": "13"})  # ~0.4 s per hash here
    body = {"email": unique_email("bcrypt"), "password": PASSWORD}
    assert requests.post(f"{server.url}{AUTH}/register", json=body, timeout=10).ok
    statuses: list[int] = []

    def log_in() -> None:
        """One login: one bcrypt check."""
        url = f"{server.url}{AUTH}/login"
        statuses.append(requests.post(url, json=body, timeout=20).status_code)

    logins = [threading.Thread(target=log_in) for _ in range(4)]
    for login in logins:
        login.start()
    time.sleep(0.1)  # the hashes are running
    slowest = max(
        timed(lambda: requests.get(f"{server.url}/api/health", timeout=5))[1] for _ in range(5)
    )
    for login in logins:
        login.join(20)
    assert statuses == [200] * 4
    assert slowest < 0.25, slowest


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "expected"),
    [(2, 2, None, 1), (8, 2, None, 4), (8, 3, None, 2), (1, 2, None, 1), (2, 2, 6, 6)],
)
def test_the_bcrypt_pool_is_sized_to_the_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cores: int, workers: int,
    threads: int | None, expected: int,
) -> None:  # fmt: skip
    """Unless TASKAPI_THREADS says otherwise, each worker's bcrypt pool gets its share of the
    cores this process may run on (at least one thread): a login storm's hashes then queue
    instead of taking the CPU from the reads; gunicorn's thread pool is that size."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    settings = Settings(data_dir=tmp_path, workers=workers, threads=threads)
    assert settings.bcrypt_threads == expected
    assert gunicorn_options(settings, host="127.0.0.1", port=8000)["threads"] == expected


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("150000 100000\n", 1), ("400000 100000\n", 4), ("max 100000\n", 8), ("garbage\n", 8),
     (None, 8)],
)  # fmt: skip
def test_a_containers_cpu_quota_bounds_the_usable_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu_max: str | None, expected: int
) -> None:
    """A container limited to fewer CPUs than the host shows (cgroup v2 ``cpu.max``) counts
    its quota, not the host's cores; no quota, or no such file, leaves the affinity."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    limit = tmp_path / "cpu.max"
    if cpu_max is not None:
        limit.write_text(cpu_max)
    assert usable_cores(limit) == expected
