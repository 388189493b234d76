"""The mail outbox: messages are queued in the caller's transaction and sent later.

A message written here commits or rolls back with the change that caused it, so a reset
token is never stored without its mail, nor a mail sent for a change that did not happen.
``taskapi.mail`` delivers the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session as DbSession

from taskapi.db import write
from taskapi.models import OutboxMessage


@dataclass(frozen=True)
class Message:
    """One email: who gets it, and its text and HTML parts."""

    kind: str  # what caused it, e.g. "password_reset" (logs and metrics)
    recipient: str
    subject: str
    text: str
    html: str


def enqueue(db: DbSession, message: Message, *, now: datetime) -> None:
    """Queue ``message`` inside the caller's unit of work (joins it; never commits alone)."""
    with write(db):
        db.add(
            OutboxMessage(
                kind=message.kind,
                recipient=message.recipient,
                subject=message.subject[:200],
                body_text=message.text,
                body_html=message.html,
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )
