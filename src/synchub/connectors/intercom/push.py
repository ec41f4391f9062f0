"""Canonical customer changes -> Intercom contacts (role `user`), search-then-write.

Intercom has no idempotency key. The contact's `external_id` is the canonical customer id, so a
write is: the contact the crosswalk names (updated by id); else the contact search finds by
`external_id` (updated); else a new one (created). A retry after a lost answer finds the
contact the first attempt made. Intercom's search index lags a new contact by a little, so a
create can still meet the first attempt's contact: Intercom answers 409 naming it, and that
contact is updated instead. Either way one contact per customer. A write is the customer's
whole snapshot, so one older than the snapshot Intercom already holds (a replay) is not sent:
the stale-write guard (ADR 0021).
"""

from __future__ import annotations

from typing import Any

from synchub.connectors.base import Attempt, Delivered, Link, OutboundEvent
from synchub.connectors.intercom.client import ContactConflictError, IntercomClient
from synchub.core.errors import RejectedError

CUSTOM_ATTRIBUTES = ("company_name", "product_account_id", "billing_status")  # data attributes


def contact_body(customer: dict[str, Any]) -> dict[str, Any]:
    """The Intercom contact fields for a canonical customer (Intercom's custom attributes
    `company_name`, `product_account_id` and `billing_status` must exist in the workspace)."""
    body: dict[str, Any] = {"role": "user", "external_id": customer["id"]}
    for name in ("email", "name", "phone"):
        if customer.get(name) is not None:
            body[name] = customer[name]
    attrs = {n: customer[n] for n in CUSTOM_ATTRIBUTES if customer.get(n) is not None}
    if attrs:
        body["custom_attributes"] = attrs
    return body


class IntercomDestination:
    """Keeps one Intercom contact per canonical customer."""

    def __init__(self, name: str, client: IntercomClient) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> IntercomClient:
        """The vendor client (reconciliation and the webhook route read through it)."""
        return self._client

    def snapshot_ids(self, event: OutboundEvent) -> list[str]:
        """The records whose snapshots a delivery writes here: the customer (ADR 0021)."""
        customer = event.payload.get("object") or {}
        return [customer["id"]] if event.type.startswith("customer.") and "id" in customer else []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Write the customer's contact: by crosswalk id, else search on external_id, else
        create (a 409 on create names the contact to update)."""
        if not event.type.startswith("customer."):
            raise RejectedError(f"intercom does not take {event.type}")
        customer = event.payload["object"]
        if event.superseded(customer["id"]):
            return Delivered(f"superseded: intercom already has a newer snapshot of customer "
                             f"{customer['id']}", superseded=True)  # fmt: skip
        body = contact_body(customer)
        changes = {k: v for k, v in body.items() if k != "role"}  # a lead stays a lead
        tp = event.traceparent
        contact = self._update_known(event.links.get(customer["id"]), changes, tp)
        if contact is None:
            found = self._client.find_by_external_id(customer["id"], tp)
            if found is not None:
                contact = self._client.update_contact(str(found["id"]), changes, tp)
            else:
                contact = self._create(body, tp)
        links = [Link("customer", customer["id"], str(contact["id"]))]
        return Delivered(summary=f"contact {contact['id']}", links=links, applied=[customer["id"]])

    def _update_known(
        self, contact_id: str | None, body: dict[str, Any], tp: str | None
    ) -> dict[str, Any] | None:
        """Update the contact the crosswalk names; None when there is none or it is gone."""
        if not contact_id:
            return None
        try:
            return self._client.update_contact(contact_id, body, tp)
        except ContactConflictError:
            raise
        except RejectedError as exc:
            if exc.status in (404, 410):
                return None  # deleted or merged away: find or make the customer's contact
            raise

    def _create(self, body: dict[str, Any], tp: str | None) -> dict[str, Any]:
        try:
            return self._client.create_contact(body, tp)
        except ContactConflictError as exc:
            if exc.existing_id is None:
                raise
            existing = self._client.get_contact(exc.existing_id)
            if existing.get("external_id") not in (None, body["external_id"]):
                raise RejectedError(
                    f"intercom contact {exc.existing_id} has these details and belongs to "
                    "another external_id",
                    status=409,
                ) from exc
            changes = {k: v for k, v in body.items() if k != "role"}
            return self._client.update_contact(exc.existing_id, changes, tp)
