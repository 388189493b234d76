"""Files at rest are private: data folder 0700; secret, SQLite database and its WAL 0600.

Commands run with umask 0 (or one taking the owner's own bits), so nothing relies on the
operator's umask.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, TEST_SECRET, LiveServer
from tests.support import run_cli


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return path.stat().st_mode & 0o777


def upgrade(env: dict[str, str], cwd: Path, umask: int = 0) -> None:
    """Run ``taskapi db upgrade`` under ``umask`` with only the given TASKAPI_* variables."""
    result = run_cli("db", "upgrade", env=env, cwd=cwd, umask=umask)
    assert result.returncode == 0, result.stderr


@contextmanager
def permissive_umask() -> Iterator[None]:
    """Umask 0 in this process (and so in the processes it starts) for a moment."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_data_folder_is_created_0700(tmp_path: Path) -> None:
    """The default data folder is private to its owner."""
    upgrade({"TASKAPI_DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert mode(tmp_path / "data") == 0o700


def test_nested_data_folder_is_created_0700(tmp_path: Path) -> None:
    """A data folder whose parents are missing too is still private."""
    upgrade({"TASKAPI_DATA_DIR": str(tmp_path / "a" / "b" / "data")}, tmp_path)
    assert mode(tmp_path / "a" / "b" / "data") == 0o700


def test_secret_is_created_0600(tmp_path: Path) -> None:
    """The development secret is readable by its owner only."""
    upgrade({"TASKAPI_DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert mode(tmp_path / "data" / "secret_key") == 0o600


def test_default_database_is_created_0600(tmp_path: Path) -> None:
    """The SQLite file in the data folder is created 0600, not 0644 less the umask."""
    upgrade({"TASKAPI_DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert mode(tmp_path / "data" / "taskapi.db") == 0o600


def test_explicit_sqlite_database_is_created_0600(tmp_path: Path) -> None:
    """A ``sqlite:///path`` database URL gets the same private file."""
    path = tmp_path / "elsewhere.db"
    upgrade({"TASKAPI_DATABASE_URL": f"sqlite:///{path}", "TASKAPI_SECRET_KEY": TEST_SECRET},
            tmp_path)  # fmt: skip
    assert mode(path) == 0o600


def test_relative_sqlite_database_is_created_0600(tmp_path: Path) -> None:
    """A relative path is taken from the working directory, as SQLite does."""
    upgrade({"TASKAPI_DATABASE_URL": "sqlite:///relative.db", "TASKAPI_SECRET_KEY": TEST_SECRET},
            tmp_path)  # fmt: skip
    assert mode(tmp_path / "relative.db") == 0o600


@pytest.mark.parametrize(
    ("name", "expected"), [(".", 0o700), ("secret_key", 0o600), ("taskapi.db", 0o600)]
)
def test_umask_without_owner_bits_still_gives_private_files(
    tmp_path: Path, name: str, expected: int
) -> None:
    """Umask 0277 would leave the folder 0500 and the files read-only: modes are set exactly."""
    upgrade({"TASKAPI_DATA_DIR": str(tmp_path / "data")}, tmp_path, umask=0o277)
    assert mode(tmp_path / "data" / name) == expected


def test_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    """A data folder the operator created is not changed."""
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o750)
    upgrade({"TASKAPI_DATA_DIR": str(folder)}, tmp_path)
    assert mode(folder) == 0o750


def test_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """A database file that already exists is not changed."""
    path = tmp_path / "existing.db"
    path.touch()
    path.chmod(0o640)
    upgrade({"TASKAPI_DATABASE_URL": f"sqlite:///{path}", "TASKAPI_SECRET_KEY": TEST_SECRET},
            tmp_path)  # fmt: skip
    assert mode(path) == 0o640


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_wal_files_are_0600_after_a_write(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path, suffix: str
) -> None:
    """A server started on a fresh folder writes its WAL and shared memory 0600."""
    with permissive_umask():
        server = live_server_factory()
    body = {"email": f"files-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
    registered = requests.post(f"{server.url}/api/v1/auth/register", json=body, timeout=10)
    assert registered.status_code == 201, registered.text
    assert mode(tmp_path / "instance" / f"taskapi.db{suffix}") == 0o600
