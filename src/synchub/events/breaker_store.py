"""The circuit breaker's row per (workspace, destination), shared by every worker process.

The state machine is events/breaker.py (pure); store.py claims work through it and records
each outcome with `observe_health` in the outcome's transaction (ADR 0008).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata
from synchub.events.breaker import Health

# One row per (workspace, destination) that has ever failed: its circuit breaker and retry
# throttle, shared by every worker process (events/breaker.py, ADR 0008).
destination_health = sa.Table(
    "destination_health",
    metadata,
    sa.Column("workspace", sa.String(40), primary_key=True),
    sa.Column("destination", sa.String(80), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("probes_succeeded", sa.Integer, nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("open_until", UtcDateTime),
    sa.Column("paused_until", UtcDateTime),
    sa.Column("window_since", UtcDateTime),
    sa.Column("last_failure_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

HEALTH_FIELDS = tuple(f.name for f in fields(Health))


def health_rows(conn: Connection, *, workspace: str | None = None) -> dict[tuple[str, str], Health]:
    """Every destination's breaker state, by (workspace, destination)."""
    t = destination_health
    query = sa.select(t) if workspace is None else sa.select(t).where(t.c.workspace == workspace)
    return {
        (r["workspace"], r["destination"]): to_health(r) for r in conn.execute(query).mappings()
    }


def health_row(conn: Connection, key: tuple[str, str], *, lock: bool = False) -> Health | None:
    """One destination's breaker state; `lock` holds its row until the transaction ends."""
    t = destination_health
    query = sa.select(t).where(t.c.workspace == key[0], t.c.destination == key[1])
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return to_health(row) if row is not None else None


def to_health(row: Any) -> Health:
    """A stored row as breaker state."""
    return Health(**{name: row[name] for name in HEALTH_FIELDS})


def save_health(conn: Connection, key: tuple[str, str], health: Health, *, now: datetime) -> None:
    """Write a destination's new breaker state (its row is locked, or SQLite's writer held)."""
    t = destination_health
    conn.execute(
        sa.update(t)
        .where(t.c.workspace == key[0], t.c.destination == key[1])
        .values(**vars(health), updated_at=now)
    )


def insert_missing(conn: Connection, key: tuple[str, str], health: Health, now: datetime) -> None:
    """Create a destination's row unless another worker already has."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"workspace": key[0], "destination": key[1], **vars(health), "updated_at": now}
    conn.execute(dialect.insert(destination_health).values(**values).on_conflict_do_nothing())
