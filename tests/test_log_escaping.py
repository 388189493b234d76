"""The console log format cannot be forged: control characters from requests are escaped."""

from __future__ import annotations

import io
import logging
import sys
import unicodedata
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from taskapi.logs import CONSOLE_FORMAT, ConsoleFormatter

ACCESS = logging.getLogger("taskapi.access")


@pytest.fixture
def console_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """What the console formatter writes for the access log while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter(CONSOLE_FORMAT))
    ACCESS.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger=ACCESS.name):
            yield stream
    finally:
        ACCESS.removeHandler(handler)


def unsafe(text: str) -> list[str]:
    """The characters of ``text`` that could end a line or drive a terminal."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


@pytest.mark.parametrize(
    "encoded",
    ["%0Aforged", "%0D%0Aforged", "%1B%5B2J", "%1B%5D0;title%07", "%7F", "%C2%85", "%E2%80%A8",
     "%C2%9B31m", "%00"],
    ids=["lf", "crlf", "esc-clear", "osc-title", "del", "nel", "line-separator", "csi", "nul"],
)  # fmt: skip
def test_path_is_written_on_one_safe_line(
    client: FlaskClient, console_log: io.StringIO, encoded: str
) -> None:
    """Whatever the path decodes to, the access log gets one line without control characters."""
    client.get(f"/api/v1/nowhere/x{encoded}")
    assert unsafe(console_log.getvalue().removesuffix("\n")) == []


def test_newline_in_the_path_is_shown_escaped(
    client: FlaskClient, console_log: io.StringIO
) -> None:
    """The escaped form stays readable: a newline appears as \\n."""
    client.get("/api/v1/nowhere/x%0Aforged")
    assert "path=/api/v1/nowhere/x\\nforged " in console_log.getvalue()


def test_backslash_is_escaped_so_escapes_cannot_be_faked(
    client: FlaskClient, console_log: io.StringIO
) -> None:
    """A literal backslash-n in the path is told apart from an escaped newline."""
    client.get("/api/v1/nowhere/x%5Cnforged")
    assert "path=/api/v1/nowhere/x\\\\nforged " in console_log.getvalue()


def test_spaces_cannot_fake_a_field(client: FlaskClient, console_log: io.StringIO) -> None:
    """A path holding `` status=200`` is quoted as one value."""
    client.get("/api/v1/nowhere/x%20status=200")
    assert 'path="/api/v1/nowhere/x status=200" status=' in console_log.getvalue()


def test_forwarded_address_header_is_escaped(
    make_app: Callable[..., Flask], console_log: io.StringIO
) -> None:
    """An address taken from X-Forwarded-For (a header) cannot drive the terminal."""
    client = make_app(trusted_proxies=1).test_client()
    client.get("/api/health", headers={"X-Forwarded-For": "203.0.113.9\x1b[2J\x1b]0;pwned\x07"})
    assert "remote_addr=203.0.113.9\\x1b[2J\\x1b]0;pwned\\x07" in console_log.getvalue()


def test_traceback_lines_are_prefixed_and_escaped() -> None:
    """An exception message cannot start a line that looks like a record of its own."""
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO taskapi.access: GET / 200\x1b[0m")
    except ValueError:
        record = logging.LogRecord(
            "taskapi.errors", logging.ERROR, __file__, 1, "unhandled", None, sys.exc_info()
        )
    lines = ConsoleFormatter(CONSOLE_FORMAT).format(record).split("\n")
    assert [line for line in lines[1:] if not line.startswith("  | ") or unsafe(line)] == []
