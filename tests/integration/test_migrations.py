"""One schema, both engines: the migrations produce exactly the tables the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from synchub.db import Database, metadata
from synchub.migrations.runner import is_current, upgrade


def test_migrations_match_the_declared_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert is_current(db)


def test_upgrading_twice_is_harmless(db: Database) -> None:
    upgrade(db)
    assert is_current(db)


def test_sqlite_runs_in_wal_mode_with_normal_sync(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
