"""The typed-client check: the OpenAPI document makes a good TypeScript client, and lints.

The served document is written to ``clients/build/openapi.json``; openapi-typescript turns it
into ``clients/build/schema.d.ts``; ``tsc --noEmit --strict`` checks ``clients/src/client.ts``,
which calls every operation with openapi-fetch the way a person would write it; and
``redocly lint`` checks the document with the recommended rules (``clients/redocly.yaml``).
Zero errors and zero warnings from both. The Node tools are pinned in ``clients/package.json``
and its lock file; ``npm ci`` runs only when ``node_modules`` is missing or older than the lock
file. Without node or npm the test is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskapi import create_app
from taskapi.settings import Settings
from tests.conftest import TEST_SECRET
from tests.servers import need_binary
from tests.support import engine_of

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
BUILD = CLIENTS / "build"
BIN = CLIENTS / "node_modules" / ".bin"
TOOLS = ("openapi-typescript", "openapi-fetch", "typescript", "@redocly/cli")
DOC_URL = "/api/v1/openapi.json"
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
# Quiet, reproducible Node tools: no telemetry, no update notices, no colours in the output.
NODE_ENV = {
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
    "NPM_CONFIG_UPDATE_NOTIFIER": "false",
    "NPM_CONFIG_FUND": "false",
    "NPM_CONFIG_AUDIT": "false",
}


def run(*command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command in ``clients/``, capturing its output."""
    return subprocess.run(
        [str(part) for part in command], cwd=CLIENTS, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **NODE_ENV}, check=False,
    )  # fmt: skip


def output(result: subprocess.CompletedProcess[str]) -> str:
    """What a command printed, for a failure message."""
    return f"$ {' '.join(map(str, result.args))}\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def clients_dir() -> Iterator[Path]:
    """``clients/`` with its pinned tools installed, held under a lock: concurrent test runs
    share the one ``node_modules`` and ``build`` directory."""
    need_binary("node")
    npm = need_binary("npm")
    with (CLIENTS / ".check.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = CLIENTS / "node_modules" / ".package-lock.json"  # written by npm ci
        lockfile = CLIENTS / "package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lockfile.stat().st_mtime:
            result = run(npm, "ci", "--no-audit", "--no-fund", timeout=600)
            assert result.returncode == 0, output(result)
        yield CLIENTS


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The document as the app serves it (the app never touches its database for it)."""
    folder = tmp_path_factory.mktemp("typed-client")
    settings = Settings(database_url=f"sqlite:///{folder / 'unused.db'}", secret_key=TEST_SECRET,
                        data_dir=folder, ratelimit_enabled=False)  # fmt: skip
    app = create_app(settings)
    try:
        answer = app.test_client().get(DOC_URL)
        assert answer.status_code == 200 and isinstance(answer.json, dict), answer.get_data()
        yield answer.json
    finally:
        engine_of(app).dispose()


def test_the_tools_are_pinned() -> None:
    """Exact versions in package.json, and the lock file agrees."""
    manifest = json.loads((CLIENTS / "package.json").read_text())
    wanted = {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}
    assert set(TOOLS) <= set(wanted), wanted
    lock = json.loads((CLIENTS / "package-lock.json").read_text())
    for name in TOOLS:
        assert re.fullmatch(r"\d+\.\d+\.\d+", wanted[name]), (name, wanted[name])
        assert lock["packages"][f"node_modules/{name}"]["version"] == wanted[name], name


def test_the_client_calls_every_operation(document: dict[str, Any]) -> None:
    """``client.ts`` calls each operation of the document (and nothing else)."""
    source = (CLIENTS / "src" / "client.ts").read_text()
    calls = re.findall(r'\.(GET|PUT|POST|PATCH|DELETE)\(\s*"([^"]+)"', source)
    called = {(method.lower(), path) for method, path in calls}
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item if method in HTTP_METHODS}  # fmt: skip
    assert documented - called == set(), "operations the client never calls"
    assert called - documented == set(), "calls of operations the document lacks"


def test_generated_types_check_and_the_document_lints(
    clients_dir: Path, document: dict[str, Any]
) -> None:
    """openapi-typescript, then ``tsc --noEmit --strict``: zero errors; redocly lint with the
    recommended rules: zero errors and zero warnings."""
    started = time.monotonic()
    BUILD.mkdir(exist_ok=True)
    (BUILD / "openapi.json").write_text(json.dumps(document, indent=1) + "\n")
    lint = subprocess.Popen(
        [str(BIN / "redocly"), "lint", "build/openapi.json", "--config", "redocly.yaml",
         "--format", "json"],
        cwd=clients_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **NODE_ENV},
    )  # fmt: skip
    try:
        generated = run(BIN / "openapi-typescript", "build/openapi.json", "-o", "build/schema.d.ts")
        assert generated.returncode == 0, output(generated)
        checked = run(BIN / "tsc", "--noEmit", "--strict", "-p", "tsconfig.json")
        assert checked.returncode == 0 and not checked.stdout.strip(), output(checked)
        stdout, stderr = lint.communicate(timeout=120)
    finally:
        if lint.poll() is None:
            lint.kill()
            lint.communicate()
    assert lint.returncode in (0, 1), stderr
    report = json.loads(stdout)
    problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at "
                f"{[loc.get('pointer') for loc in p.get('location', [])]}"
                for p in report["problems"]]  # fmt: skip
    assert report["totals"]["errors"] == 0 and report["totals"]["warnings"] == 0, "\n".join(
        problems
    )
    assert lint.returncode == 0, stderr
    print(f"typed-client check: {time.monotonic() - started:.1f} s")
