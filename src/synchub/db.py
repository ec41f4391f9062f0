"""Engine, transactions and metadata. SQLite (WAL, one writer at a time) or PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
BUSY_TIMEOUT_MS = 30_000


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every engine."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class WriterBusyError(Exception):
    """SQLite's single writer is taken and the caller asked not to wait."""


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front so two writers never deadlock on a lock upgrade.
    options = conn.get_execution_options()
    if options.get("synchub_readonly", False):
        conn.exec_driver_sql("BEGIN")
        return
    if not options.get("synchub_nowait", False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    conn.exec_driver_sql("PRAGMA busy_timeout=0")  # another process holds it: fail, don't wait
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except sa.exc.OperationalError as exc:
        raise WriterBusyError("another process holds the SQLite writer") from exc
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class Database:
    """The store: an engine plus the transaction rules of its dialect."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer; serialising writers in-process avoids busy-wait sleeps.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def write(self, *, wait: bool = True) -> Iterator[Connection]:
        """A read-write transaction: committed on success, rolled back on any error.

        With `wait=False` on SQLite, raise WriterBusyError at once instead of waiting for the
        single writer (another thread or process): callers on an event loop use it to run
        short writes inline when the writer is free, and hop to a thread when it is not.
        """
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        if not self._write_lock.acquire(blocking=wait):
            raise WriterBusyError("the SQLite writer is busy")
        try:
            connection = self.engine.connect().execution_options(synchub_nowait=not wait)
            with connection as conn, conn.begin():
                yield conn
        finally:
            self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot; never takes the write lock)."""
        with self.engine.connect().execution_options(synchub_readonly=True) as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def make_database(url: str, *, echo: bool = False) -> Database:
    """Create the engine for a URL (sqlite:///path or postgresql+psycopg://…)."""
    if url in ("sqlite://", "sqlite:///:memory:"):  # one shared in-memory database
        engine = sa.create_engine(
            url,
            echo=echo,
            poolclass=sa.pool.StaticPool,
            hide_parameters=True,
            connect_args={"check_same_thread": False},
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    elif url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            pool_size=8,
            max_overflow=8,
            hide_parameters=True,  # parameters hold raw bodies and personal data: never log them
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = sa.create_engine(
            url, echo=echo, pool_size=10, max_overflow=10, hide_parameters=True, pool_pre_ping=True
        )
    return Database(engine)


def keyset_page(
    conn: Connection,
    query: sa.Select[Any],
    id_column: sa.ColumnElement[Any],
    *,
    limit: int,
    starting_after: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of rows in id order after a cursor; returns (rows, has_more)."""
    if starting_after is not None:
        query = query.where(id_column > starting_after)
    rows = conn.execute(query.order_by(id_column).limit(limit + 1)).mappings().all()
    return [dict(r) for r in rows[:limit]], len(rows) > limit
