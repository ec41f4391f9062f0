"""Tables and queries for the outbox, deliveries and delivery attempts; claiming due work
through each destination's breaker (whose row lives in breaker_store.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata
from synchub.events import breaker, breaker_store
from synchub.events.breaker import Gate, Health, Kind
from synchub.events.claim_sql import EVENT_COLUMNS, Shape, claim_statement, gate_params
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
    sa.Column("created_at", UtcDateTime, nullable=False),  # never changes, not even on replay
    sa.Column("completed_at", UtcDateTime),
    sa.Column("replayed_at", UtcDateTime),  # the last replay: its retry budget counts from here
    sa.UniqueConstraint("event_id", "destination"),
    sa.Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_order", "destination", "aggregate_id", "event_seq"),
    # The claim's range and order (events/claim_sql.py, migration 0011).
    sa.Index(
        "ix_deliveries_due",
        "next_attempt_at",
        "event_seq",
        postgresql_where=sa.text("status IN ('pending', 'in_flight')"),
        sqlite_where=sa.text("status IN ('pending', 'in_flight')"),
    ),
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

# The stale-write guard (ADR 0021): per (workspace, destination, canonical record), the outbox
# sequence number of the newest snapshot of that record the destination was sent.
applied_versions = sa.Table(
    "applied_versions",
    metadata,
    sa.Column("workspace", sa.String(40), primary_key=True),
    sa.Column("destination", sa.String(80), primary_key=True),
    sa.Column("canonical_id", sa.String(40), primary_key=True),
    sa.Column("applied_seq", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)

ACTIVE = ("pending", "in_flight")
BreakerFor = Callable[[str], BreakerPolicy]
WORK_CHANNEL = "synchub_work"  # NOTIFY: new outbox rows or deliveries (payload: who sent it)
_XID_AND_NOTIFY = sa.text(f"SELECT pg_current_xact_id(), pg_notify('{WORK_CHANNEL}', '')")
_NOTIFY = sa.text(f"SELECT pg_notify('{WORK_CHANNEL}', :payload)")


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
    replayed_at: datetime | None = None

    @property
    def budget_from(self) -> datetime:
        """When its retry budget (max age) started: its last replay, else its creation."""
        return self.replayed_at or self.created_at


def insert_event(conn: Connection, values: dict[str, Any]) -> int:
    """Write one outbox row; return its sequence number.

    On PostgreSQL the transaction takes its id before the row takes its sequence number, so
    the dispatcher can tell when every smaller number has committed or rolled back (ADR 0008),
    and the same statement queues a NOTIFY on `WORK_CHANNEL`, sent when the transaction commits,
    which wakes listening workers (ADR 0014; PostgreSQL folds repeats within a transaction).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_XID_AND_NOTIFY)
    key = conn.execute(sa.insert(outbox_events).values(**values)).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no sequence number for the outbox row")
    return int(key[0])


def notify_work(conn: Connection, *, payload: str = "") -> None:
    """Queue a NOTIFY on the work channel, sent if this transaction commits (PostgreSQL)."""
    conn.execute(_NOTIFY, {"payload": payload})


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


_EVENTS = sa.select(outbox_events).where(
    outbox_events.c.id.in_(sa.bindparam("ids", expanding=True))
)


def get_events(conn: Connection, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Outbox events by id (one query for a claimed batch)."""
    if not event_ids:
        return {}
    rows = conn.execute(_EVENTS, {"ids": event_ids}).mappings()
    return {row["id"]: dict(row) for row in rows}


Health_ = dict[tuple[str, str], Health]  # every breaker row, read earlier in the transaction


def claim_due(
    conn: Connection,
    *,
    now: datetime,
    owner: str,
    lease_until: datetime,
    limit: int,
    breaker_for: BreakerFor | None = None,
    health: Health_ | None = None,
) -> list[Delivery]:
    """Lease due deliveries whose earlier deliveries for the same entity and destination are done.

    A pending delivery is due at next_attempt_at; an in-flight one whose lease expired (its
    worker died) is due again. PostgreSQL skips rows other workers hold (SKIP LOCKED).
    Destinations whose breaker is open or that a 429 paused are not claimed at all; half-open
    ones get their probes, throttled ones one retry at a time (ADR 0008). One statement leases
    the whole batch (events/claim_sql.py). `health`: the breaker rows, if already read.
    """
    return _claim(conn, now=now, owner=owner, lease_until=lease_until, limit=limit,
                  breaker_for=breaker_for, health=health, events=False)[0]  # fmt: skip


def claim_with_events(
    conn: Connection,
    *,
    now: datetime,
    owner: str,
    lease_until: datetime,
    limit: int,
    breaker_for: BreakerFor | None = None,
    health: Health_ | None = None,
) -> tuple[list[Delivery], dict[str, dict[str, Any]]]:
    """`claim_due`, plus the claimed deliveries' outbox events by id (on PostgreSQL read by
    the claim statement itself)."""
    claimed, events = _claim(conn, now=now, owner=owner, lease_until=lease_until, limit=limit,
                             breaker_for=breaker_for, health=health, events=True)  # fmt: skip
    missing = sorted({d.event_id for d in claimed} - set(events))
    return claimed, {**events, **get_events(conn, missing)}


def _claim(
    conn: Connection, *, now: datetime, owner: str, lease_until: datetime, limit: int,
    breaker_for: BreakerFor | None, health: Health_ | None, events: bool,
) -> tuple[list[Delivery], dict[str, dict[str, Any]]]:  # fmt: skip
    if limit <= 0:
        return [], {}
    policy_for = breaker_for or default_breaker
    rows = breaker_store.health_rows(conn) if health is None else health
    gates = {k: breaker.gate(h, policy_for(k[1]), now) for k, h in rows.items()}
    held = sorted(k for k, g in gates.items() if g.kind in (Kind.BLOCKED, Kind.PROBING))
    throttled = sorted(k for k, g in gates.items() if g.kind is Kind.THROTTLED)
    pg = conn.dialect.name == "postgresql"
    shape = Shape(pg, held=len(held), throttled=len(throttled), events=pg and events)
    params = {**gate_params("h", held), **gate_params("t", throttled)}
    claimed, found = _lease(conn, shape, params, now=now, owner=owner, lease_until=lease_until,
                            limit=limit)  # fmt: skip
    for key in sorted(k for k, g in gates.items() if g.kind in (Kind.PROBING, Kind.THROTTLED)):
        if len(claimed) >= limit:
            break
        claimed += _claim_gated(conn, key, policy_for(key[1]), now=now, owner=owner,
                                lease_until=lease_until, limit=limit - len(claimed))  # fmt: skip
    return claimed, found


def default_breaker(_destination: str) -> BreakerPolicy:
    """The breaker settings of a destination the register does not name (STANDARDS values)."""
    return BreakerPolicy()


def _lease(
    conn: Connection, shape: Shape, params: dict[str, Any], *, now: datetime, owner: str,
    lease_until: datetime, limit: int,
) -> tuple[list[Delivery], dict[str, dict[str, Any]]]:  # fmt: skip
    values = {**params, "now": now, "owner": owner, "lease_until": lease_until, "limit": limit}
    rows = conn.execute(claim_statement(shape), values).mappings().all()
    events = {}
    if shape.events:
        for row in rows:
            if row["ev_id"] is not None:
                events[row["ev_id"]] = {c: row[f"ev_{c}"] for c in EVENT_COLUMNS}
    return sorted((_to_delivery(r) for r in rows), key=lambda d: d.event_seq), events


_LIVE = sa.text(
    "SELECT count(*) FROM deliveries WHERE workspace = :ws AND destination = :dest"
    " AND status = 'in_flight' AND lease_until >= :now AND attempts > :min_attempts"
).bindparams(sa.bindparam("now", type_=UtcDateTime))


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
    throttled = gate.kind is Kind.THROTTLED
    live = conn.execute(_LIVE, {"ws": key[0], "dest": key[1], "now": now,
                                "min_attempts": 1 if throttled else 0}).scalar_one()  # fmt: skip
    slots = min(gate.slots - int(live), limit)
    if slots <= 0:
        return []
    if not throttled and health.state == "open":
        half_open = replace(health, state="half_open", probes_succeeded=0)
        breaker_store.save_health(conn, key, half_open, now=now)
    shape = Shape(conn.dialect.name == "postgresql", one=True, retries_only=throttled)
    return _lease(conn, shape, {"one_ws": key[0], "one_dest": key[1]}, now=now, owner=owner,
                  lease_until=lease_until, limit=slots)[0]  # fmt: skip


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
        replayed_at=row["replayed_at"],
    )


# Built once: the SET columns come from each call's parameters.
_FINISH = sa.update(deliveries).where(
    deliveries.c.id == sa.bindparam("b_id"),
    deliveries.c.status == "in_flight",
    deliveries.c.lease_owner == sa.bindparam("b_owner"),
)


def finish(conn: Connection, delivery_id: str, *, owner: str, **values: Any) -> bool:
    """Record a delivery's outcome if this worker still holds its lease; False if it lost it."""
    params = {"b_id": delivery_id, "b_owner": owner, "lease_owner": None, "lease_until": None}
    result = conn.execute(_FINISH, {**params, **values})
    return result.rowcount == 1


_RENEW = sa.update(deliveries).where(
    deliveries.c.id.in_(sa.bindparam("b_ids", expanding=True)),
    deliveries.c.status == "in_flight",
    deliveries.c.lease_owner == sa.bindparam("b_owner"),
)


# PostgreSQL: the rows are locked in id order, as a group commit writes its outcomes
# (events/outcome.py), so a heartbeat and a group never wait on each other.
_RENEW_ORDERED = sa.text(
    "UPDATE deliveries SET lease_until = :lease_until WHERE id IN ("
    "SELECT id FROM deliveries WHERE id IN :b_ids AND status = 'in_flight'"
    " AND lease_owner = :b_owner ORDER BY id FOR UPDATE)"
    " AND status = 'in_flight' AND lease_owner = :b_owner"
).bindparams(
    sa.bindparam("b_ids", expanding=True, type_=sa.String),
    sa.bindparam("lease_until", type_=UtcDateTime),
)


def renew_leases(
    conn: Connection, delivery_ids: list[str], *, owner: str, lease_until: datetime
) -> int:
    """Extend the leases this worker still holds (a heartbeat); returns how many it holds."""
    if not delivery_ids:
        return 0
    params = {"b_ids": delivery_ids, "b_owner": owner, "lease_until": lease_until}
    statement = _RENEW_ORDERED if conn.dialect.name == "postgresql" else _RENEW
    return int(conn.execute(statement, params).rowcount)


_RECORD_ATTEMPT = sa.insert(delivery_attempts)


def record_attempt(conn: Connection, values: dict[str, Any]) -> None:
    """Append one attempt to a delivery's history."""
    conn.execute(_RECORD_ATTEMPT, values)


# PostgreSQL: an outcome in one round trip (ADR 0014). The attempt (and the snapshots applied,
# ADR 0021) are inserted from the UPDATE's RETURNING, so nothing is written when the lease was
# lost (no row returned), exactly as `finish` + `record_attempt` + `record_applied` in one
# transaction that rolls back on a lost lease.
_ATTEMPT_CASTS = (
    ("attempt", "integer"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("outcome", "text"),
    ("status_code", "integer"),
    ("error", "text"),
    ("retry_after_seconds", "double precision"),
    ("response", "json"),
    ("workspace", "text"),
    ("destination", "text"),
    ("breaker_signal", "text"),
)
_VALUE_TYPES: dict[str, Any] = {
    "next_attempt_at": UtcDateTime,
    "completed_at": UtcDateTime,
    "lease_until": UtcDateTime,
    "last_response": sa.JSON,
}


@lru_cache(maxsize=32)
def _finish_statement(columns: tuple[str, ...], applied: bool) -> sa.TextClause:
    """The one-statement outcome for one set of delivery columns (PostgreSQL)."""
    sets = ", ".join(f"{c} = :v_{c}" for c in columns)
    names = ", ".join(c for c, _ in _ATTEMPT_CASTS)
    casts = ", ".join(f"CAST(:a_{c} AS {t})" for c, t in _ATTEMPT_CASTS)
    sql = (
        f"WITH f AS (\n  UPDATE deliveries SET {sets}\n"  # noqa: S608 - constant fragments
        "  WHERE id = :b_id AND status = 'in_flight' AND lease_owner = :b_owner RETURNING id),\n"
        f"a AS (\n  INSERT INTO delivery_attempts (delivery_id, {names})\n"
        f"  SELECT f.id, {casts} FROM f)"
    )
    if applied:
        sql += (
            ",\np AS (\n  INSERT INTO applied_versions (workspace, destination, canonical_id,"
            " applied_seq, event_id, applied_at)\n  SELECT CAST(:p_workspace AS text),"
            " CAST(:p_destination AS text), x.id, CAST(:p_seq AS bigint),"
            " CAST(:p_event_id AS text), CAST(:p_at AS timestamptz)\n"
            "  FROM f CROSS JOIN unnest(CAST(:p_ids AS text[])) AS x(id)\n"
            "  ON CONFLICT (workspace, destination, canonical_id) DO UPDATE SET"
            " applied_seq = excluded.applied_seq, event_id = excluded.event_id,"
            " applied_at = excluded.applied_at"
            " WHERE applied_versions.applied_seq < excluded.applied_seq)"
        )
    sql += "\nSELECT count(*) FROM f"
    binds = [sa.bindparam(f"v_{c}", type_=_VALUE_TYPES[c]) for c in columns if c in _VALUE_TYPES]
    binds += [
        sa.bindparam("a_started_at", type_=UtcDateTime),
        sa.bindparam("a_finished_at", type_=UtcDateTime),
        sa.bindparam("a_response", type_=sa.JSON),
    ]
    if applied:
        binds.append(sa.bindparam("p_at", type_=UtcDateTime))
    return sa.text(sql).bindparams(*binds)


@dataclass(frozen=True)
class Applied:
    """Snapshots an attempt wrote (ADR 0021): `record_applied`'s arguments."""

    workspace: str
    destination: str
    canonical_ids: list[str]
    seq: int
    event_id: str
    at: datetime


def finish_attempt(
    conn: Connection,
    delivery_id: str,
    *,
    owner: str,
    values: dict[str, Any],
    attempt: dict[str, Any],
    applied: Applied | None = None,
) -> bool:
    """Record a delivery's outcome, its attempt and the snapshots it applied, if this worker
    still holds the lease; False, and nothing written, if it lost it. One statement on
    PostgreSQL; `finish`, `record_applied` and `record_attempt` on SQLite (one writer: no
    round trips to save)."""
    if conn.dialect.name != "postgresql":
        if not finish(conn, delivery_id, owner=owner, **values):
            return False
        if applied is not None:
            record_applied(conn, workspace=applied.workspace, destination=applied.destination,
                           canonical_ids=applied.canonical_ids, seq=applied.seq,
                           event_id=applied.event_id, at=applied.at)  # fmt: skip
        record_attempt(conn, {"delivery_id": delivery_id, **attempt})
        return True
    row = {"lease_owner": None, "lease_until": None, **values}
    columns = tuple(sorted(row))
    params = {f"v_{c}": row[c] for c in columns}
    params.update({f"a_{c}": attempt.get(c) for c, _ in _ATTEMPT_CASTS})
    params.update(b_id=delivery_id, b_owner=owner)
    if applied is not None:
        params.update(p_workspace=applied.workspace, p_destination=applied.destination,
                      p_ids=sorted(set(applied.canonical_ids)), p_seq=applied.seq,
                      p_event_id=applied.event_id, p_at=applied.at)  # fmt: skip
    statement = _finish_statement(columns, applied is not None)
    return int(conn.execute(statement, params).scalar_one()) == 1


_APPLIED_SEQS = sa.text(
    "SELECT canonical_id, applied_seq FROM applied_versions WHERE workspace = :workspace"
    " AND destination = :destination AND canonical_id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True, type_=sa.String))


def applied_seqs(
    conn: Connection, *, workspace: str, destination: str, canonical_ids: list[str]
) -> dict[str, int]:
    """The newest snapshot sequence number applied at a destination, by canonical id."""
    if not canonical_ids:
        return {}
    params = {"workspace": workspace, "destination": destination,
              "ids": sorted(set(canonical_ids))}  # fmt: skip
    return {str(cid): int(seq) for cid, seq in conn.execute(_APPLIED_SEQS, params)}


# What an attempt needs besides its event, in one round trip (ADR 0014): the links of the
# event's records at the destination (as mdm.records.links_at: not ids merged away) and the
# newest snapshot of each guarded record already applied there (ADR 0021).
_LINKS_AND_APPLIED = sa.text(
    "SELECT 'link', canonical_id, external_id, NULL FROM crosswalk"
    " WHERE workspace = :workspace AND system = :destination AND canonical_id IN :link_ids"
    " AND reason != :merged_away"
    " UNION ALL SELECT 'applied', canonical_id, NULL, applied_seq FROM applied_versions"
    " WHERE workspace = :workspace AND destination = :destination AND canonical_id IN :snap_ids"
).bindparams(
    sa.bindparam("link_ids", expanding=True, type_=sa.String),
    sa.bindparam("snap_ids", expanding=True, type_=sa.String),
)


def links_and_applied(
    conn: Connection,
    *,
    workspace: str,
    destination: str,
    link_ids: list[str],
    snapshot_ids: list[str],
    merged_away: str,
) -> tuple[dict[str, str], dict[str, int]]:
    """(links at the destination by canonical id, applied snapshot numbers by canonical id)."""
    if not link_ids and not snapshot_ids:
        return {}, {}
    params = {"workspace": workspace, "destination": destination, "merged_away": merged_away,
              "link_ids": sorted(set(link_ids)), "snap_ids": sorted(set(snapshot_ids))}  # fmt: skip
    links: dict[str, str] = {}
    applied: dict[str, int] = {}
    for kind, canonical_id, external_id, seq in conn.execute(_LINKS_AND_APPLIED, params):
        if kind == "link":
            links[str(canonical_id)] = str(external_id)
        else:
            applied[str(canonical_id)] = int(seq)
    return links, applied


# The same statement on SQLite and PostgreSQL; the number only moves forward.
_RECORD_APPLIED = sa.text(
    "INSERT INTO applied_versions (workspace, destination, canonical_id, applied_seq, event_id,"
    " applied_at) VALUES (:workspace, :destination, :canonical_id, :seq, :event_id, :at)"
    " ON CONFLICT (workspace, destination, canonical_id) DO UPDATE SET"
    " applied_seq = excluded.applied_seq, event_id = excluded.event_id,"
    " applied_at = excluded.applied_at WHERE applied_versions.applied_seq < excluded.applied_seq"
).bindparams(sa.bindparam("at", type_=UtcDateTime))


def record_applied(
    conn: Connection,
    *,
    workspace: str,
    destination: str,
    canonical_ids: list[str],
    seq: int,
    event_id: str,
    at: datetime,
) -> None:
    """Note that the destination now holds these records' snapshots as of outbox `seq`; a
    number never goes down (a replayed older snapshot that was sent anyway leaves it)."""
    for canonical_id in sorted(set(canonical_ids)):
        conn.execute(_RECORD_APPLIED, {"workspace": workspace, "destination": destination,
                                       "canonical_id": canonical_id, "seq": seq,
                                       "event_id": event_id, "at": at})  # fmt: skip


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
    """A delivery's attempts in the order they were recorded (a replay, numbered 0, and the
    attempts after it, numbered from 1 again, come after the earlier ones)."""
    query = (
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == delivery_id)
        .order_by(delivery_attempts.c.id)
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
