"""Mail that is never lost: the outbox sender, its backends, its commands and its report.

Messages are queued with ``taskapi.services.outbox.enqueue`` (as services do) and delivered
to a real SMTP server (``tests.mailbox``), on SQLite and PostgreSQL. Each backend gets a
database of its own for this module, so the counts below are exact. Time is driven with
``send_pending(now=...)`` instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, delete, select, update

from taskapi import mail, migrate
from taskapi.db import make_engine, make_session_factory, reads_in_autocommit, utcnow, write
from taskapi.models import AccountToken, OutboxMessage, User
from taskapi.services.maintenance import prune_all
from taskapi.services.outbox import Message, enqueue
from taskapi.settings import Settings
from tests.conftest import (
    TEST_SECRET,
    LiveServer,
    fresh_postgres_database,
    unique_email,
)
from tests.mailbox import (
    SmtpSink,
    deliver,
    mail_settings,
    self_signed_certificate,
    smtp_sink_fixture,  # noqa: F401 (the smtp_sink fixture)
)
from tests.servers import base_env, start_together, stop_all
from tests.support import run_cli

LINK = "http://localhost:5173/reset-password?token=abc123"
DOMAIN = "localhost"  # of the default TASKAPI_MAIL_FROM, taskapi <no-reply@localhost>


# --- a database of this module's own per backend -----------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database used only by this module (overrides conftest's shared one)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('mail') / 'mail.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    with fresh_postgres_database("taskapi_mail") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def outbox(database_url: str) -> Iterator[Engine]:
    """An engine on the module's database; the outbox is emptied after the test."""
    engine = make_engine(database_url)
    yield engine
    with engine.begin() as connection:
        connection.execute(delete(OutboxMessage))
    engine.dispose()


def queue(engine: Engine, recipient: str, *, now: datetime | None = None, **fields: str) -> None:
    """Queue one message the way services do: ``enqueue`` inside a unit of work."""
    message = Message(
        kind=fields.get("kind", "password_reset"),
        recipient=recipient,
        subject=fields.get("subject", "Reset your taskapi password"),
        text=fields.get("text", f"Someone asked to reset your password.\n\n{LINK}\n"),
        html=fields.get("html", f'<p>Someone asked to reset your password.</p><a href="{LINK}">'),
    )
    with make_session_factory(reads_in_autocommit(engine))() as db, write(db):
        enqueue(db, message, now=now or utcnow())


def queue_many(engine: Engine, recipients: list[str], *, now: datetime) -> None:
    """Queue one message per recipient in a single transaction."""
    with make_session_factory(reads_in_autocommit(engine))() as db, write(db):
        for recipient in recipients:
            text = f"Hello {recipient}\n{LINK}\n"
            message = Message("notice", recipient, "A notice", text, f"<p>{recipient}</p>")
            enqueue(db, message, now=now)


def rows(engine: Engine) -> dict[str, Any]:
    """Every outbox row, by recipient."""
    with engine.connect() as connection:
        found = connection.execute(select(OutboxMessage.__table__)).all()
    return {row.recipient: row for row in found}


def smtp_app(make_app: Callable[..., Flask], sink: SmtpSink, **overrides: Any) -> Flask:
    """An app whose mail goes to ``sink``."""
    return make_app(**{**mail_settings(sink), **overrides})


def message_ids(messages: list[EmailMessage]) -> list[str]:
    """The Message-ID of each message."""
    return [str(m["Message-ID"]) for m in messages]


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies of a message."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None, message
    return str(text.get_content()), str(html.get_content())  # type: ignore[attr-defined]


# --- delivery --------------------------------------------------------------------------------


def test_a_queued_message_arrives_once_with_both_parts(
    make_app: Callable[..., Flask], smtp_sink: SmtpSink, outbox: Engine
) -> None:
    """Through SMTP: From, To, Subject, Date, a Message-ID per row, text and HTML; then the
    row is marked sent with its bodies blanked, and a second round sends nothing."""
    app = smtp_app(make_app, smtp_sink)
    alice = unique_email("alice")
    queue(outbox, alice)
    assert deliver(app) == 1
    (received,) = smtp_sink.wait_for(1)
    assert smtp_sink.recipients == [[alice]]
    assert received["From"] == "taskapi <no-reply@localhost>"
    assert received["To"] == alice
    assert received["Subject"] == "Reset your taskapi password"
    assert received["Date"] and received["Auto-Submitted"] == "auto-generated"
    assert received.get_content_type() == "multipart/alternative"
    text, html = parts(received)
    assert LINK in text and f'href="{LINK}"' in html
    row = rows(outbox)[alice]
    assert received["Message-ID"] == f"<{row.id}@{DOMAIN}>"
    assert row.sent_at is not None and row.attempts == 1 and row.last_error is None
    assert row.body_text == "" and row.body_html == "", "single-use links must not stay"
    assert deliver(app) == 0
    assert len(smtp_sink.messages) == 1


def test_file_backend_writes_a_private_eml_and_logs_the_link(
    make_app: Callable[..., Flask],
    outbox: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default backend: <data_dir>/mail/<created>-<id>.eml, 0600 in a 0700 folder
    whatever the umask, and one log line with the recipient, subject and link."""
    app = make_app(data_dir=tmp_path)  # mail_backend="file", the default
    alice = unique_email("alice")
    queue(outbox, alice)
    previous = os.umask(0)
    try:
        with caplog.at_level(logging.INFO, logger="taskapi.mail"):
            assert deliver(app) == 1
    finally:
        os.umask(previous)
    folder = tmp_path / "mail"
    (path,) = folder.iterdir()
    row = rows(outbox)[alice]
    assert path.name.endswith(f"-{row.id}.eml") and path.name[:8].isdigit()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(written, EmailMessage)
    assert written["To"] == alice and written["Message-ID"] == f"<{row.id}@{DOMAIN}>"
    assert LINK in parts(written)[0]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "taskapi.mail"]
    assert alice in line and "Reset your taskapi password" in line and LINK in line
    assert str(path) in line
    assert deliver(app) == 0 and len(list(folder.iterdir())) == 1


def test_mail_server_outage_loses_nothing(
    make_app: Callable[..., Flask], smtp_sink: SmtpSink, outbox: Engine
) -> None:
    """SMTP down with mail queued: every round counts an attempt and backs off (about 30 s,
    1 min, 2 min, 4 min); nothing is retried early; when SMTP is back every message arrives
    exactly once."""
    app = smtp_app(make_app, smtp_sink)
    smtp_sink.stop()
    recipients = [unique_email(f"r{i}") for i in range(5)]
    start = utcnow()
    queue_many(outbox, recipients, now=start)
    now = start
    for attempt, nominal in enumerate((30, 60, 120, 240), start=1):
        assert deliver(app, now=now) == 0
        found = rows(outbox)
        for recipient in recipients:
            row = found[recipient]
            assert row.attempts == attempt and row.sent_at is None and row.failed_at is None
            assert "Connection refused" in row.last_error or "Errno" in row.last_error
            wait = (row.next_attempt_at - now).total_seconds()
            assert nominal * 0.8 - 0.01 <= wait <= nominal, (attempt, wait)
        earliest = min(found[r].next_attempt_at for r in recipients)
        assert deliver(app, now=earliest - timedelta(seconds=1)) == 0, "retried too early"
        assert all(rows(outbox)[r].attempts == attempt for r in recipients)
        now = max(found[r].next_attempt_at for r in recipients)
    smtp_sink.start()
    assert deliver(app, now=now) == 5
    assert deliver(app, now=now + timedelta(hours=2)) == 0
    received = smtp_sink.wait_for(5)
    assert len(received) == 5
    assert sorted(r for (r,) in smtp_sink.recipients) == sorted(recipients)
    found = rows(outbox)
    assert sorted(message_ids(received)) == sorted(f"<{found[r].id}@{DOMAIN}>" for r in recipients)
    assert all(found[r].attempts == 5 and found[r].sent_at is not None for r in recipients)


def test_backoff_doubles_up_to_an_hour() -> None:
    """30 s x 2^(attempts - 1), shortened by up to 20 % jitter, never over an hour."""
    for attempts, nominal in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600)]:
        waits = [mail.backoff(attempts).total_seconds() for _ in range(50)]
        assert all(nominal * 0.8 <= w <= nominal for w in waits), (attempts, waits)
        assert len(set(waits)) > 1, "no jitter"


def test_a_permanent_refusal_is_not_retried(
    make_app: Callable[..., Flask],
    smtp_sink: SmtpSink,
    outbox: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 5xx for the recipient marks the row failed, logs an error, and is never retried;
    the other message in the batch still goes."""
    app = smtp_app(make_app, smtp_sink)
    bounce, good = unique_email("bounce"), unique_email("good")
    smtp_sink.refuse[bounce] = "550 5.1.1 No such user here"
    now = utcnow()
    queue(outbox, bounce, now=now)
    queue(outbox, good, now=now + timedelta(microseconds=1))
    with caplog.at_level(logging.INFO, logger="taskapi.mail"):
        assert deliver(app, now=now + timedelta(seconds=1)) == 1
    row = rows(outbox)[bounce]
    assert row.failed_at is not None and row.sent_at is None and row.attempts == 1
    assert "550" in row.last_error and "No such user" in row.last_error
    assert row.body_text == "" and row.body_html == ""
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and bounce in errors[0].getMessage()
    del smtp_sink.refuse[bounce]
    assert deliver(app, now=now + timedelta(days=1)) == 0
    assert smtp_sink.recipients == [[good]]


def test_a_temporary_refusal_is_retried(
    make_app: Callable[..., Flask], smtp_sink: SmtpSink, outbox: Engine
) -> None:
    """A 4xx (greylisting, a full mailbox) is a temporary failure: retried until it goes."""
    app = smtp_app(make_app, smtp_sink)
    later = unique_email("later")
    smtp_sink.refuse[later] = "450 4.2.1 Try again later"
    now = utcnow()
    queue(outbox, later, now=now)
    assert deliver(app, now=now) == 0
    row = rows(outbox)[later]
    assert row.failed_at is None and row.attempts == 1 and "450" in row.last_error
    assert 24 <= (row.next_attempt_at - now).total_seconds() <= 30
    del smtp_sink.refuse[later]
    assert deliver(app, now=row.next_attempt_at) == 1
    assert smtp_sink.recipients == [[later]]


# aiosmtpd warns about itself: login_data on every login, and AUTH without STARTTLS (which
# is what implicit TLS looks like to it).
@pytest.mark.filterwarnings("ignore:Session.login_data:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_and_login(
    tls: str,
    make_app: Callable[..., Flask],
    outbox: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STARTTLS or implicit TLS with the server's certificate verified, then AUTH: a wrong
    password is a temporary failure (retried, 535 kept); the right one delivers."""
    certificate = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    sink = SmtpSink(tls=tls, certificate=certificate, credentials=("mailer", "s3cret pass"))
    sink.start()
    try:
        base = {
            **mail_settings(sink),
            "smtp_starttls": tls == "starttls",
            "smtp_ssl": tls == "ssl",
            "smtp_username": "mailer",
        }
        alice = unique_email("alice")
        now = utcnow()
        queue(outbox, alice, now=now)
        assert deliver(make_app(**base, smtp_password="wrong"), now=now) == 0
        row = rows(outbox)[alice]
        assert row.attempts == 1 and row.failed_at is None and "535" in row.last_error
        assert deliver(make_app(**base, smtp_password="s3cret pass"), now=row.next_attempt_at) == 1
        assert [m["To"] for m in sink.wait_for(1)] == [alice]
        assert sink.logins == ["mailer"]
    finally:
        sink.stop()


class Crash(BaseException):
    """The process dying at a chosen point (not an error the sender could catch)."""


def test_a_crash_between_send_and_mark_resends_with_the_same_message_id(
    make_app: Callable[..., Flask],
    smtp_sink: SmtpSink,
    outbox: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At least once: sent but not marked, the row stays claimed; after the lease (and not
    before) it is sent again with the same Message-ID, so the copies can be folded."""
    app = smtp_app(make_app, smtp_sink)
    alice = unique_email("alice")
    now = utcnow()
    queue(outbox, alice, now=now)

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(mail, "_mark_sent", crash)
        with pytest.raises(Crash):
            deliver(app, now=now)
    assert len(smtp_sink.wait_for(1)) == 1
    lease = mail.lease_for(app.extensions["taskapi"].settings)
    assert deliver(app, now=now + lease - timedelta(seconds=1)) == 0, "claimed until the lease ends"
    assert deliver(app, now=now + lease) == 1
    first, second = smtp_sink.wait_for(2)
    assert first["Message-ID"] == second["Message-ID"] == f"<{rows(outbox)[alice].id}@{DOMAIN}>"
    assert first["Date"] == second["Date"]


def test_stopping_gives_claimed_messages_back(
    make_app: Callable[..., Flask],
    smtp_sink: SmtpSink,
    outbox: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sender told to stop finishes the message in hand and hands the rest of its claim
    back, due at once (not after the lease), without counting an attempt."""
    app = smtp_app(make_app, smtp_sink)
    recipients = [unique_email(f"s{i}") for i in range(4)]
    now = utcnow()
    queue_many(outbox, recipients, now=now)
    stop = threading.Event()
    original = mail.SmtpTransport.send

    def send_then_stop(self: mail.SmtpTransport, message: EmailMessage, item: Any) -> None:
        original(self, message, item)
        stop.set()

    monkeypatch.setattr(mail.SmtpTransport, "send", send_then_stop)
    assert deliver(app, now=now, stop=stop) == 1
    waiting = [row for row in rows(outbox).values() if row.sent_at is None]
    assert len(waiting) == 3
    assert all(row.attempts == 0 and row.next_attempt_at == now for row in waiting)
    monkeypatch.undo()
    assert deliver(app, now=now) == 3
    assert len(smtp_sink.wait_for(4)) == 4


def test_two_senders_never_send_one_message_twice(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink, outbox: Engine, database_url: str
) -> None:
    """Four senders (each with its own engine, as separate processes would have) race over
    200 messages in small batches: each message arrives exactly once."""
    settings = make_settings(**mail_settings(smtp_sink))
    recipients = [unique_email(f"race{i}") for i in range(200)]
    now = utcnow()
    queue_many(outbox, recipients, now=now)
    engines = [make_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    sent: list[int] = []
    failures: list[BaseException] = []

    def sender(engine: Engine) -> None:
        try:
            barrier.wait()
            sent.append(mail.send_pending(engine, settings, now=now, batch=5))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=sender, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()
    assert not failures, failures
    assert sum(sent) == 200, sent
    assert len(smtp_sink.wait_for(200)) == 200
    time.sleep(0.2)  # a duplicate would arrive now
    ids = message_ids(smtp_sink.messages)
    assert len(ids) == 200 and len(set(ids)) == 200
    assert all(row.sent_at is not None for row in rows(outbox).values())


# --- the background sender ---------------------------------------------------------------------


def test_background_sender_delivers_and_stops(
    make_app: Callable[..., Flask], smtp_sink: SmtpSink, outbox: Engine
) -> None:
    """The loop ``taskapi serve`` runs in each worker: it delivers what is queued while it
    runs, starts once per process, and stops when asked. ``create_app`` starts none."""
    app = smtp_app(make_app, smtp_sink, mail_sender=True, mail_poll_seconds=0.05)
    assert not [t for t in threading.enumerate() if t.name == "taskapi-mail-sender"]
    state = app.extensions["taskapi"]
    sender = mail.start_background_sender(state.session_factory, state.settings)
    assert sender is not None
    try:
        assert mail.start_background_sender(state.session_factory, state.settings) is None
        alice = unique_email("alice")
        queue(outbox, alice)
        smtp_sink.wait_for(1, to=alice)
    finally:
        mail.stop_background_sender(timeout=5)
    assert sender.thread is not None and not sender.thread.is_alive()
    assert sender.rounds >= 1


# --- readiness -------------------------------------------------------------------------------


def test_ready_reports_the_backlog(
    make_app: Callable[..., Flask], outbox: Engine, tmp_path: Path
) -> None:
    """/api/ready keeps its keys and adds checks.mail and outbox; a backlog older than five
    minutes is "delayed" but readiness stays 200; the OpenAPI document declares both."""
    app = make_app(data_dir=tmp_path)
    client = app.test_client()
    body = client.get("/api/ready").json
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    assert body["checks"]["mail"] == "ok"
    assert body["outbox"] == {"pending": 0, "oldest_age_seconds": None}
    queue(outbox, unique_email("old"), now=utcnow() - timedelta(minutes=10))
    queue(outbox, unique_email("new"))
    answer = client.get("/api/ready")
    assert answer.status_code == 200 and answer.json["status"] == "ok"
    assert answer.json["checks"]["mail"] == "delayed"
    assert answer.json["outbox"]["pending"] == 2
    assert 600 <= answer.json["outbox"]["oldest_age_seconds"] < 660
    assert deliver(app) == 2
    body = client.get("/api/ready").json
    assert body["checks"]["mail"] == "ok" and body["outbox"]["pending"] == 0
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    assert "mail" in schemas["Checks"]["required"]
    assert set(schemas["Outbox"]["required"]) == {"pending", "oldest_age_seconds"}
    assert "outbox" in schemas["Readiness"]["properties"]


# --- the commands ----------------------------------------------------------------------------


def cli_env(database_url: str, sink: SmtpSink, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The settings a command needs to send the module's outbox to ``sink``."""
    return {
        "TASKAPI_DATABASE_URL": database_url,
        "TASKAPI_SECRET_KEY": TEST_SECRET,
        "TASKAPI_DATA_DIR": str(tmp_path / "instance"),
        "TASKAPI_MAIL_BACKEND": "smtp",
        "TASKAPI_SMTP_HOST": "127.0.0.1",
        "TASKAPI_SMTP_PORT": str(sink.port),
        "TASKAPI_SMTP_STARTTLS": "false",
        **extra,
    }


def test_mail_send_pending_command(
    smtp_sink: SmtpSink, outbox: Engine, database_url: str, tmp_path: Path
) -> None:
    """``taskapi mail send-pending`` sends what is due once and says in one line what was
    sent, failed (to be retried), refused for good and is left; it exits 0."""
    env = cli_env(database_url, smtp_sink, tmp_path)
    good = [unique_email(f"c{i}") for i in range(2)]
    later, bounce = unique_email("later"), unique_email("bounce")
    smtp_sink.refuse[later] = "451 4.3.0 Try again later"
    smtp_sink.refuse[bounce] = "550 5.1.1 No such user"
    queue_many(outbox, [*good, later, bounce], now=utcnow())
    result = run_cli("mail", "send-pending", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sent: 2, failed: 1, refused: 1, left: 1\n"
    assert sorted(r for (r,) in smtp_sink.recipients) == sorted(good)
    assert "451" in result.stderr and "550" in result.stderr


def test_worker_command_sends_until_told_to_stop(
    smtp_sink: SmtpSink, outbox: Engine, database_url: str, is_postgres: bool, tmp_path: Path
) -> None:
    """``taskapi worker`` delivers mail queued while it runs, and exits 0 on SIGTERM (and on
    SIGINT, tried on the other backend)."""
    signum = signal.SIGINT if is_postgres else signal.SIGTERM
    env = cli_env(database_url, smtp_sink, tmp_path, TASKAPI_MAIL_POLL_SECONDS="0.1")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPI_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "taskapi.cli", "worker"],
        env={**clean, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        alice = unique_email("alice")
        queue(outbox, alice)
        smtp_sink.wait_for(1, timeout=15, to=alice)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "mail sender started" in err and "mail sender stopped" in err
    assert len(smtp_sink.messages) == 1


def test_prune_deletes_old_mail_and_spent_tokens(outbox: Engine) -> None:
    """``taskapi db prune``: mail sent or refused over 7 days ago goes, waiting mail stays
    however old; used or expired account tokens go, live ones stay."""
    now = utcnow()
    names = ["sent_old", "sent_recent", "refused_old", "waiting_old"]
    addresses = {name: unique_email(name) for name in names}
    queue_many(outbox, list(addresses.values()), now=now - timedelta(days=30))
    week = timedelta(days=7)
    marks = {
        "sent_old": {"sent_at": now - week - timedelta(minutes=1)},
        "sent_recent": {"sent_at": now - week + timedelta(minutes=5)},
        "refused_old": {"failed_at": now - week - timedelta(minutes=1)},
    }
    factory = make_session_factory(outbox)
    with factory() as db, write(db):
        for name, values in marks.items():
            db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.recipient == addresses[name])
                .values(**values)
            )
        user = User(email=unique_email("owner"), password_hash="x")
        db.add(user)
        db.flush()
        tokens = {
            "used": {"used_at": now - timedelta(minutes=1), "expires_at": now + week},
            "expired": {"expires_at": now - timedelta(seconds=1)},
            "live": {"expires_at": now + timedelta(minutes=30)},
        }
        for purpose, values in tokens.items():
            db.add(AccountToken(user_id=user.id, purpose=purpose[:20],
                                token_hash=uuid.uuid4().bytes * 2, **values))  # fmt: skip
    with factory() as db:
        counts = prune_all(db, now=now, tombstone_days=30)  # what ``taskapi db prune`` runs
    assert counts["outbox"] == 2 and counts["account_tokens"] == 2
    left = {row.recipient for row in rows(outbox).values()}
    assert left == {addresses["sent_recent"], addresses["waiting_old"]}
    with outbox.connect() as connection:
        purposes = connection.execute(select(AccountToken.purpose)).scalars().all()
        assert purposes == ["live"]
    with factory() as db, write(db):
        db.execute(delete(User).where(User.id == user.id))


# --- real servers ----------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_writes_queued_mail_as_eml(live_server_factory: Callable[..., LiveServer]) -> None:
    """``taskapi serve`` with no mail settings: a queued message becomes an .eml file under
    the data folder within seconds, and the server's log shows its link."""
    server = live_server_factory()
    data_dir = Path(server_data_dir(server))
    engine = make_engine(f"sqlite:///{data_dir / 'taskapi.db'}")
    try:
        alice = unique_email("alice")
        queue(engine, alice)
        folder = data_dir / "mail"
        deadline = time.monotonic() + 10
        while not (folder.exists() and list(folder.glob("*.eml"))):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        (path,) = folder.glob("*.eml")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        written = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert written["To"] == alice
        deadline = time.monotonic() + 5
        while LINK not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        ready = requests.get(f"{server.url}/api/ready", timeout=5).json()
        assert ready["checks"]["mail"] == "ok" and ready["outbox"]["pending"] == 0
        server.stop()
        assert server.process.returncode == 0 and "mail sender stopped" in server.log()
    finally:
        engine.dispose()


def server_data_dir(server: LiveServer) -> str:
    """The data folder ``live_server_factory`` gave this server (its log sits beside it)."""
    return str(server.log_path.parent / "instance")


@pytest.mark.slow
def test_two_instances_share_one_postgres_outbox(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """Two ``taskapi serve`` instances of two workers each (four senders) on one PostgreSQL
    outbox: 200 messages queued while they run each arrive exactly once."""
    with fresh_postgres_database("taskapi_mail_two") as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            env = base_env(
                tmp_path,
                TASKAPI_DATABASE_URL=url,
                TASKAPI_WORKERS="2",
                TASKAPI_MAIL_BACKEND="smtp",
                TASKAPI_SMTP_HOST="127.0.0.1",
                TASKAPI_SMTP_PORT=str(smtp_sink.port),
                TASKAPI_SMTP_STARTTLS="false",
                TASKAPI_MAIL_POLL_SECONDS="0.2",
            )
            servers = start_together([env, env], tmp_path)
            try:
                queue_many(engine, [unique_email(f"i{i}") for i in range(200)], now=utcnow())
                assert len(smtp_sink.wait_for(200, timeout=30)) == 200
                time.sleep(1)  # a duplicate would arrive now
                logs = "".join(server.log() for server in servers)
            finally:
                stop_all(servers)
            ids = message_ids(smtp_sink.messages)
            assert len(ids) == 200 and len(set(ids)) == 200
            assert logs.count("mail sender started") == 4, logs
            assert all(row.sent_at is not None for row in rows(engine).values())
        finally:
            engine.dispose()
