"""Prometheus metrics: counted across gunicorn workers, exposed only where configured.

The real-server test sends a known sequence of requests, each on its own connection, to
``taskapi serve`` with two workers, tallies every answer it got, and expects the metrics
(from the master's listener and from the public port with the token) to equal the tallies.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from taskapi import create_app
from taskapi.settings import Settings
from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    LiveServer,
    free_port,
    launch_server,
    server_env,
    unique_email,
    wait_healthy,
)

AUTH = "/api/v1/auth"
CLOSE = {"Connection": "close"}  # every request on a new connection, so both workers serve
TOKEN = "metrics-token-" + "x" * 20
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
NOT_TALLIED = ("/api/health", "/metrics")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a metrics text, by (name, sorted labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class Tally:
    """Requests sent to a live server, counted by (route template, method, status)."""

    def __init__(self, server: LiveServer, app: Flask) -> None:
        self.server = server
        self.adapter = app.url_map.bind("localhost")
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def send(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """Send one request on a new connection and count its answer under its route."""
        headers = {**CLOSE, **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = requests.request(
            method, self.server.url + path, headers=headers, timeout=10, **kwargs
        )
        try:
            rule = self.adapter.match(path, method, return_rule=True)[0].rule
        except Exception:  # NotFound, MethodNotAllowed
            rule = "unmatched"
        self.counts[(rule, method, str(answer.status_code))] += 1
        return answer


def session_id(access_token: str) -> str:
    """The session id (``sid``) inside a JWT, read without checking it."""
    payload = access_token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


def requests_per_worker(folder: Path) -> dict[str, float]:
    """Tallied requests each worker counted, from its own multiprocess file."""
    per_worker = {}
    for path in folder.glob("counter_*.db"):
        total = 0.0
        for key, count, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            name, _sample, labels, _help = json.loads(key)
            if name == "taskapi_http_requests" and labels["route"] not in NOT_TALLIED:
                total += count
        per_worker[path.stem] = total
    return per_worker


def multiprocess_folder(server: LiveServer) -> Path:
    """The private folder ``taskapi serve`` logged at start."""
    found = re.search(r"metrics: worker files in (\S+)", server.log())
    assert found, server.log()
    return Path(found.group(1))


@pytest.fixture
def route_map(tmp_path: Path) -> Flask:
    """An app, only for its URL map (route templates)."""
    url = f"sqlite:///{tmp_path / 'routes.db'}"
    return create_app(Settings(database_url=url, secret_key=TEST_SECRET, data_dir=tmp_path))


@pytest.mark.slow
def test_two_workers_counted_and_exposed(tmp_path: Path, route_map: Flask) -> None:
    """After a known sequence, both exposures show every worker's counts, by route template."""
    metrics_port = free_port()
    env = {
        **server_env(tmp_path),
        "TASKAPI_WORKERS": "2",
        "TASKAPI_METRICS_TOKEN": TOKEN,
        "TASKAPI_METRICS_PORT": str(metrics_port),
        "TASKAPI_REFRESH_GRACE_SECONDS": "0",
        "TASKAPI_RATELIMIT_REGISTER": "3/hour",  # per worker in memory: 7 registers hit it
    }
    server = launch_server(env, tmp_path)
    try:
        from tests.conftest import wait_healthy

        wait_healthy(server)
        _exercise_and_check(server, route_map, metrics_port)
    finally:
        server.stop()
    folder = multiprocess_folder(server)
    assert not folder.exists(), "the private metrics folder is removed at exit"
    assert "Traceback" not in server.log(), server.log()


def _exercise_and_check(server: LiveServer, route_map: Flask, metrics_port: int) -> None:
    """The request sequence and every assertion on the metrics it leaves."""
    tally = Tally(server, route_map)
    email = unique_email()
    body = {"email": email, "password": PASSWORD}
    assert tally.send("POST", f"{AUTH}/register", json=body).status_code == 201
    for _ in range(6):
        extra = {"email": unique_email(), "password": PASSWORD}
        assert tally.send("POST", f"{AUTH}/register", json=extra).status_code in (201, 429)
    wrong = {"email": email, "password": "not the password at all"}
    assert tally.send("POST", f"{AUTH}/login", json=wrong).status_code == 401
    logins = []
    for _ in range(5):
        answer = tally.send("POST", f"{AUTH}/login", json=body)
        assert answer.status_code == 200, answer.text
        logins.append(answer.json())
    first = logins[0]
    task_ids = []
    for number in range(5):
        made = tally.send(
            "POST", "/api/v1/tasks", first["access_token"], json={"title": f"t{number}"}
        )
        assert made.status_code == 201, made.text
        task_ids.append(made.json()["id"])
    for task_id in task_ids:
        assert (
            tally.send("GET", f"/api/v1/tasks/{task_id}", first["access_token"]).status_code == 200
        )
    # Reuse: the first refresh rotates, presenting the same token again revokes the session.
    refresh = first["refresh_token"]
    assert tally.send("POST", f"{AUTH}/refresh", refresh).status_code == 200
    assert tally.send("POST", f"{AUTH}/refresh", refresh).status_code == 401
    assert tally.send("POST", f"{AUTH}/logout", logins[1]["access_token"]).status_code == 204
    doomed = session_id(logins[4]["access_token"])
    gone = tally.send("DELETE", f"{AUTH}/sessions/{doomed}", logins[3]["access_token"])
    assert gone.status_code == 204
    assert tally.send("POST", f"{AUTH}/logout-all", logins[2]["access_token"]).status_code == 204
    tally.send("GET", f"/nowhere/{uuid.uuid4()}")
    # Unknown tasks (real route, random ids) until both workers have counted some requests.
    folder = multiprocess_folder(server)
    for _ in range(200):
        tally.send("GET", f"/api/v1/tasks/{uuid.uuid4()}", logins[0]["access_token"])
        if sum(1 for count in requests_per_worker(folder).values() if count) >= 2:
            break
    assert sum(1 for count in requests_per_worker(folder).values() if count) == 2

    # Not on the public port without the token: 404, as if absent.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = requests.get(f"{server.url}/metrics", headers={**CLOSE, **headers}, timeout=10)
        assert refused.status_code == 404
    public = requests.get(
        f"{server.url}/metrics", headers={**CLOSE, "Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert public.status_code == 200 and public.headers["Content-Type"].startswith("text/plain")
    private = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert private.status_code == 200

    assert tally.counts[(f"{AUTH}/register", "POST", "429")] >= 1
    for text in (public.text, private.text):
        found = samples(text)
        for (route, method, status), count in tally.counts.items():
            labels = {"route": route, "method": method, "status": status}
            assert value(found, "taskapi_http_requests_total", **labels) == count, labels
        posts = value(found, "taskapi_http_request_duration_seconds_count",
                      route="/api/v1/tasks", method="POST")  # fmt: skip
        assert posts == 5
        limited = tally.counts[(f"{AUTH}/register", "POST", "429")]
        assert value(found, "taskapi_http_rate_limited_total", route=f"{AUTH}/register") == limited
        assert value(found, "taskapi_logins_total") == 5
        assert value(found, "taskapi_login_failures_total") == 1
        assert value(found, "taskapi_refresh_token_reuse_total") == 1
        for reason in ("logout", "logout_all", "session_delete", "refresh_reuse"):
            assert value(found, "taskapi_session_revocations_total", reason=reason) == 1, reason
        assert value(found, "taskapi_redis_fallback") == 0
        assert value(found, "taskapi_db_pool_size") > 0  # both workers' pools, summed
        for name in ("taskapi_mail_outbox_pending", "taskapi_mail_outbox_oldest_age_seconds"):
            assert (name, ()) in found, name  # sampled at scrape time (the sender keeps it 0)
        # Route templates only: no task id, session id or unknown path in any label.
        assert not UUID.search(text), UUID.findall(text)[:3]


def test_metrics_absent_on_the_public_port_by_default(app: Flask) -> None:
    """Without a token (and whatever the header), /metrics is a plain 404."""
    client = app.test_client()
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 404
        assert answer.json["code"] == "not_found"


def test_metrics_token_in_process(make_app: Callable[..., Flask]) -> None:
    """With a token: 404 to anyone without it (a wrong one, another scheme), text with it."""
    client = make_app(metrics_token=TOKEN, ratelimit_enabled=True).test_client()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        assert client.get("/metrics", headers=headers).status_code == 404
    client.get("/api/v1/tasks")  # a 401, counted
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert "RateLimit-Limit" not in answer.headers  # scrapes spend no budget
    found = samples(answer.get_data(as_text=True))
    labels = {"route": "/api/v1/tasks", "method": "GET", "status": "401"}
    assert value(found, "taskapi_http_requests_total", **labels) >= 1


@pytest.mark.slow
def test_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A metrics port already taken stops ``taskapi serve`` with one line and exit code 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**server_env(tmp_path), "TASKAPI_METRICS_PORT": str(port)}
        server = launch_server(env, tmp_path)
        try:
            assert server.process.wait(30) == 2
        finally:
            server.stop()
    log = server.log()
    assert "TASKAPI_METRICS_PORT" in log and "Traceback" not in log, log


@pytest.mark.slow
def test_gunicorn_run_directly_with_the_config_file_counts_every_worker(tmp_path: Path) -> None:
    """Operators who run gunicorn with config/gunicorn.conf.py get the same metrics as
    `taskapi serve`: a multiprocess folder set before the fork, every worker counted."""
    port = free_port()
    env = {**server_env(tmp_path), "TASKAPI_METRICS_TOKEN": TOKEN, "TASKAPI_WORKERS": "2"}
    config = Path(__file__).resolve().parents[1] / "config" / "gunicorn.conf.py"
    log_path = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), "-b", f"127.0.0.1:{port}",
               "taskapi:create_app()"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=tmp_path, stdout=log, stderr=log
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_healthy(server)
        tasks, sent = f"{server.url}/api/v1/tasks", 0
        folder = multiprocess_folder(server)
        # Until both workers have counted some: a scrape must add up every worker's.
        while sum(1 for count in requests_per_worker(folder).values() if count) < 2:
            assert requests.get(tasks, headers=CLOSE, timeout=10).status_code == 401
            sent += 1
            assert sent < 500, server.log()
        scraped = requests.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert scraped.status_code == 200, server.log()
        found = samples(scraped.text)
        labels = {"route": "/api/v1/tasks", "method": "GET", "status": "401"}
        assert value(found, "taskapi_http_requests_total", **labels) == sent
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
