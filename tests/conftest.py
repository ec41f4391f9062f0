"""Shared fixtures: a real, migrated database (SQLite always; PostgreSQL when configured)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import synchub.audit.store
import synchub.auth.store
import synchub.events.breaker_store
import synchub.events.store
import synchub.idempotency.store
import synchub.ingest.store
import synchub.mdm.match_store
import synchub.mdm.store
import synchub.vault.store
import synchub.webhooks.store  # noqa: F401 - every table on the metadata, for truncation
from synchub.core.clock import FixedClock
from synchub.db import Database, make_database, metadata
from synchub.migrations.runner import upgrade

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VENDOR = SHARED / "vendor"
_APP_URL = os.environ.get("SYNCHUB_DATABASE_URL", "")
# PostgreSQL for the second half of every database test: SYNCHUB_TEST_DATABASE_URL, or the
# app's own SYNCHUB_DATABASE_URL when that points at PostgreSQL. Each session makes (and
# drops) its own database next to it.
PG_ADMIN_URL = os.environ.get("SYNCHUB_TEST_DATABASE_URL") or (
    _APP_URL if _APP_URL.startswith("postgresql") else None
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    if not PG_ADMIN_URL:
        pytest.skip("SYNCHUB_TEST_DATABASE_URL is not set")
    name = f"synchub_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    db = make_database(url)
    upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _truncate(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.write() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite, and PostgreSQL when SYNCHUB_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        database = make_database(f"sqlite:///{tmp_path / 'synchub.db'}")
        upgrade(database)
    else:
        database = make_database(request.getfixturevalue("postgres_url"))
        _truncate(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database only (for tests about SQLite itself)."""
    database = make_database(f"sqlite:///{tmp_path / 'synchub.db'}")
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    """A clock that moves only when told to."""
    return FixedClock(datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
