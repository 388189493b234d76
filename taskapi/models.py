"""Database models: users, login sessions, tasks and their bookkeeping tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.db import Base, UTCDateTime, utcnow

# Fractional-indexing keys sort by their bytes ("Zz" < "a0"): PostgreSQL must compare them with
# the C collation, not the database's locale, or a move would land in the wrong place.
Position = String(255).with_variant(String(255, collation="C"), "postgresql")


class User(Base):
    """An account; ``change_seq`` numbers this user's task changes for delta sync."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Kept in step by every task write (which locks this row anyway), so the quota check
    # costs no count over the user's tasks.
    task_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set by an operator (``taskapi users disable``): the user's tokens fail with 401
    # account_disabled and login is refused until ``enable``.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Session(Base):
    """One login: the family of refresh tokens that rotate within it."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_created", "user_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    current_jti: Mapped[str] = mapped_column(String(36))
    previous_jti: Mapped[str | None] = mapped_column(String(36), default=None)
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskList(Base):
    """A user's list of tasks, in the user's own order; one per user is the inbox."""

    __tablename__ = "lists"
    __table_args__ = (
        Index("ix_lists_owner_position", "owner_id", "position", "id"),
        Index("ix_lists_owner_change", "owner_id", "change_seq"),
        # At most one inbox per user, enforced by the database.
        Index(
            "uq_lists_owner_inbox",
            "owner_id",
            unique=True,
            sqlite_where=text("inbox"),
            postgresql_where=text("inbox"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(100))
    color: Mapped[str | None] = mapped_column(String(7), default=None)
    position: Mapped[str] = mapped_column(Position)
    inbox: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)

    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class Task(Base):
    """A to-do item owned by exactly one user."""

    __tablename__ = "tasks"
    __table_args__ = (
        # A list's top-level tasks, and a parent's subtasks, in their manual order: one index
        # range scan each. Partial indexes, because PostgreSQL cannot read the order
        # (position, id) out of an index (list_id, parent_id, position, id) when parent_id
        # IS NULL (only an equality fixes a leading column), and would sort the whole list.
        Index(
            "ix_tasks_list_position",
            "list_id",
            "position",
            "id",
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        Index(
            "ix_tasks_parent_position",
            "parent_id",
            "position",
            "id",
            sqlite_where=text("parent_id IS NOT NULL"),
            postgresql_where=text("parent_id IS NOT NULL"),
        ),
        # Every task of a list, subtasks included (deleting a list, its foreign key).
        Index("ix_tasks_list", "list_id"),
        Index("ix_tasks_owner_created", "owner_id", "created_at", "id"),
        Index("ix_tasks_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_tasks_owner_due", "owner_id", "due_at", "id"),
        Index("ix_tasks_owner_priority", "owner_id", "priority", "id"),
        Index("ix_tasks_owner_title", "owner_id", "title", "id"),
        Index("ix_tasks_owner_change", "owner_id", "change_seq"),
        # Substring search (q) on PostgreSQL: trigram GIN indexes serve ILIKE '%word%'.
        Index(
            "ix_tasks_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_tasks_tags_gin",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_tasks_notes_trgm",
            "notes",
            postgresql_using="gin",
            postgresql_ops={"notes": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    notes: Mapped[str] = mapped_column(Text, default="")
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Stored as 0..3 so that sorting by priority is a plain integer order.
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    # jsonb on PostgreSQL, so that a GIN index serves "tasks carrying this tag" (@>).
    tags: Mapped[list[str]] = mapped_column(
        JSON().with_variant(JSONB(), "postgresql"), default=list
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    list_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # One level of subtasks: a subtask's parent is a top-level task of the same list.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), default=None
    )
    position: Mapped[str] = mapped_column(Position)
    # An RFC 5545 RRULE (a documented subset) and the IANA zone its wall-clock times live in.
    recurrence: Mapped[str | None] = mapped_column(String(500), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    # Set once when a recurring task is completed: the occurrence made then (never two).
    next_occurrence_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)

    # Every UPDATE also checks the version it read, so concurrent writers cannot both win.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class TaskTombstone(Base):
    """A deleted task or list, kept so that delta sync can report the deletion."""

    __tablename__ = "task_tombstones"
    __table_args__ = (Index("ix_task_tombstones_owner_change", "owner_id", "change_seq"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), default="task", server_default="task")
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    change_seq: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """A remembered ``POST /tasks`` answer, replayed for a repeated key."""

    __tablename__ = "idempotency_keys"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AccountToken(Base):
    """A single-use emailed token (password reset, email verification or change of email).

    Only the SHA-256 of the random token is stored, so a copy of the database cannot use it.
    """

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_purpose", "user_id", "purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))  # "reset", "verify" or "email"
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    new_email: Mapped[str | None] = mapped_column(String(254), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class KnownDevice(Base):
    """A (user agent, address class) this user has logged in from: a new one gets a notice."""

    __tablename__ = "known_devices"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PersonalToken(Base):
    """A long-lived, scoped API token for scripts: only its SHA-256 and a display prefix."""

    __tablename__ = "personal_tokens"
    __table_args__ = (Index("ix_personal_tokens_user_created", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated, sorted
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class OutboxMessage(Base):
    """An email waiting to be sent, written in the same transaction as the change behind it.

    The sender claims due rows, sends, and marks them sent; a failure pushes
    ``next_attempt_at`` back exponentially. Bodies are blanked once sent (they can hold
    single-use links).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "sent_at", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Set when the server refused the message for good (a 5xx for the recipient): no retry.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
