"""Mail delivery: the sender that turns outbox rows into email, with retries.

Services queue a message in the same transaction as the change behind it
(``taskapi.services.outbox.enqueue``); this module delivers the rows, by ``TASKAPI_MAIL_BACKEND``:
``file`` writes each message as ``<data_dir>/mail/<created>-<id>.eml`` and logs its links (the
development default, nothing to set up), ``smtp`` hands it to ``smtplib``.

**One sender across workers and instances.** ``send_pending`` claims a bounded batch of due
rows (not sent, not refused, ``next_attempt_at <= now``, earliest due first) in a short
transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (a second sender skips the
rows instead of waiting for them), the write lock (``BEGIN IMMEDIATE``) on SQLite. The claim
pushes the rows' ``next_attempt_at`` forward by a lease and commits, so every other sender now
sees them as not due. Each message is then sent outside any transaction (no row lock or
SQLite write lock is held while a mail server answers), and marked sent in a transaction of
its own, which also blanks its bodies (they can hold single-use links). A sender that dies
holding a claim simply lets the lease run out: the rows become due again.

**At least once.** A crash (or a lost database connection) after the mail server accepted a
message but before it was marked sent leaves the row claimed; when the lease ends it is sent
again. The resend carries the same ``Message-ID`` (``<row id@domain>``) and ``Date``, so a
receiving server or client can fold the copies. The alternative, marking before sending,
would lose the message whenever the send then fails, and a lost password-reset mail is worse
than a duplicate one; exactly once is not possible across two systems without the mail
server taking part in our transaction.

**Retries.** A temporary failure (connection refused, timeouts, a 4xx answer, a bad login or
TLS setup) counts an attempt, keeps the error (500 characters) and schedules the next one
after 30 s x 2^(attempts - 1), capped at an hour, less up to 20 % jitter; such mail is never
given up. When the server cannot be reached at all, the whole batch is put back that way and
the round ends. A permanent refusal for the recipient (a 5xx to ``RCPT`` or ``DATA``) marks
the row ``failed_at`` and logs an error: retrying would only be refused again.
"""

from __future__ import annotations

import logging
import os
import random
import re
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, Select, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from taskapi.db import make_session_factory, reads_in_autocommit, utcnow, write
from taskapi.models import OutboxMessage
from taskapi.settings import Settings, _private_folder

log = logging.getLogger("taskapi.mail")

BATCH = 20  # rows claimed at once: bounds the work (and the duplicates) one crash can leave
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
BACKOFF_JITTER = 0.2  # each delay is shortened by up to this fraction
LEASE_MIN = timedelta(minutes=5)
ERROR_CHARS = 500
# /api/ready reports mail as "delayed" once a message has waited longer than this.
DELAYED_AFTER_SECONDS = 300.0
# The background sender: pause at most this long between rounds while they keep failing.
MAX_FAILING_PAUSE_SECONDS = 60.0
LINK = re.compile(r"https?://[^\s<>\"')\]]+")

SessionSource = Engine | sessionmaker[Session]


@dataclass(frozen=True)
class Claimed:
    """One claimed outbox row, copied out of the database before sending."""

    id: uuid.UUID
    kind: str
    recipient: str
    subject: str
    text: str
    html: str
    created_at: datetime
    attempts: int


@dataclass
class Tally:
    """What one call of ``deliver_due`` did."""

    sent: int = 0
    failed: int = 0  # temporary failures: retried later
    refused: int = 0  # refused for good (failed_at set)


@dataclass(frozen=True)
class Backlog:
    """Mail waiting to be sent (neither sent nor refused)."""

    pending: int
    oldest_age_seconds: float | None


# --- building messages -----------------------------------------------------------------------


class MalformedMessage(ValueError):
    """A row that cannot become an email (a header with a line break): no retry can help."""


def message_domain(settings: Settings) -> str:
    """The domain of ``TASKAPI_MAIL_FROM``, for Message-IDs."""
    address = parseaddr(settings.mail_from)[1]
    domain = address.rpartition("@")[2]
    return domain or "taskapi"


def message_id(row_id: uuid.UUID, settings: Settings) -> str:
    """The Message-ID of one outbox row: the same on every (re)send of that row."""
    return f"<{row_id}@{message_domain(settings)}>"


def build_message(item: Claimed, settings: Settings) -> EmailMessage:
    """The email for ``item``: a text part and, when there is one, an HTML alternative."""
    message = EmailMessage()
    try:
        message["From"] = settings.mail_from
        message["To"] = item.recipient
        message["Subject"] = item.subject
        message["Date"] = format_datetime(item.created_at)
        message["Message-ID"] = message_id(item.id, settings)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        message.set_content(item.text)
        if item.html:
            message.add_alternative(item.html, subtype="html")
    except ValueError as error:  # a header value with CR or LF
        raise MalformedMessage(str(error)) from error
    return message


def links_in(text: str) -> list[str]:
    """Every http(s) URL in ``text``, once each, in order."""
    return list(dict.fromkeys(LINK.findall(text)))


# --- transports ------------------------------------------------------------------------------


class Unreachable(Exception):
    """The mail server could not be reached or would not let us in: nothing can be sent now."""


class Transport(Protocol):
    """Delivers built messages; ``close`` ends any connection."""

    def send(self, message: EmailMessage, item: Claimed) -> None:
        """Deliver one message (raise ``Unreachable`` when no message could be sent now)."""

    def reset(self) -> None:
        """Drop a connection that may be in a bad state after an error."""

    def close(self) -> None:
        """End the connection, if any."""


class FileTransport:
    """Writes each message as an ``.eml`` file (0600, folder 0700) and logs its links."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_of(self, item: Claimed) -> Path:
        """``<created>-<id>.eml``: names sort by creation time; a resend overwrites its file."""
        created = item.created_at.strftime("%Y%m%dT%H%M%S.%fZ")
        return self.folder / f"{created}-{item.id}.eml"

    def send(self, message: EmailMessage, item: Claimed) -> None:
        """Write the file whole (a temporary name, then a rename), then log one line."""
        _private_folder(self.folder)
        path = self.path_of(item)
        temporary = self.folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # exactly, whatever the umask
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        links = " ".join(links_in(item.text)) or "none"
        log.info(
            "mail to %s: %r written to %s; links: %s", item.recipient, item.subject, path, links
        )

    def reset(self) -> None:
        """Nothing to reset."""

    def close(self) -> None:
        """Nothing to close."""


class SmtpTransport:
    """One SMTP connection (plain, STARTTLS or implicit TLS) reused across a batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: smtplib.SMTP | None = None

    def connect(self) -> smtplib.SMTP:
        """Connect, upgrade to TLS when set, log in when a user name is set."""
        s = self.settings
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if s.smtp_ssl:
            connection = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context
            )
        else:
            connection = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            if s.smtp_starttls and not s.smtp_ssl:
                connection.starttls(context=context)
            if s.smtp_username:
                connection.login(s.smtp_username, s.smtp_password.get_secret_value())
        except BaseException:
            _quietly_close(connection)
            raise
        return connection

    def send(self, message: EmailMessage, item: Claimed) -> None:
        """Send over the open connection, opening one first if needed."""
        if self.connection is None:
            try:
                self.connection = self.connect()
            except Exception as error:
                raise Unreachable(describe(error)) from error
        self.connection.send_message(message, to_addrs=[item.recipient])

    def reset(self) -> None:
        """Drop the connection; the next message opens a new one."""
        if self.connection is not None:
            _quietly_close(self.connection)
            self.connection = None

    def close(self) -> None:
        """QUIT politely (errors ignored)."""
        if self.connection is not None:
            try:
                self.connection.quit()
            except Exception:  # the server went away: nothing left to close
                _quietly_close(self.connection)
            self.connection = None


def _quietly_close(connection: smtplib.SMTP) -> None:
    """Close the socket without a word to the server."""
    try:
        connection.close()
    except Exception:  # closing a broken socket may raise; it is gone either way
        log.debug("closing an SMTP connection failed", exc_info=True)


def transport_for(settings: Settings) -> Transport:
    """The transport ``TASKAPI_MAIL_BACKEND`` selects."""
    if settings.mail_backend == "smtp":
        return SmtpTransport(settings)
    return FileTransport(settings.data_dir / "mail")


# --- failures --------------------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    """An SMTP reply text as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def describe(error: BaseException) -> str:
    """One line for ``last_error`` and the log: the SMTP code and reply when there is one."""
    if isinstance(error, Unreachable):
        return str(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = [f"{code} {_text(reply)}" for code, reply in error.recipients.values()]
        text = f"recipient refused: {'; '.join(replies)}"
    elif isinstance(error, smtplib.SMTPResponseException):
        text = f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:ERROR_CHARS]


def is_permanent(error: BaseException) -> bool:
    """A refusal that no retry can change: a 5xx for the recipient or the message itself."""
    if isinstance(error, MalformedMessage):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _reply in error.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(error, smtplib.SMTPDataError):
        return error.smtp_code >= 500
    return False


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1 min, 2 min ... 1 h, jittered."""
    exponent = min(max(attempts - 1, 0), 20)
    delay = min(BACKOFF_CAP, BACKOFF_BASE * (1 << exponent))
    return delay * (1 - BACKOFF_JITTER * random.random())


def lease_for(settings: Settings) -> timedelta:
    """How long a claim keeps other senders off its rows: well over a batch's sending time.

    A batch stops starting new messages after half the lease, and one message takes at most
    a handful of SMTP timeouts, so a live sender finishes long before its lease ends.
    """
    return max(LEASE_MIN, timedelta(seconds=20 * settings.smtp_timeout_seconds))


# --- the outbox ------------------------------------------------------------------------------

_NOT_DONE = (OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))


def _due(before: datetime) -> Select[uuid.UUID]:
    """Rows waiting to be sent whose time has come."""
    return select(OutboxMessage.id).where(*_NOT_DONE, OutboxMessage.next_attempt_at <= before)


def claim(
    db: Session, *, due_before: datetime, now: datetime, lease: timedelta, batch: int
) -> list[Claimed]:
    """Take up to ``batch`` due rows, earliest due first, for ``lease``: one short transaction.

    A read first, so that an idle poll takes no lock (and on SQLite no write lock) at all.
    """
    if db.execute(_due(due_before).limit(1)).first() is None:
        db.commit()  # end the read (SQLite's deferred transaction) before taking the lock
        return []
    columns = (
        OutboxMessage.id,
        OutboxMessage.kind,
        OutboxMessage.recipient,
        OutboxMessage.subject,
        OutboxMessage.body_text,
        OutboxMessage.body_html,
        OutboxMessage.created_at,
        OutboxMessage.attempts,
    )
    with write(db):
        rows = db.execute(
            select(*columns)
            .where(*_NOT_DONE, OutboxMessage.next_attempt_at <= due_before)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock
        ).all()
        claimed = [Claimed(*row) for row in rows]
        if claimed:
            db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([c.id for c in claimed]))
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
    return claimed


def _mark_sent(db: Session, item: Claimed, *, now: datetime) -> None:
    """Sent: record when, and blank the bodies (they can hold single-use links)."""
    with write(db):
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == item.id, OutboxMessage.sent_at.is_(None))
            .values(
                sent_at=now,
                attempts=OutboxMessage.attempts + 1,
                last_error=None,
                body_text="",
                body_html="",
            )
            .execution_options(synchronize_session=False)
        )


def _mark_refused(db: Session, item: Claimed, error: str, *, now: datetime) -> None:
    """Refused for good: never retried; the bodies are blanked as for a sent message."""
    with write(db):
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == item.id, *_NOT_DONE)
            .values(
                failed_at=now,
                attempts=OutboxMessage.attempts + 1,
                last_error=error[:ERROR_CHARS],
                body_text="",
                body_html="",
            )
            .execution_options(synchronize_session=False)
        )


def _mark_retry(db: Session, items: Sequence[Claimed], error: str, *, now: datetime) -> timedelta:
    """A temporary failure for each of ``items``: count it and schedule the next attempt.

    Returns the shortest wait scheduled (for the log).
    """
    shortest = BACKOFF_CAP
    with write(db):
        for item in items:
            wait = backoff(item.attempts + 1)
            shortest = min(shortest, wait)
            db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == item.id, *_NOT_DONE)
                .values(
                    attempts=OutboxMessage.attempts + 1,
                    last_error=error[:ERROR_CHARS],
                    next_attempt_at=now + wait,
                )
                .execution_options(synchronize_session=False)
            )
    return shortest


def _release(db: Session, items: Sequence[Claimed], *, now: datetime) -> None:
    """Give claimed rows back unsent (the sender is stopping): due again at once."""
    with write(db):
        db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([i.id for i in items]), *_NOT_DONE)
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )


def _session_factory(source: SessionSource) -> sessionmaker[Session]:
    """The project's session factory for an engine (or the factory given)."""
    if isinstance(source, Engine):
        return make_session_factory(reads_in_autocommit(source))
    return source


def deliver_due(
    source: SessionSource,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    stop: threading.Event | None = None,
) -> Tally:
    """Send every message due when the call starts, batch by batch; return what happened.

    ``now`` fixes the clock (tests drive time with it); by default the real clock is read
    at each step. Stops early when ``stop`` is set (unsent claimed rows are given back) or
    when the mail server cannot be reached (the rest waits for the next round).
    """
    factory = _session_factory(source)

    def clock() -> datetime:
        return now or utcnow()

    due_before = clock()  # rows failing during this call are due later: each is tried once
    lease = lease_for(settings)
    tally = Tally()
    transport = transport_for(settings)
    try:
        with factory() as db:
            while not (stop is not None and stop.is_set()):
                claimed = claim(db, due_before=due_before, now=clock(), lease=lease, batch=batch)
                finished = _send_batch(db, claimed, transport, settings, tally, clock, lease, stop)
                if not finished or len(claimed) < batch:
                    break
    finally:
        transport.close()
    return tally


def _send_batch(
    db: Session,
    claimed: list[Claimed],
    transport: Transport,
    settings: Settings,
    tally: Tally,
    clock: Callable[[], datetime],
    lease: timedelta,
    stop: threading.Event | None,
) -> bool:
    """Send each claimed message and mark it; False when the round should end here."""
    deadline = time.monotonic() + lease.total_seconds() / 2
    for index, item in enumerate(claimed):
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            _release(db, claimed[index:], now=clock())
            return False
        try:
            transport.send(build_message(item, settings), item)
        except Unreachable as error:
            rest = claimed[index:]
            wait = _mark_retry(db, rest, str(error), now=clock())
            tally.failed += len(rest)
            log.warning(
                "mail server unreachable (%s): %d message(s) retried in %d s or more",
                error, len(rest), wait.total_seconds(),
            )  # fmt: skip
            return False
        except Exception as error:
            transport.reset()
            reason = describe(error)
            if is_permanent(error):
                _mark_refused(db, item, reason, now=clock())
                tally.refused += 1
                log.error(
                    "mail %s (%s) to %s refused for good: %s",
                    item.id, item.kind, item.recipient, reason,
                )  # fmt: skip
            else:
                wait = _mark_retry(db, [item], reason, now=clock())
                tally.failed += 1
                log.warning(
                    "mail %s (%s) not sent, attempt %d, retry in %d s: %s",
                    item.id, item.kind, item.attempts + 1, wait.total_seconds(), reason,
                )  # fmt: skip
            continue
        _mark_sent(db, item, now=clock())
        tally.sent += 1
    return True


def send_pending(
    source: SessionSource,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    stop: threading.Event | None = None,
) -> int:
    """Send every message that is due once; return how many were sent (see ``deliver_due``)."""
    return deliver_due(source, settings, now=now, batch=batch, stop=stop).sent


def backlog(db: Session, *, now: datetime | None = None) -> Backlog:
    """How many messages wait to be sent, and how long the oldest has waited (seconds)."""
    count, oldest = db.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(*_NOT_DONE)
    ).one()
    age = None if oldest is None else max(0.0, ((now or utcnow()) - oldest).total_seconds())
    return Backlog(pending=int(count), oldest_age_seconds=age)


def oldest_pending_age(db: Session, *, now: datetime | None = None) -> float | None:
    """Seconds the oldest unsent, unrefused message has waited; None when none waits."""
    return backlog(db, now=now).oldest_age_seconds


# --- the background sender -------------------------------------------------------------------


class Sender:
    """Runs ``deliver_due`` every ``TASKAPI_MAIL_POLL_SECONDS`` (+-50 %) until stopped.

    Errors are logged, never raised: a database or mail server outage only delays mail. Under
    gevent (``taskapi serve``) the thread is a greenlet, and every wait in it cooperates.
    """

    def __init__(self, source: SessionSource, settings: Settings) -> None:
        self.factory = _session_factory(source)
        self.settings = settings
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.rounds = 0

    def pause(self, failures: int) -> float:
        """The wait before the next round: jittered, and longer while rounds keep failing."""
        base = self.settings.mail_poll_seconds * random.uniform(0.5, 1.5)
        if not failures:
            return base
        return max(base, min(base * (1 << min(failures, 10)), MAX_FAILING_PAUSE_SECONDS))

    def run(self) -> None:
        """The loop itself, in the calling thread."""
        s = self.settings
        log.info("mail sender started: backend %s, every %s s", s.mail_backend, s.mail_poll_seconds)
        if s.is_production and s.mail_backend == "file":
            log.warning("TASKAPI_MAIL_BACKEND=file in production: mail is written to files only")
        failures = 0
        while not self.stopping.is_set():
            try:
                deliver_due(self.factory, s, stop=self.stopping)
            except Exception as error:
                failures += 1
                if failures == 1:
                    log.exception("mail sender: a round failed; retrying")
                else:
                    log.warning("mail sender: a round failed again (%s)", describe(error))
            else:
                if failures:
                    log.info("mail sender: working again after %d failed round(s)", failures)
                failures = 0
            self.rounds += 1
            self.stopping.wait(self.pause(failures))
        log.info("mail sender stopped")

    def start(self) -> None:
        """Run the loop in a daemon thread (a greenlet under gevent)."""
        self.thread = threading.Thread(target=self.run, name="taskapi-mail-sender", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Ask the loop to stop after the message in hand, and wait up to ``timeout`` s."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)


_background_lock = threading.Lock()
_background: Sender | None = None


def start_background_sender(source: SessionSource, settings: Settings) -> Sender | None:
    """Start this process's one background sender; None if one already runs here."""
    global _background
    with _background_lock:
        if _background is not None:
            return None
        _background = Sender(source, settings)
    _background.start()
    return _background


def stop_background_sender(timeout: float = 10) -> None:
    """Stop this process's background sender, if any."""
    global _background
    with _background_lock:
        sender, _background = _background, None
    if sender is not None:
        sender.stop(timeout)
