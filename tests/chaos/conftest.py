"""Fixtures for the chaos tests: a database of their own, made fresh and dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def chaos_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one chaos run (the run migrates it)."""
    if not PG_ADMIN_URL:
        pytest.skip("SYNCHUB_TEST_DATABASE_URL is not set")
    name = f"synchub_chaos_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
