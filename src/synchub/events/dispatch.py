"""Fan-out: one delivery per subscribed destination for each outbox event, in outbox order.

On PostgreSQL two things could break order per entity (ADR 0008):
- two dispatchers at once could fan out a later event before an earlier one: one dispatcher
  at a time holds a transaction-scoped advisory lock, the others skip the step;
- sequence numbers are taken at INSERT, but transactions commit in another order, so seq 11
  can be visible while seq 10 is still in flight. The dispatcher only fans out up to a
  watermark below which every number handed out has committed or rolled back: it notes the
  last number handed out, then takes a transaction id; once every other transaction older
  than that id has ended, so has every transaction holding a number up to the one noted,
  because each writer takes its transaction id before its number (store.insert_event).
  The id is the dispatch transaction's own, taken after it read the number (ADR 0014): one
  transaction and one commit per pass instead of two. Its own id is never in its snapshot,
  so "every other transaction older than mine has ended" can be judged in the same
  transaction, and the rows are fanned out at once when it holds.
SQLite has one writer at a time, so commits happen in sequence order already.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from synchub.core.clock import Clock
from synchub.core.ids import new_id
from synchub.db import Database
from synchub.events import store
from synchub.observability.metrics import record_event
from synchub.register.model import Register
from synchub.webhooks.service import webhook_destinations

MAX_CANDIDATES = 64


@dataclass
class Watermark:
    """A dispatcher's candidate watermarks: (last seq handed out, transaction id taken after)."""

    candidates: list[tuple[int, int]] = field(default_factory=list)
    noted: int = 0  # the highest seq ever noted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, seq: int, xid: int) -> None:
        """Remember a candidate; when too many wait on a long transaction, thin them out."""
        with self.lock:
            self.candidates.append((seq, xid))
            self.noted = max(self.noted, seq)
            if len(self.candidates) > MAX_CANDIDATES:  # fewer candidates only wait longer
                self.candidates = [*self.candidates[:-1:2], self.candidates[-1]]

    def settle(self, oldest_running: int) -> int | None:
        """The highest seq whose transactions have all ended; forget those candidates."""
        with self.lock:
            done = [seq for seq, xid in self.candidates if xid < oldest_running]
            self.candidates = [(s, x) for s, x in self.candidates if x >= oldest_running]
            return max(done) if done else None


@dataclass
class Dispatcher:
    """Dispatch state kept between passes (the watermark candidates, the safe seq so far)."""

    watermark: Watermark = field(default_factory=Watermark)
    safe_seq: int = 0


def dispatch_outbox(
    db: Database,
    register: Register,
    clock: Clock,
    *,
    limit: int = 500,
    state: Dispatcher | None = None,
    then: Callable[[Connection], int] | None = None,
    notify_as: str | None = None,
) -> int:
    """Create the deliveries for undispatched outbox events; return how many events moved.

    `then` runs in the same transaction once deliveries exist (a worker claims its share
    there, saving a commit before the first attempt) and says how many it took. On
    PostgreSQL, with `notify_as`, deliveries left for others wake the listening workers when
    the transaction commits (ADR 0014); the payload lets the sender skip its own notice.
    """
    state = state or Dispatcher()
    up_to: int | None = None
    with db.write() as conn:
        if not db.is_sqlite:
            if not try_lock_dispatch(conn):
                return 0  # another dispatcher is at work; it keeps the order
            up_to = _advance_watermark(conn, state)
        events = store.undispatched(conn, limit=limit, up_to=up_to)
        if not events:
            return 0
        now = clock.now()
        hooks = webhook_destinations(conn, events)  # partner endpoints whose filter matches
        rows = [
            _delivery(event, destination, now, held=held)
            for event in events
            for destination, held in [
                *((name, False) for name in register.destinations_for(event["type"])),
                *hooks[event["id"]],  # a disabled endpoint's: recorded, held (ADR 0009)
            ]
        ]
        store.insert_deliveries(conn, rows)
        store.mark_dispatched(conn, [e["seq"] for e in events], at=now)
        due = sum(1 for row in rows if row["status"] == "pending")
        taken = then(conn) if then is not None and due else 0
        if notify_as is not None and not db.is_sqlite and taken < due:
            store.notify_work(conn, payload=notify_as)
    # Committed: each outbox event is dispatched once, so counting here counts every event
    # written exactly once, and never one whose transaction rolled back (ADR 0013).
    for event in events:
        record_event(str(event["type"]))
    return len(events)


def _advance_watermark(conn: Connection, state: Dispatcher) -> int:
    """Note the last seq handed out with this transaction's id (taken now, after it), then
    settle: candidates whose id is at most the oldest other running transaction's are safe
    (this transaction's own id is never in its snapshot; every older id has ended)."""
    last = last_outbox_seq(conn)
    if last is not None and last > state.watermark.noted:
        state.watermark.note(last, new_transaction_id(conn))
    settled = state.watermark.settle(oldest_running_transaction(conn) + 1)
    state.safe_seq = max(state.safe_seq, settled or 0)
    return state.safe_seq


# -- PostgreSQL: the dispatcher's lock and the outbox watermark -----------------------------

DISPATCH_LOCK = 0x73796E6368756201


def try_lock_dispatch(conn: Connection) -> bool:
    """Take the dispatcher's lock until this transaction ends; False if another holds it."""
    query = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
    return bool(conn.execute(query, {"key": DISPATCH_LOCK}).scalar_one())


def last_outbox_seq(conn: Connection) -> int | None:
    """The last sequence number handed out to any transaction, committed or not."""
    query = sa.text(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence('outbox_events', 'seq')::regclass)"
    )
    value = conn.execute(query).scalar_one()
    return None if value is None else int(value)


def new_transaction_id(conn: Connection) -> int:
    """This transaction's id, taken now (later than any taken before this call)."""
    return int(conn.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one())


# The oldest transaction still running in this database (other databases on the server never
# write our outbox, so their long transactions must not hold dispatch back); with none, the
# snapshot's xmax, below which every transaction has ended.
_OLDEST_RUNNING = sa.text("""
WITH snap AS (SELECT pg_current_snapshot() AS s)
SELECT COALESCE(
  (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
   WHERE xid(x) IN (SELECT backend_xid FROM pg_stat_activity
                    WHERE datname = current_database() AND backend_xid IS NOT NULL)),
  (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap))
""")


def oldest_running_transaction(conn: Connection) -> int:
    """Every transaction of this database with a smaller id has committed or rolled back."""
    return int(conn.execute(_OLDEST_RUNNING).scalar_one())


def _delivery(
    event: dict[str, object], destination: str, now: datetime, *, held: bool = False
) -> dict[str, object]:
    delivery_id = new_id("delivery")
    return {
        "id": delivery_id,
        "workspace": event["workspace"],
        "event_id": event["id"],
        "event_seq": event["seq"],
        "event_type": event["type"],
        "destination": destination,
        "aggregate_id": event["aggregate_id"],
        "status": "held" if held else "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "idempotency_key": f"synchub:{delivery_id}",
        "created_at": now,
    }
