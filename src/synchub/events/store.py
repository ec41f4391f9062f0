"""Tables and queries for the outbox, deliveries and delivery attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata

outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("type", sa.String(120), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(40), nullable=False),
    sa.Column("aggregate_type", sa.String(30), nullable=False),
    sa.Column("aggregate_id", sa.String(40), nullable=False, index=True),
    sa.Column("dataschema", sa.String(200), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("traceparent", sa.String(60)),
    sa.Column("mapping_version", sa.String(60)),
    sa.Column("app_version", sa.String(40), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("dispatched_at", UtcDateTime),
    sa.Index("ix_outbox_events_undispatched", "dispatched_at", "seq"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False, index=True),
    sa.Column("event_seq", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.String(120), nullable=False),
    sa.Column("destination", sa.String(80), nullable=False),
    sa.Column("aggregate_id", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_until", UtcDateTime),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("dead_reason", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("completed_at", UtcDateTime),
    sa.UniqueConstraint("event_id", "destination"),
    sa.Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_order", "destination", "aggregate_id", "event_seq"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", sa.String(40), sa.ForeignKey("deliveries.id"), nullable=False, index=True
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("retry_after_seconds", sa.Float),
)

ACTIVE = ("pending", "in_flight")


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one destination."""

    id: str
    workspace: str
    event_id: str
    event_seq: int
    event_type: str
    destination: str
    aggregate_id: str
    status: str
    attempts: int
    idempotency_key: str
    created_at: datetime


def insert_event(conn: Connection, values: dict[str, Any]) -> int:
    """Write one outbox row; return its sequence number."""
    key = conn.execute(sa.insert(outbox_events).values(**values)).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no sequence number for the outbox row")
    return int(key[0])


def undispatched(conn: Connection, *, limit: int) -> list[dict[str, Any]]:
    """Outbox rows not yet fanned out to deliveries, in order, locked for this transaction."""
    query = (
        sa.select(outbox_events)
        .where(outbox_events.c.dispatched_at.is_(None))
        .order_by(outbox_events.c.seq)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(r) for r in conn.execute(query).mappings()]


def mark_dispatched(conn: Connection, seqs: list[int], *, at: datetime) -> None:
    """Mark outbox rows as fanned out."""
    conn.execute(
        sa.update(outbox_events).where(outbox_events.c.seq.in_(seqs)).values(dispatched_at=at)
    )


def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Create deliveries."""
    if rows:
        conn.execute(sa.insert(deliveries), rows)


def get_event(conn: Connection, event_id: str) -> dict[str, Any] | None:
    """One outbox event."""
    query = sa.select(outbox_events).where(outbox_events.c.id == event_id)
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def claim_due(
    conn: Connection, *, now: datetime, owner: str, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Lease due deliveries whose earlier deliveries for the same entity and destination are done.

    A pending delivery is due at next_attempt_at; an in-flight one whose lease expired (its
    worker died) is due again. PostgreSQL skips rows other workers hold (SKIP LOCKED).
    """
    d = deliveries.alias("d")
    earlier = deliveries.alias("e")
    blocked = sa.exists().where(
        earlier.c.destination == d.c.destination,
        earlier.c.aggregate_id == d.c.aggregate_id,
        earlier.c.event_seq < d.c.event_seq,
        earlier.c.status.in_(ACTIVE),
    )
    due = sa.or_(
        sa.and_(d.c.status == "pending", d.c.next_attempt_at <= now),
        sa.and_(d.c.status == "in_flight", d.c.lease_until < now),
    )
    query = (
        sa.select(d).where(due, ~blocked).order_by(d.c.next_attempt_at, d.c.event_seq).limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=d, skip_locked=True)
    claimed = []
    for row in conn.execute(query).mappings():
        result = conn.execute(
            sa.update(deliveries)
            .where(
                deliveries.c.id == row["id"],
                deliveries.c.status == row["status"],
                deliveries.c.attempts == row["attempts"],
            )
            .values(
                status="in_flight",
                lease_owner=owner,
                lease_until=lease_until,
                attempts=deliveries.c.attempts + 1,
            )
        )
        if result.rowcount == 1:
            claimed.append(_to_delivery({**row, "attempts": row["attempts"] + 1}))
    return claimed


def _to_delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        workspace=row["workspace"],
        event_id=row["event_id"],
        event_seq=row["event_seq"],
        event_type=row["event_type"],
        destination=row["destination"],
        aggregate_id=row["aggregate_id"],
        status=row["status"],
        attempts=row["attempts"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
    )


def finish(conn: Connection, delivery_id: str, *, owner: str, **values: Any) -> bool:
    """Record a delivery's outcome if this worker still holds its lease; False if it lost it."""
    result = conn.execute(
        sa.update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.status == "in_flight",
            deliveries.c.lease_owner == owner,
        )
        .values(lease_owner=None, lease_until=None, **values)
    )
    return result.rowcount == 1


def record_attempt(conn: Connection, values: dict[str, Any]) -> None:
    """Append one attempt to a delivery's history."""
    conn.execute(sa.insert(delivery_attempts).values(**values))


def count_by_status(conn: Connection) -> dict[tuple[str, str], int]:
    """How many deliveries per (destination, status)."""
    query = sa.select(deliveries.c.destination, deliveries.c.status, sa.func.count()).group_by(
        deliveries.c.destination, deliveries.c.status
    )
    return {(dest, status): n for dest, status, n in conn.execute(query)}


def list_deliveries(conn: Connection, *, status: str | None = None) -> list[dict[str, Any]]:
    """Deliveries, optionally of one status, oldest first."""
    query = sa.select(deliveries).order_by(deliveries.c.event_seq, deliveries.c.destination)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    return [dict(r) for r in conn.execute(query).mappings()]


def attempts_of(conn: Connection, delivery_id: str) -> list[dict[str, Any]]:
    """A delivery's attempts in order."""
    query = (
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == delivery_id)
        .order_by(delivery_attempts.c.attempt)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def pending_work(conn: Connection) -> dict[str, int]:
    """Counts that say whether anything is still moving: undispatched events, active deliveries."""
    undispatched_count = conn.execute(
        sa.select(sa.func.count())
        .select_from(outbox_events)
        .where(outbox_events.c.dispatched_at.is_(None))
    ).scalar_one()
    active = conn.execute(
        sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status.in_(ACTIVE))
    ).scalar_one()
    return {"undispatched": int(undispatched_count), "active_deliveries": int(active)}
