"""The delivery claim as one statement of SQL text (ADR 0004, 0014).

One `UPDATE … RETURNING` leases a batch: due deliveries (pending and due, or in flight with
an expired lease) whose earlier deliveries for the same (destination, aggregate) are neither
pending nor in flight, oldest first; on PostgreSQL the rows are picked with `FOR UPDATE
SKIP LOCKED` in a materialised CTE, so each is read once and no two workers take the same
row. Within one statement a batch never holds two deliveries of one (destination,
aggregate): the later one is blocked by the earlier, still pending when the statement reads.

Every fragment is a constant of this module (no value is ever spliced in: values are bound),
hence the `noqa: S608` marks. Text, not a Core expression: the claim runs many times a
second, and SQLAlchemy walks a Core statement of this size on every call to build its cache
key; a TextClause is keyed by its string. Statements are built once per shape (dialect, how
many destinations the breaker holds back or throttles, whether only one destination is
claimed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa

from synchub.db import UtcDateTime

RETURNED = (
    "id",
    "workspace",
    "event_id",
    "event_seq",
    "event_type",
    "destination",
    "aggregate_id",
    "status",
    "attempts",
    "idempotency_key",
    "created_at",
    "replayed_at",
)

# Due: pending with next_attempt_at passed, or in flight on an expired lease (an in-flight row
# was claimed when due, so its next_attempt_at has passed too). Written so that the partial
# index ix_deliveries_due (next_attempt_at, event_seq WHERE status IN (...); migration 0011)
# serves both the range and the ORDER BY: the scan stops after LIMIT claimable rows instead
# of sorting every due row (ADR 0014).
# The NOT EXISTS is the order rule. On PostgreSQL `OFFSET 0` keeps it a per-row probe of
# ix_deliveries_order: left to itself, the planner turns it into an anti-join, and on a table
# whose statistics are stale (any queue that just filled up) it picked a plan that compared
# every due row with every active one (150 ms for 400 rows, against 1.5 ms).
# A replayed delivery (ADR 0021) also waits while a later one of its (destination, aggregate)
# is in flight on a live lease, so the stale-write guard reads what that one applied.
_DUE = """d.status IN ('pending', 'in_flight') AND d.next_attempt_at <= :now
  AND (d.status = 'pending' OR d.lease_until < :now)
  AND NOT EXISTS (
    SELECT 1 FROM deliveries AS e
    WHERE e.destination = d.destination AND e.aggregate_id = d.aggregate_id
      AND e.event_seq < d.event_seq AND e.status IN ('pending', 'in_flight'){fence})
  AND (d.replayed_at IS NULL OR NOT EXISTS (
    SELECT 1 FROM deliveries AS f
    WHERE f.destination = d.destination AND f.aggregate_id = d.aggregate_id
      AND f.event_seq > d.event_seq AND f.status = 'in_flight' AND f.lease_until >= :now{fence}))"""

_SET = (
    "status = 'in_flight', lease_owner = :owner, lease_until = :lease_until,"
    " attempts = deliveries.attempts + 1"
)


@dataclass(frozen=True)
class Shape:
    """Which variant of the claim: the filters the breaker's gates need (ADR 0008)."""

    postgresql: bool
    held: int = 0  # destinations none of whose deliveries may be claimed (:hw0, :hd0, …)
    throttled: int = 0  # destinations whose retries may not be claimed (:tw0, :td0, …)
    one: bool = False  # only one destination (:one_ws, :one_dest)
    retries_only: bool = False  # only deliveries attempted before
    events: bool = False  # PostgreSQL: also return each delivery's outbox row (EVENT_COLUMNS)


# What an attempt reads of its outbox row, returned as `ev_<name>` beside the delivery.
EVENT_COLUMNS = ("id", "type", "subject", "created_at", "payload", "traceparent")


def _pairs(prefix: str, count: int) -> str:
    return ", ".join(f"(:{prefix}w{i}, :{prefix}d{i})" for i in range(count))


def _filters(shape: Shape) -> str:
    parts = []
    if shape.held:
        parts.append(f"(d.workspace, d.destination) NOT IN (VALUES {_pairs('h', shape.held)})")
    if shape.throttled:
        pairs = _pairs("t", shape.throttled)
        parts.append(f"NOT (d.attempts > 0 AND (d.workspace, d.destination) IN (VALUES {pairs}))")
    if shape.one:
        parts.append("d.workspace = :one_ws AND d.destination = :one_dest")
    if shape.retries_only:
        parts.append("d.attempts > 0")
    return "".join(f"\n  AND {p}" for p in parts)


@lru_cache(maxsize=128)
def claim_statement(shape: Shape) -> sa.TextualSelect:
    """The claim for one shape; binds :now, :owner, :lease_until, :limit and the gates'."""
    due = _DUE.format(fence=" OFFSET 0" if shape.postgresql else "")
    pick = (
        f"SELECT d.id FROM deliveries AS d\n  WHERE {due}{_filters(shape)}\n"  # noqa: S608
        "  ORDER BY d.next_attempt_at, d.event_seq\n  LIMIT :limit"
    )
    returned = ", ".join(f"deliveries.{c}" for c in RETURNED)
    if shape.postgresql:
        lease = (
            f"UPDATE deliveries SET {_SET}\nFROM due WHERE deliveries.id = due.id\n"  # noqa: S608
            f"RETURNING {returned}"
        )
        sql = f"WITH due AS MATERIALIZED (\n  {pick}\n  FOR UPDATE OF d SKIP LOCKED)\n{lease}"
        if shape.events:  # one round trip for the lease and what the attempt sends
            events = ", ".join(f"o.{c} AS ev_{c}" for c in EVENT_COLUMNS)
            sql = (
                f"WITH due AS MATERIALIZED (\n  {pick}\n  FOR UPDATE OF d SKIP LOCKED),\n"
                f"claimed AS (\n{lease})\nSELECT claimed.*, {events}\n"
                "FROM claimed LEFT JOIN outbox_events AS o ON o.id = claimed.event_id"
            )
    else:  # one writer at a time: the subquery is read before any row changes
        sql = (
            f"UPDATE deliveries SET {_SET}\nWHERE deliveries.id IN (\n  {pick})\n"  # noqa: S608
            f"RETURNING {returned}"
        )
    return (
        sa.text(sql)
        .bindparams(
            sa.bindparam("now", type_=UtcDateTime),
            sa.bindparam("lease_until", type_=UtcDateTime),
        )
        .columns(
            created_at=UtcDateTime,
            replayed_at=UtcDateTime,
            ev_created_at=UtcDateTime,
            ev_payload=sa.JSON,
        )
    )


def gate_params(prefix: str, keys: list[tuple[str, str]]) -> dict[str, str]:
    """Bind values for a list of (workspace, destination) pairs in a shape's VALUES list."""
    params = {}
    for i, (workspace, destination) in enumerate(keys):
        params[f"{prefix}w{i}"], params[f"{prefix}d{i}"] = workspace, destination
    return params
