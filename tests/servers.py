"""Helpers for tests that run several real ``taskapi serve`` processes (or a redis-server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import IN_CI, TEST_SECRET, LiveServer, free_port


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment ``live_server_factory`` uses, plus ``extra``."""
    return {
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_BCRYPT_ROUNDS": "4",
        "TASKAPI_WORKERS": "1",
        "TASKAPI_THREADS": "4",
        "TASKAPI_DATA_DIR": str(workdir / "instance"),
        **extra,
    }


def launch(env: dict[str, str], workdir: Path) -> LiveServer:
    """Start ``taskapi serve`` on a free port without waiting for it."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [sys.executable, "-m", "taskapi.cli", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=workdir, stdout=log, stderr=log
        )
    return LiveServer(f"http://127.0.0.1:{port}", process, log_path)


def wait_healthy(server: LiveServer, timeout: float = 30) -> None:
    """Wait until /api/health answers 200; raise with the log if the server dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/api/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not start:\n{server.log()}")


def start_together(envs: list[dict[str, str]], workdir: Path) -> list[LiveServer]:
    """Launch every server first, then wait for all; on any failure stop them all."""
    servers = [launch(env, workdir) for env in envs]
    try:
        for server in servers:
            wait_healthy(server)
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: list[LiveServer]) -> None:
    """SIGTERM every server, then wait for each."""
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        server.stop()


def need_binary(name: str) -> str:
    """The path of ``name``; skip without it, or fail in CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} must be on PATH in CI")
        pytest.skip(f"{name} is not on PATH")
    return path


class RedisProcess:
    """A throwaway redis-server on a fixed port, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need_binary("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0 of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A redis-py client of this server (close it after use)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self, timeout: float = 10) -> None:
        """Start the server and wait until it answers PING."""
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("redis-server exited early")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
