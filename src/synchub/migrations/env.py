"""Alembic environment: uses the engine handed in by synchub (never reads a URL itself)."""

from __future__ import annotations

from alembic import context

import synchub.audit.store
import synchub.auth.store
import synchub.events.store
import synchub.idempotency.store
import synchub.ingest.store
import synchub.mdm.store  # noqa: F401 - importing registers the tables on the metadata
from synchub.db import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
