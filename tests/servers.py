"""Helpers for tests that run several real ``taskapi serve`` processes (or a redis-server)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI, LiveServer, free_port, launch_server, server_env, wait_healthy


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment ``live_server_factory`` uses, plus ``extra``."""
    return {**server_env(workdir), **extra}


def start_together(envs: list[dict[str, str]], workdir: Path) -> list[LiveServer]:
    """Launch every server first, then wait for all; on any failure stop them all."""
    servers = [launch_server(env, workdir) for env in envs]
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
