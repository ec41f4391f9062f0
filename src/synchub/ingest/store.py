"""The inbox: every inbound vendor event, raw bytes as received, committed before we answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata

inbox_events = sa.Table(
    "inbox_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("source", sa.String(80), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("event_type", sa.String(120), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("traceparent", sa.String(60)),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("process_after", UtcDateTime, nullable=False),
    sa.Column("processed_at", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("workspace", "source", "external_id"),
    sa.Index("ix_inbox_events_status_process_after", "status", "process_after"),
)


@dataclass(frozen=True)
class InboxEvent:
    """One inbound event as stored."""

    id: str
    workspace: str
    source: str
    external_id: str
    event_type: str
    body: bytes
    traceparent: str | None
    received_at: datetime
    status: str
    attempts: int


# Built once: the webhook hot path only binds parameters to these (no statement building).
_KEY = ("workspace", "source", "external_id")
_EXISTS = (
    sa.select(sa.literal(1)).where(*[inbox_events.c[k] == sa.bindparam(k) for k in _KEY]).limit(1)
)
_INSERT = {
    name: insert(inbox_events)
    .on_conflict_do_nothing(index_elements=list(_KEY))
    .returning(inbox_events.c.id)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def insert_if_new(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert an inbox row unless (workspace, source, external_id) exists; True if inserted."""
    return conn.execute(_INSERT[conn.dialect.name], row).first() is not None


def exists(conn: Connection, *, workspace: str, source: str, external_id: str) -> bool:
    """Whether an event id from a source is already in the inbox."""
    params = {"workspace": workspace, "source": source, "external_id": external_id}
    return conn.execute(_EXISTS, params).first() is not None


def claim_due(conn: Connection, *, now: datetime, limit: int) -> list[InboxEvent]:
    """Due pending or parked events in arrival order, locked for this transaction."""
    query = (
        sa.select(inbox_events)
        .where(
            inbox_events.c.status.in_(("pending", "parked")), inbox_events.c.process_after <= now
        )
        .order_by(inbox_events.c.received_at, inbox_events.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_to_event(r) for r in conn.execute(query).mappings()]


def _to_event(row: Any) -> InboxEvent:
    return InboxEvent(
        id=row["id"],
        workspace=row["workspace"],
        source=row["source"],
        external_id=row["external_id"],
        event_type=row["event_type"],
        body=bytes(row["body"]),
        traceparent=row["traceparent"],
        received_at=row["received_at"],
        status=row["status"],
        attempts=row["attempts"],
    )


def mark(conn: Connection, event_id: str, **values: Any) -> None:
    """Update an inbox row's status fields."""
    conn.execute(sa.update(inbox_events).where(inbox_events.c.id == event_id).values(**values))


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many inbox rows are in each status."""
    rows = conn.execute(
        sa.select(inbox_events.c.status, sa.func.count()).group_by(inbox_events.c.status)
    )
    return {status: count for status, count in rows}


def lock_if_due(conn: Connection, event_id: str) -> bool:
    """Lock one inbox row for processing if it still waits (PostgreSQL skips rows others hold)."""
    query = sa.select(inbox_events.c.id).where(
        inbox_events.c.id == event_id, inbox_events.c.status.in_(("pending", "parked"))
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).first() is not None
