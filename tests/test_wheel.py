"""The wheel holds the package and its metadata only: no data folder, database, secret, mail."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
# What must never ship: run-time state, secrets, mail, tools' folders, caches.
FORBIDDEN = re.compile(
    r"(^|/)(instance|node_modules|__pycache__|\.pytest_cache|\.mypy_cache|\.venv|mail|run)(/|$)"
    r"|\.(db|db-wal|db-shm|sqlite3?|eml|pyc|log|env|pem|key)$"
    r"|(^|/)(secret_key|lock)$"
)


@pytest.mark.slow
def test_the_wheel_contains_only_package_files(tmp_path: Path) -> None:
    """``uv build --wheel`` into a temporary folder; every entry is under ``taskapi/`` or the
    dist-info, and none is state a running taskapi writes."""
    uv = shutil.which("uv")
    if uv is None:
        if IN_CI:
            pytest.fail("uv must be on PATH in CI")
        pytest.skip("uv is not on PATH")
    built = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("taskapi-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = re.compile(r"^taskapi-[^/]+\.dist-info/")
    outside = [n for n in names if not (n.startswith("taskapi/") or dist_info.match(n))]
    assert outside == []
    assert [n for n in names if FORBIDDEN.search(n)] == []
    assert "taskapi/cli.py" in names and "taskapi/migrations/env.py" in names
    assert any(n.startswith("taskapi/migrations/versions/") for n in names)
