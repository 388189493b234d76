"""The README's curl walk-through, executed against a real ``taskapi serve`` process."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import IN_CI, LiveServer

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough() -> str:
    """The bash block between the walkthrough markers."""
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README lost its walkthrough block"
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
    assert codes == ["204", "401"]
    assert '"title":"Buy milk"' in result.stdout
