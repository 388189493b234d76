"""Engine, sessions, the UTC datetime type and the naming convention."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from psycopg.rows import namedtuple_row
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 15_000
SQLITE_BUSY_TIMEOUT_SECONDS = 15
WRITE_TRANSACTION = "taskapi_write_transaction"


def utcnow() -> datetime:
    """The current time in UTC, at the microsecond resolution both databases keep."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; SQLite's naive values come back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store every value in UTC (naive values are refused upstream)."""
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """None on PostgreSQL: psycopg already answers aware datetimes, in UTC (the sessions'
        zone), so a page's 200 timestamps need no call each."""
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes on every database."""
        if value is None or value.tzinfo is UTC:  # PostgreSQL's sessions run in UTC
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention migrations rely on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Connections each worker keeps open, and how many more it may open at a peak (closed again
# when returned). Kept at least as large as the requests a worker serves at once: below that,
# every request beyond the kept ones opens and closes a connection (a PostgreSQL backend
# started and stopped per request), which under load cost GET by id 15 % of its throughput.
DEFAULT_POOL_SIZE = 20
DEFAULT_MAX_OVERFLOW = 10


def _engine_options(
    url: str, pool_size: int = DEFAULT_POOL_SIZE, max_overflow: int = DEFAULT_MAX_OVERFLOW
) -> dict[str, Any]:
    """Timeouts and pool options per backend, so an outage fails fast instead of hanging."""
    if url.startswith("sqlite"):
        return {
            "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
        }
    # No pre-ping: it costs a round trip per checkout. A connection found dead fails its
    # request's first statement, which invalidates the pool (every older connection
    # reconnects on its next checkout) and is retried once (see api.operation).
    return {
        # orjson parses the tags of a page of 50 tasks several times faster than json does.
        "json_deserializer": orjson.loads,
        "json_serializer": _orjson_text,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": CONNECT_TIMEOUT_SECONDS,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            # Sessions in UTC: psycopg then returns timestamps already in UTC (no conversion
            # per value; a page of 50 tasks carries 200).
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC",
        },
    }


def _orjson_text(value: Any) -> str:
    """JSON text for a json/jsonb parameter, by orjson."""
    return orjson.dumps(value).decode()


def _casefold(value: str | None) -> str | None:
    """Unicode case folding for SQLite's ``casefold()`` SQL function."""
    return value.casefold() if isinstance(value, str) else value


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Enforce foreign keys, use WAL, and let us issue BEGIN ourselves (see below)."""
    dbapi_connection.isolation_level = None
    # SQLite's lower() folds ASCII only; searches need Unicode case folding.
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(
    url: str, *, pool_size: int = DEFAULT_POOL_SIZE, max_overflow: int = DEFAULT_MAX_OVERFLOW
) -> Engine:
    """Create the engine for ``url`` with the project's connection settings (the pool's
    sizes apply to PostgreSQL)."""
    engine = create_engine(url, **_engine_options(url, pool_size, max_overflow))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin)
    return engine


def _begin(connection: Any) -> None:
    """Reads begin deferred (WAL lets them run beside a writer); writes take the lock up front.

    A deferred read-then-write transaction fails with "database is locked" instead of
    waiting when another writer committed in between, so writes must say so at BEGIN.
    """
    immediate = connection.get_execution_options().get(WRITE_TRANSACTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class WriteOutsideUnitOfWork(RuntimeError):
    """A write was attempted outside ``write()``: a bug, caught before it reaches the database."""


WRITE_DEPTH = "taskapi_write_depth"
WROTE = "taskapi_wrote"


def _begin_write(session: Session) -> None:
    """Start the unit of work's transaction: BEGIN IMMEDIATE on SQLite, and on PostgreSQL a
    READ COMMITTED transaction on a connection that otherwise reads in autocommit.

    Only reads (the session check) can have happened before, so ending them is harmless.
    PostgreSQL's row locks order concurrent writers.
    """
    if session.in_transaction():
        session.commit()
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={WRITE_TRANSACTION: True})
    else:
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})


@contextmanager
def write(session: Session) -> Iterator[Session]:
    """The unit of work of one use case: one transaction, committed when the block ends.

    Every write must happen inside one (the session refuses writes outside it), and a
    service called from another's block joins it instead of committing midway. An
    exception rolls everything back.
    """
    depth = session.info.get(WRITE_DEPTH, 0)
    if depth:
        session.info[WRITE_DEPTH] = depth + 1
        try:
            yield session
        finally:
            session.info[WRITE_DEPTH] = depth
        return
    session.info[WROTE] = True
    _begin_write(session)
    session.info[WRITE_DEPTH] = 1
    try:
        yield session
        session.flush()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info[WRITE_DEPTH] = 0


def writes_in_one_statement(session: Session) -> bool:
    """Whether a write may be one statement with data-modifying CTEs (PostgreSQL, not SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def one_statement_write(
    session: Session, statement: Executable, params: dict[str, Any]
) -> Sequence[Any]:
    """A unit of work that is one statement (its CTEs included), atomic by itself: the rows
    it returns, as named tuples.

    On PostgreSQL (``writes_in_one_statement``) it runs in autocommit, so a write costs one
    round trip instead of four (BEGIN, a read, the write, COMMIT); inside another unit of
    work it joins it.
    """
    session.info[WROTE] = True
    if _writing(session) or not writes_in_one_statement(session):
        with write(session):
            return session.execute(statement, params).all()
    # Outside write() a PostgreSQL session's connection is in autocommit (reads_in_autocommit).
    return driver_rows(session, statement, params, named=True)


def session_has_written(session: Session) -> bool:
    """Whether a unit of work has begun on this session (so a retry could write twice)."""
    return bool(session.info.get(WROTE))


def _writing(session: Session) -> bool:
    """Whether the session is inside a ``write()`` block."""
    return bool(session.info.get(WRITE_DEPTH))


def _refuse_stray_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse to flush changes made outside a unit of work."""
    if (session.new or session.dirty or session.deleted) and not _writing(session):
        raise WriteOutsideUnitOfWork("a change was flushed outside db.write()")


def _refuse_stray_statement(state: ORMExecuteState) -> None:
    """Refuse INSERT, UPDATE and DELETE statements outside a unit of work."""
    if (state.is_insert or state.is_update or state.is_delete) and not _writing(state.session):
        raise WriteOutsideUnitOfWork("a write statement ran outside db.write()")


def release_connection(session: Session) -> None:
    """End the session's reads and give its connection back to the pool, before slow work
    (bcrypt): otherwise a login storm holds every pooled connection while it waits for the
    CPU, and reads time out waiting for one. Loaded objects stay usable."""
    if _writing(session):
        raise WriteOutsideUnitOfWork("release_connection() inside a unit of work")
    session.commit()


def reads_in_autocommit(engine: Engine) -> Engine:
    """The engine the app's sessions use: on PostgreSQL, statements outside a unit of work
    run in autocommit, so a read is one round trip, without a BEGIN and ROLLBACK around it.

    Each read sees the data committed when it starts (as READ COMMITTED would); reads that
    span several statements (delta sync) are written for that.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Any]:
    """Sessions that keep loaded values after commit and write only inside ``write()``."""
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
    event.listen(factory, "before_flush", _refuse_stray_flush)
    event.listen(factory, "do_orm_execute", _refuse_stray_statement)
    return factory


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once for the driver: its SQL, the values of its literal
    parameters, and the type conversions its bound parameters need (jsonb, UTC datetimes)."""

    sql: str
    defaults: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]


@lru_cache(maxsize=1024)  # hot statements are module constants or cached per shape
def _driver_statement(statement: Executable, dialect: Dialect) -> _DriverStatement | None:
    """None for a statement whose SQL depends on its values (an expanding IN list)."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if compiled.post_compile_params or compiled.literal_execute_params:
        return None
    defaults, processors = {}, {}
    for bind, name in compiled.bind_names.items():
        if not bind.required:
            defaults[name] = bind.effective_value
        processor = bind.type.bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return _DriverStatement(compiled.string, defaults, processors)


def driver_rows(
    session: Session, statement: Executable, params: dict[str, Any], *, named: bool = False
) -> Sequence[Any]:
    """The rows of a hot-path statement, as tuples (``named``: named tuples, whose columns
    are also attributes).

    On PostgreSQL it runs on the session's connection through the driver's own cursor, with
    the SQL compiled once: SQLAlchemy's execution (its cache lookup, execution context and
    result metadata, which builds a description of every column per execution) cost more
    than the round trip. The statement's columns need no conversion on PostgreSQL (psycopg
    answers UUIDs, aware UTC datetimes and parsed jsonb). A driver error is handed to
    SQLAlchemy's own handling, so a dead connection invalidates the pool and raises the
    ``DBAPIError`` the retry and the 503 rest on. SQLite runs it the usual way.
    """
    connection = session.connection()
    dialect = connection.dialect
    compiled = _driver_statement(statement, dialect) if dialect.name == "postgresql" else None
    if compiled is None:
        return connection.execute(statement, params).all()
    values = {**compiled.defaults, **params}
    for name, processor in compiled.processors.items():
        values[name] = processor(values[name])
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor(row_factory=namedtuple_row) if named else driver.cursor()
    try:
        # Listeners (tests counting statements or reading their plans) see it as any other.
        connection.dispatch.before_cursor_execute(connection, cursor, compiled.sql, values, None,
                                                  False)  # fmt: skip
        cursor.execute(compiled.sql, values)
        connection.dispatch.after_cursor_execute(connection, cursor, compiled.sql, values, None,
                                                 False)  # fmt: skip
        rows: list[Any] = cursor.fetchall()
        return rows
    except BaseException as error:  # as SQLAlchemy's own execution catches them
        connection._handle_dbapi_exception(error, compiled.sql, values, cursor, None)
    finally:
        cursor.close()
