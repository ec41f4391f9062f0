"""Fan-out: one delivery per subscribed destination for each outbox event."""

from __future__ import annotations

from datetime import datetime

from synchub.core.clock import Clock
from synchub.core.ids import new_id
from synchub.db import Database
from synchub.events import store
from synchub.register.model import Register


def dispatch_outbox(db: Database, register: Register, clock: Clock, *, limit: int = 500) -> int:
    """Create the deliveries for undispatched outbox events; return how many events moved."""
    with db.write() as conn:
        events = store.undispatched(conn, limit=limit)
        if not events:
            return 0
        now = clock.now()
        rows = [
            _delivery(event, destination, now)
            for event in events
            for destination in register.destinations_for(event["type"])
        ]
        store.insert_deliveries(conn, rows)
        store.mark_dispatched(conn, [e["seq"] for e in events], at=now)
    return len(events)


def _delivery(event: dict[str, object], destination: str, now: datetime) -> dict[str, object]:
    delivery_id = new_id("delivery")
    return {
        "id": delivery_id,
        "workspace": event["workspace"],
        "event_id": event["id"],
        "event_seq": event["seq"],
        "event_type": event["type"],
        "destination": destination,
        "aggregate_id": event["aggregate_id"],
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "idempotency_key": f"synchub:{delivery_id}",
        "created_at": now,
    }
