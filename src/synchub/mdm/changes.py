"""Golden-record changes as canonical events, written to the outbox in the caller's
transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from synchub.core.entities import AGGREGATE_REF, derive_billing_status, is_entitled
from synchub.events.model import derive_events
from synchub.events.outbox import EventContext, emit_event
from synchub.mdm import store


def aggregate_of(entity: str, record: dict[str, Any]) -> str:
    """The id a record's events are ordered by (its customer's, else its own)."""
    ref = AGGREGATE_REF.get(entity)
    return str(record[ref]) if ref and record.get(ref) else str(record["id"])


def _customer_summary(conn: Connection, customer_id: str | None) -> dict[str, Any] | None:
    if not customer_id:
        return None
    customer = store.get_golden(conn, "customer", customer_id) or {}
    status = customer.get("billing_status")
    return {
        "id": customer_id,
        "email": customer.get("email"),
        "name": customer.get("name"),
        "company_name": customer.get("company_name"),
        "billing_status": status,
        "entitled": is_entitled(status),
    }


def emit_changes(
    conn: Connection,
    ctx: EventContext,
    entity: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    changed: list[str],
) -> list[str]:
    """Write the canonical events that describe one golden record's change; their types."""
    types = derive_events(entity, before, after, changed)
    extra: dict[str, Any] = {}
    if entity == "invoice":
        extra["lines"] = [
            {k: v for k, v in ln.items() if k not in ("workspace",)}
            for ln in store.lines_of(conn, after["id"])
        ]
    if after.get("customer_id"):
        extra["customer"] = _customer_summary(conn, after["customer_id"])
    for event_type in types:
        emit_event(
            conn,
            ctx,
            event_type=event_type,
            record=after,
            aggregate_id=aggregate_of(entity, after),
            changed=changed,
            extra=extra,
        )
    return types


def refresh_billing_status(conn: Connection, ctx: EventContext, customer_id: str) -> list[str]:
    """Re-derive a customer's billing status from their subscriptions; emit if it moved."""
    customer = store.get_golden(conn, "customer", customer_id)
    if customer is None:
        return []
    status = derive_billing_status(store.subscription_statuses(conn, customer_id=customer_id))
    if customer.get("billing_status") == status:
        return []
    store.update_golden(
        conn, "customer", customer_id, {"billing_status": status, "updated_at": ctx.now}
    )
    after = store.get_golden(conn, "customer", customer_id) or {}
    emit_event(
        conn,
        ctx,
        event_type="customer.updated",
        record=after,
        aggregate_id=customer_id,
        changed=["billing_status"],
    )
    return ["customer.updated"]
