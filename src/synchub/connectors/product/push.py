"""Canonical billing changes -> entitlement callbacks to the product ("unlock account").

The body follows Standard Webhooks: `{"type", "timestamp", "data"}`; `webhook-id` is
`msg_` + the event's ULID, the same on every retry, so the product can de-duplicate. Each
callback carries the customer's whole entitlement (billing status, entitled), so one older
than a callback the product already got for that customer (a replay of an old delivery) is
not sent: it would lock or unlock the account wrongly (the stale-write guard, ADR 0021).
"""

from __future__ import annotations

from typing import Any

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.connectors.product.client import ProductClient
from synchub.core.clock import isoformat_z
from synchub.core.entities import is_entitled
from synchub.core.errors import RejectedError


def customer_of(event: OutboundEvent) -> str | None:
    """The customer whose entitlement a billing event's callback carries."""
    customer = event.payload.get("customer") or {}
    obj = event.payload.get("object", {})
    found = customer.get("id") or obj.get("customer_id")
    return str(found) if found else None


def callback_body(event: OutboundEvent) -> dict[str, Any]:
    """The callback for one billing event: who, whether they may use the product, and why."""
    obj = event.payload.get("object", {})
    customer = event.payload.get("customer") or {}
    customer_id = customer_of(event)
    if not customer_id:
        raise RejectedError(f"{event.type} {event.subject} names no customer")
    status = customer.get("billing_status")
    return {
        "type": event.type,
        "timestamp": isoformat_z(event.time),
        "data": {
            "customer_id": customer_id,
            "billing_status": status,
            "entitled": is_entitled(status),
            "object_id": obj.get("id"),
            "status": obj.get("status"),
        },
    }


class ProductDestination:
    """Tells the product when an account should be unlocked or locked."""

    def __init__(self, name: str, client: ProductClient) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> ProductClient:
        """The vendor client (reconciliation reads through it)."""
        return self._client

    def snapshot_ids(self, event: OutboundEvent) -> list[str]:
        """The records whose snapshots a delivery writes here: the customer's entitlement."""
        customer_id = customer_of(event)
        return [customer_id] if customer_id else []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """POST the signed callback; the product answers 2xx once it has applied it."""
        body = callback_body(event)
        customer_id = body["data"]["customer_id"]
        if event.superseded(customer_id):
            return Delivered(f"superseded: the product already has a newer entitlement of "
                             f"customer {customer_id}", superseded=True)  # fmt: skip
        self._client.post(
            body, msg_id="msg_" + event.id.partition("_")[2], traceparent=event.traceparent
        )
        verb = "unlock" if body["data"]["entitled"] else "lock"
        return Delivered(f"{verb} {customer_id}", applied=[customer_id])
