"""Engine, transactions and metadata. SQLite (WAL, one writer at a time) or PostgreSQL."""

from __future__ import annotations

import threading
import weakref
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


class Prepared:
    """A Core statement run straight on the transaction's SQLite connection.

    Compiled once per dialect, with the bind and result conversions SQLAlchemy itself would
    apply (the same SQL text, the same stored values, the same rows back), and executed on the
    DBAPI connection of the caller's transaction: the same transaction, without SQLAlchemy's
    per-execution bookkeeping, which costs tens of microseconds per statement and was most of
    an API write's database time (ADR 0015). Driver errors are wrapped as SQLAlchemy would.
    On other dialects, or on a connection outside a transaction, it is `conn.execute`.
    An INSERT names the columns it is always given in `column_keys` (as SQLAlchemy compiles
    an insert for the parameters it is executed with).
    """

    def __init__(self, statement: sa.Executable, *, column_keys: list[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = column_keys
        self._plans: weakref.WeakKeyDictionary[sa.Dialect, _Plan | None] = (
            weakref.WeakKeyDictionary()
        )

    def rowcount(self, conn: Connection, params: dict[str, Any]) -> int:
        """Execute a DML statement; the number of rows it changed."""
        plan = self._plan(conn)
        if plan is None:
            return int(conn.execute(self.statement, params).rowcount)
        cursor = plan.execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any] | None:
        """Execute a SELECT; its first row by column name, or None."""
        plan = self._plan(conn)
        if plan is None:
            row = conn.execute(self.statement, params).mappings().first()
            return dict(row) if row is not None else None
        cursor = plan.execute(conn, params)
        try:
            values = cursor.fetchone()
        finally:
            cursor.close()
        if values is None:
            return None
        return {
            name: process(value) if process is not None else value
            for (name, process), value in zip(plan.columns, values, strict=True)
        }

    def _plan(self, conn: Connection) -> _Plan | None:
        if conn.dialect.name != "sqlite" or not conn.in_transaction():
            return None
        try:
            return self._plans[conn.dialect]
        except KeyError:
            plan = _Plan.build(self.statement, conn.dialect, self.column_keys)
            self._plans[conn.dialect] = plan
            return plan


class _Plan:
    """One statement compiled for one dialect: SQL, parameter order and converters."""

    def __init__(
        self,
        sql: str,
        binds: list[tuple[str, bool, Any, Any]],
        columns: list[tuple[str, Any]],
        dbapi_error: type[Exception],
    ) -> None:
        self.sql = sql
        self.binds = binds  # (name, required, default, converter) in positional order
        self.columns = columns  # (name, converter) of a SELECT's result columns
        self.dbapi_error = dbapi_error

    @classmethod
    def build(
        cls, statement: sa.Executable, dialect: sa.Dialect, column_keys: list[str] | None
    ) -> _Plan | None:
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=column_keys
        )
        if (
            not compiled.positional
            or compiled.literal_execute_params
            or compiled.post_compile_params
            or dialect.dbapi is None
        ):
            return None  # anything unusual keeps SQLAlchemy's own execution
        binds = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, bool(bind.required), bind.value, convert))
        columns = []
        if isinstance(statement, sa.Select):
            for column in statement.selected_columns:
                if column.key is None:
                    return None
                convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
                columns.append((column.key, convert))
        return cls(str(compiled), binds, columns, dialect.dbapi.Error)

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        values = []
        for name, required, default, convert in self.binds:
            value = params[name] if required else params.get(name, default)
            values.append(convert(value) if convert is not None else value)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, values)
        except self.dbapi_error as exc:
            cursor.close()
            raise sa.exc.DBAPIError.instance(
                self.sql, None, exc, self.dbapi_error, hide_parameters=True, dialect=conn.dialect
            ) from exc
        return cursor
