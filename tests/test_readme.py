"""The README's curl walk-through, executed against a real ``taskapi serve`` process."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import IN_CI, LiveServer, unique_email

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough(name: str = "walkthrough") -> str:
    """The bash block between the ``name`` markers."""
    text = README.read_text()
    block = re.search(rf"<!-- {name}:start -->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"README lost its {name} block"
    return block.group(1)


@pytest.mark.slow
def test_readme_walkthrough_runs(
    live_server_factory: Callable[..., LiveServer], database_url: str
) -> None:
    """Every step succeeds, the delete answers 204 and the logged-out token gets 401."""
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is required in CI")
        pytest.skip("curl is not installed")
    server = live_server_factory({"TASKAPI_DATABASE_URL": database_url})
    script = "set -euo pipefail\n" + walkthrough()
    result = subprocess.run(
        ["bash", "-c", script],
        env={"API": server.url, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    codes = [line for line in result.stdout.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert codes == ["204", "204", "401", "401"]
    assert '"title":"Buy milk"' in result.stdout
    assert '"title":"Made by a script"' in result.stdout
    # The recurring task was completed and its next occurrence made: both are in the list.
    assert re.search(r"^[0-9a-f-]{36}$", result.stdout, re.M), result.stdout
    assert result.stdout.count('"title":"Water the roses"') == 2


@pytest.mark.slow
def test_readme_password_reset_runs(
    live_server_factory: Callable[..., LiveServer], database_url: str, tmp_path: Path
) -> None:
    """A new user's reset on their own machine: the file backend's mail gives the token, the
    confirmation is 204 and the new password logs in."""
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is required in CI")
        pytest.skip("curl is not installed")
    server = live_server_factory({"TASKAPI_DATABASE_URL": database_url})
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + walkthrough("reset-walkthrough")],
        env={
            "API": server.url,
            "EMAIL": unique_email(),
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            # The server's data folder, as an operator who set it has it in the environment
            # (without it the block asks `uv run taskapi info --data-dir`).
            "TASKAPI_DATA_DIR": str(tmp_path / "instance"),
        },
        cwd=tmp_path,  # the server's working directory
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    codes = [line for line in result.stdout.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert codes == ["204", "200"]
