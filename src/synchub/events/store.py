"""Tables and queries for the outbox, deliveries and delivery attempts; claiming due work
through each destination's breaker (whose row lives in breaker_store.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata
from synchub.events import breaker, breaker_store
from synchub.events.breaker import Gate, Health, Kind, Signal, Window
from synchub.register.model import BreakerPolicy

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
    sa.Column("last_response", sa.JSON),  # redacted summary of the vendor's last answer
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
    sa.Column("response", sa.JSON),  # redacted summary of what the vendor answered
    # For the breaker's failure-rate window: whose call this was and what it counted as.
    sa.Column("workspace", sa.String(40)),
    sa.Column("destination", sa.String(80)),
    sa.Column("breaker_signal", sa.String(20)),
    sa.Index("ix_delivery_attempts_window", "workspace", "destination", "finished_at"),
)

ACTIVE = ("pending", "in_flight")
BreakerFor = Callable[[str], BreakerPolicy]


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
    """Write one outbox row; return its sequence number.

    On PostgreSQL the transaction takes its id before the row takes its sequence number, so
    the dispatcher can tell when every smaller number has committed or rolled back (ADR 0008).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_current_xact_id()"))
    key = conn.execute(sa.insert(outbox_events).values(**values)).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no sequence number for the outbox row")
    return int(key[0])


def undispatched(conn: Connection, *, limit: int, up_to: int | None = None) -> list[dict[str, Any]]:
    """Outbox rows not yet fanned out to deliveries, in order (up to a sequence number)."""
    query = (
        sa.select(outbox_events)
        .where(outbox_events.c.dispatched_at.is_(None))
        .order_by(outbox_events.c.seq)
        .limit(limit)
    )
    if up_to is not None:
        query = query.where(outbox_events.c.seq <= up_to)
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
    conn: Connection,
    *,
    now: datetime,
    owner: str,
    lease_until: datetime,
    limit: int,
    breaker_for: BreakerFor | None = None,
) -> list[Delivery]:
    """Lease due deliveries whose earlier deliveries for the same entity and destination are done.

    A pending delivery is due at next_attempt_at; an in-flight one whose lease expired (its
    worker died) is due again. PostgreSQL skips rows other workers hold (SKIP LOCKED).
    Destinations whose breaker is open or that a 429 paused are not claimed at all; half-open
    ones get their probes, throttled ones one retry at a time (ADR 0008).
    """
    policy_for = breaker_for or default_breaker
    gates = {
        k: breaker.gate(h, policy_for(k[1]), now)
        for k, h in breaker_store.health_rows(conn).items()
    }
    held = [k for k, g in gates.items() if g.kind in (Kind.BLOCKED, Kind.PROBING)]
    throttled = [k for k, g in gates.items() if g.kind is Kind.THROTTLED]
    d = deliveries.alias("d")
    query = _due(d, now)
    if held:
        query = query.where(~_of(d, held))
    if throttled:  # first attempts flow; retries wait for their turn below
        query = query.where(~sa.and_(_of(d, throttled), d.c.attempts > 0))
    claimed = _lease(conn, query, d, owner=owner, lease_until=lease_until, limit=limit)
    for key in sorted(k for k, g in gates.items() if g.kind in (Kind.PROBING, Kind.THROTTLED)):
        if len(claimed) >= limit:
            break
        claimed += _claim_gated(conn, key, policy_for(key[1]), now=now, owner=owner,
                                lease_until=lease_until, limit=limit - len(claimed))  # fmt: skip
    return claimed


def default_breaker(_destination: str) -> BreakerPolicy:
    """The breaker settings of a destination the register does not name (STANDARDS values)."""
    return BreakerPolicy()


def _due(d: Any, now: datetime) -> sa.Select[Any]:
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
    return sa.select(d).where(due, ~blocked).order_by(d.c.next_attempt_at, d.c.event_seq)


def _of(d: Any, keys: list[tuple[str, str]]) -> sa.ColumnElement[bool]:
    return sa.or_(*(sa.and_(d.c.workspace == w, d.c.destination == n) for w, n in keys))


def _lease(
    conn: Connection, query: sa.Select[Any], d: Any, *, owner: str, lease_until: datetime,
    limit: int,
) -> list[Delivery]:  # fmt: skip
    query = query.limit(limit)
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


def _claim_gated(
    conn: Connection, key: tuple[str, str], policy: BreakerPolicy, *, now: datetime,
    owner: str, lease_until: datetime, limit: int,
) -> list[Delivery]:  # fmt: skip
    """Probes of a half-open destination, or one retry of a throttled one, under its row lock."""
    health = breaker_store.health_row(conn, key, lock=True)
    if health is None:
        return []
    gate: Gate = breaker.gate(health, policy, now)
    if gate.kind not in (Kind.PROBING, Kind.THROTTLED):
        return []
    t = deliveries
    live = sa.select(sa.func.count()).select_from(t).where(
        t.c.workspace == key[0], t.c.destination == key[1], t.c.status == "in_flight",
        t.c.lease_until >= now)  # fmt: skip
    if gate.kind is Kind.THROTTLED:
        live = live.where(t.c.attempts > 1)
    slots = min(gate.slots - int(conn.execute(live).scalar_one()), limit)
    if slots <= 0:
        return []
    d = deliveries.alias("d")
    query = _due(d, now).where(_of(d, [key]))
    if gate.kind is Kind.THROTTLED:
        query = query.where(d.c.attempts > 0)
    elif health.state == "open":
        half_open = replace(health, state="half_open", probes_succeeded=0)
        breaker_store.save_health(conn, key, half_open, now=now)
    return _lease(conn, query, d, owner=owner, lease_until=lease_until, limit=slots)


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


def renew_leases(
    conn: Connection, delivery_ids: list[str], *, owner: str, lease_until: datetime
) -> int:
    """Extend the leases this worker still holds (a heartbeat); returns how many it holds."""
    if not delivery_ids:
        return 0
    result = conn.execute(
        sa.update(deliveries)
        .where(
            deliveries.c.id.in_(delivery_ids),
            deliveries.c.status == "in_flight",
            deliveries.c.lease_owner == owner,
        )
        .values(lease_until=lease_until)
    )
    return int(result.rowcount)


def record_attempt(conn: Connection, values: dict[str, Any]) -> None:
    """Append one attempt to a delivery's history."""
    conn.execute(sa.insert(delivery_attempts).values(**values))


# -- destination health (circuit breaker and retry throttle) -------------------------------


def _window(conn: Connection, key: tuple[str, str], *, since: datetime) -> Window:
    a = delivery_attempts
    failed = sa.case((a.c.breaker_signal == Signal.FAILURE.value, 1), else_=0)
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(failed), 0)).where(
        a.c.workspace == key[0], a.c.destination == key[1], a.c.finished_at >= since,
        a.c.breaker_signal.in_((Signal.SUCCESS.value, Signal.FAILURE.value)))  # fmt: skip
    calls, failures = conn.execute(query).one()
    return Window(calls=int(calls), failures=int(failures))


def observe_health(
    conn: Connection,
    key: tuple[str, str],
    signal: Signal,
    *,
    policy: BreakerPolicy,
    now: datetime,
    retry_after: float | None = None,
    max_pause: float = 24 * 3600.0,
) -> tuple[Health, Health]:
    """Apply one counted outcome to a destination's breaker atomically; (before, after).

    A success against a healthy destination writes nothing, so the common path takes no lock.
    The attempt itself must already be recorded (it counts in the failure-rate window).
    """
    if signal is Signal.SUCCESS:
        current = breaker_store.health_row(conn, key)
        if current is None or breaker.is_settled(current, policy):
            current = current or Health.fresh(policy)
            return current, current
    breaker_store.insert_missing(conn, key, Health.fresh(policy), now)
    health = breaker_store.health_row(conn, key, lock=True) or Health.fresh(policy)
    window = None
    if signal is Signal.FAILURE and breaker.needs_window(health, now):
        window = _window(conn, key, since=breaker.window_start(health, policy, now))
    after = breaker.observe(health, policy, now, signal, window=window,
                            retry_after=retry_after, max_pause=max_pause)  # fmt: skip
    if after != health:
        breaker_store.save_health(conn, key, after, now=now)
    return health, after


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
