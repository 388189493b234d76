"""The data folder is absolute: the same folder and database from any working directory.

Commands run as an operator runs them (the installed ``taskapi`` script, not ``python -m``),
with HOME and XDG_DATA_HOME pointed at a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskapi.settings import PACKAGE_DIR, Settings, SettingsError, load_settings

TASKAPI = str(Path(sys.executable).with_name("taskapi"))


def taskapi(*args: str, cwd: Path, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``taskapi`` in ``cwd`` with only ``extra`` TASKAPI_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "XDG_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), **extra)
    return subprocess.run(
        [TASKAPI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def package_files() -> set[Path]:
    """Every file under the package folder except Python's own bytecode caches."""
    return {p for p in PACKAGE_DIR.rglob("*") if "__pycache__" not in p.parts}


def test_three_working_directories_find_one_folder_and_database(tmp_path: Path) -> None:
    """``db upgrade`` in one directory, ``info`` in two others (one of them the package folder,
    as in ``cd taskapi && uv run taskapi serve``): one absolute folder and database, already
    migrated, and nothing written under the package."""
    home = tmp_path / "home"
    first, second = tmp_path / "one", tmp_path / "two" / "deeper"
    for folder in (home, first, second):
        folder.mkdir(parents=True)
    before = package_files()
    upgraded = taskapi("db", "upgrade", cwd=first, home=home)
    assert upgraded.returncode == 0, upgraded.stderr
    expected = home / ".local" / "share" / "taskapi"
    database = f"sqlite:///{expected / 'taskapi.db'}"
    assert upgraded.stdout.startswith(f"{database}: applied ")
    infos = [taskapi("info", cwd=cwd, home=home) for cwd in (first, second, PACKAGE_DIR)]
    for info in infos:
        assert info.returncode == 0, info.stderr
        lines = info.stdout.splitlines()
        assert lines[0] == f"data folder: {expected}"
        assert lines[1] == f"database: {database}"
        assert "up to date" in lines[2], lines[2]
    for cwd in (first, second, PACKAGE_DIR):
        only = taskapi("info", "--data-dir", cwd=cwd, home=home)
        assert only.stdout == f"{expected}\n"
    assert (expected / "taskapi.db").is_file()
    assert not (first / "instance").exists() and not (second / "instance").exists()
    assert package_files() == before


def test_a_relative_data_dir_is_resolved_once_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TASKAPI_DATA_DIR=data is stored absolute, so a later chdir does not move it."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("data"), secret_key="x" * 40)
    assert settings.data_dir == tmp_path / "data"
    monkeypatch.chdir("/")
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'data' / 'taskapi.db'}"


def test_data_dir_overrides_still_work(tmp_path: Path) -> None:
    """Settings(data_dir=...) is what tests and embedders use; it is kept as given."""
    assert Settings(data_dir=tmp_path).data_dir == tmp_path


def test_the_default_follows_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no TASKAPI_DATA_DIR the folder is $XDG_DATA_HOME/taskapi, whatever the cwd."""
    monkeypatch.delenv("TASKAPI_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "xdg" / "taskapi"


def test_a_data_dir_inside_the_package_is_refused() -> None:
    """Nothing is ever written under the installed package."""
    with pytest.raises(SettingsError, match="TASKAPI_DATA_DIR"):
        load_settings(data_dir=PACKAGE_DIR / "instance")
    assert not (PACKAGE_DIR / "instance").exists()


# --- production refuses SQLite ---------------------------------------------------------------

PRODUCTION = {"env": "production", "secret_key": "x" * 40, "allowed_hosts": "api.example.com"}


@pytest.mark.parametrize("url", ["", "sqlite:////var/lib/taskapi/taskapi.db"])
def test_production_refuses_sqlite_without_the_flag(url: str, tmp_path: Path) -> None:
    """The default SQLite file or a sqlite:// URL stops production with one line."""
    with pytest.raises(ValidationError, match="TASKAPI_ALLOW_SQLITE_IN_PRODUCTION"):
        Settings(**PRODUCTION, data_dir=tmp_path, database_url=url)  # type: ignore[arg-type]
    allowed = Settings(
        **PRODUCTION, data_dir=tmp_path, database_url=url, allow_sqlite_in_production=True
    )  # type: ignore[arg-type]
    assert allowed.is_production and allowed.uses_sqlite


def test_production_accepts_postgresql(tmp_path: Path) -> None:
    """A PostgreSQL URL needs no flag."""
    url = "postgresql+psycopg://taskapi@db/taskapi"
    settings = Settings(**PRODUCTION, data_dir=tmp_path, database_url=url)  # type: ignore[arg-type]
    assert not settings.uses_sqlite


def test_production_sqlite_refusal_is_one_line_from_the_command(tmp_path: Path) -> None:
    """From the command line: exit 2 and one line naming both variables."""
    result = taskapi(
        "db", "upgrade", cwd=tmp_path, home=tmp_path, TASKAPI_ENV="production",
        TASKAPI_SECRET_KEY="x" * 40, TASKAPI_ALLOWED_HOSTS="api.example.com",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TASKAPI_ALLOW_SQLITE_IN_PRODUCTION" in lines[0], result.stderr
    assert "TASKAPI_DATABASE_URL" in lines[0]
