"""``taskapi users ...``: what an operator needs to help a person with their account.

Each command prints one line (``list`` one per user) and exits 1 when the user is unknown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from taskapi.errors import NotFound
from taskapi.models import Session, Task, User
from taskapi.services import accounts
from taskapi.services.notices import MailContext
from taskapi.settings import Settings


@contextmanager
def _database(settings: Settings) -> Iterator[DbSession]:
    """A session on a short-lived engine, disposed afterwards."""
    from taskapi.db import make_engine, make_session_factory

    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _settings() -> Settings:
    """The settings, or one line naming the bad variable (exit 2)."""
    from taskapi.cli import settings_or_exit

    return settings_or_exit()


@contextmanager
def _user(ref: str) -> Iterator[tuple[DbSession, User, Settings]]:
    """The named user (email or id) with a session and the settings; exit 1 if unknown."""
    settings = _settings()
    with _database(settings) as db:
        try:
            user = accounts.find_user(db, ref=ref)
        except NotFound:
            click.echo(f"taskapi: no user {ref!r}", err=True)
            sys.exit(1)
        yield db, user, settings


def _describe(user: User) -> str:
    """One line of a user's state."""
    state = "disabled" if user.disabled_at else "active"
    verified = "verified" if user.email_verified else "unverified"
    return f"{user.id}  {user.email}  {state}  {verified}  created {user.created_at:%Y-%m-%d}"


@click.group(help="Look after user accounts (operators).")
def users() -> None:
    """Operator commands on accounts."""


@users.command("list", help="List users, optionally by email pattern (ana*@example.com).")
@click.option("--email", "pattern", help="Email pattern; * matches anything.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
def list_users(pattern: str | None, limit: int) -> None:
    """One line per user."""
    with _database(_settings()) as db:
        found = accounts.list_users(db, email_like=pattern, limit=limit)
    for user in found:
        click.echo(_describe(user))
    if not found:
        click.echo("no users match")


@users.command(help="Show one user (by email or id).")
@click.argument("user")
def show(user: str) -> None:
    """The user's state, with their task and live-session counts."""
    with _user(user) as (db, found, _):
        tasks = db.scalar(select(func.count()).where(Task.owner_id == found.id))
        sessions = db.scalar(
            select(func.count()).where(Session.user_id == found.id, Session.revoked_at.is_(None))
        )
        click.echo(f"{_describe(found)}  tasks {tasks}  sessions {sessions}")


@users.command(help="Disable an account: its tokens fail at once and login is refused.")
@click.argument("user")
def disable(user: str) -> None:
    """Disable, end every session, notify the owner."""
    _set_disabled(user, disabled=True)


@users.command(help="Enable a disabled account (the person logs in again).")
@click.argument("user")
def enable(user: str) -> None:
    """Lift a disable."""
    _set_disabled(user, disabled=False)


def _set_disabled(ref: str, *, disabled: bool) -> None:
    """Disable or enable, saying what happened."""
    from taskapi.db import utcnow

    with _user(ref) as (db, found, settings):
        email = found.email
        changed = accounts.set_disabled(
            db, user_id=found.id, disabled=disabled, ctx=MailContext.of(settings), now=utcnow()
        )
    word = "disabled" if disabled else "enabled"
    click.echo(f"{email} {word}" if changed else f"{email} was already {word}")


@users.command("set-password", help="Set a password (prompted, or one line on stdin).")
@click.argument("user")
def set_password(user: str) -> None:
    """Set the password; every session ends and the owner gets a notice."""
    from taskapi.db import utcnow
    from taskapi.passwords import hash_password
    from taskapi.schemas.passwords import check_password_policy

    password = _read_password()
    try:
        if not 8 <= len(password) <= 128:
            raise ValueError("must be 8 to 128 characters")
        check_password_policy(password)
    except ValueError as error:
        click.echo(f"taskapi: the password {error}", err=True)
        sys.exit(2)
    with _user(user) as (db, found, settings):
        email = found.email
        password_hash = hash_password(password, rounds=settings.bcrypt_rounds)
        accounts.set_password(
            db,
            user_id=found.id,
            password_hash=password_hash,
            ctx=MailContext.of(settings),
            now=utcnow(),
        )
    click.echo(f"password set for {email}; every session ended")


def _read_password() -> str:
    """From a prompt on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        return str(click.prompt("New password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@users.command(help="Delete an account with all its tasks and sessions.")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(user: str, yes: bool) -> None:
    """Delete for good."""
    with _user(user) as (db, found, _):
        email = found.email
        if not yes:
            click.confirm(f"Delete {email} and every task of theirs?", abort=True)
        accounts.delete_user(db, user_id=found.id)
    click.echo(f"{email} deleted")


@users.command(help="Mark an account's email as verified.")
@click.argument("user")
def verify(user: str) -> None:
    """An operator vouches for the address."""
    with _user(user) as (db, found, _):
        email = found.email
        accounts.mark_verified(db, user_id=found.id)
    click.echo(f"{email} verified")
