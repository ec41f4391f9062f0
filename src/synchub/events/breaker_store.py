"""The circuit breaker's row per (workspace, destination), shared by every worker process.

The state machine is events/breaker.py (pure); store.py claims work through it, and each
outcome goes through `observe_health` in the outcome's transaction (ADR 0008).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from synchub.db import UtcDateTime, metadata
from synchub.events import breaker
from synchub.events.breaker import Health, Signal, Window
from synchub.register.model import BreakerPolicy

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
# The columns of delivery_attempts (events/store.py) that the failure-rate window counts.
_attempts = sa.table(
    "delivery_attempts",
    sa.column("workspace"),
    sa.column("destination"),
    sa.column("finished_at", UtcDateTime),
    sa.column("breaker_signal"),
)


_ALL = sa.select(destination_health)
_ONE = _ALL.where(
    destination_health.c.workspace == sa.bindparam("b_ws"),
    destination_health.c.destination == sa.bindparam("b_dest"),
)
_ONE_LOCKED = _ONE.with_for_update()


def health_rows(conn: Connection, *, workspace: str | None = None) -> dict[tuple[str, str], Health]:
    """Every destination's breaker state, by (workspace, destination)."""
    t = destination_health
    query = _ALL if workspace is None else _ALL.where(t.c.workspace == workspace)
    return {
        (r["workspace"], r["destination"]): to_health(r) for r in conn.execute(query).mappings()
    }


def health_row(conn: Connection, key: tuple[str, str], *, lock: bool = False) -> Health | None:
    """One destination's breaker state; `lock` holds its row until the transaction ends."""
    query = _ONE_LOCKED if lock and conn.dialect.name == "postgresql" else _ONE
    row = conn.execute(query, {"b_ws": key[0], "b_dest": key[1]}).mappings().first()
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


def _window(conn: Connection, key: tuple[str, str], *, since: datetime) -> Window:
    a = _attempts
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
    known: dict[tuple[str, str], Health] | None = None,
) -> tuple[Health, Health]:
    """Apply one counted outcome to a destination's breaker atomically; (before, after).

    A success against a healthy destination writes nothing, so the common path takes no lock;
    `known` (every row, read earlier in this transaction) saves it the read.
    The attempt itself must already be recorded (it counts in the failure-rate window).
    """
    if signal is Signal.SUCCESS:
        current = known.get(key) if known is not None else health_row(conn, key)
        if current is None or breaker.is_settled(current, policy):
            current = current or Health.fresh(policy)
            return current, current
    insert_missing(conn, key, Health.fresh(policy), now)
    health = health_row(conn, key, lock=True) or Health.fresh(policy)
    window = None
    if signal is Signal.FAILURE and breaker.needs_window(health, now):
        window = _window(conn, key, since=breaker.window_start(health, policy, now))
    after = breaker.observe(health, policy, now, signal, window=window,
                            retry_after=retry_after, max_pause=max_pause)  # fmt: skip
    if after != health:
        save_health(conn, key, after, now=now)
    return health, after
