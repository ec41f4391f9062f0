"""Canonical customer changes -> HubSpot contacts (and their companies), with billing properties.

HubSpot has no Idempotency-Key: writes are upserts keyed on a unique property (the contact's
email, the company's `synchub_account_id`) or updates by the HubSpot id held in the crosswalk,
so repeating a delivery changes nothing. Each write is the customer's whole snapshot, so one
older than the snapshot HubSpot already holds (a replay of an old delivery) is not sent at
all: the stale-write guard (ADR 0021).
"""

from __future__ import annotations

from typing import Any

from synchub.connectors.base import Attempt, Delivered, Link, OutboundEvent
from synchub.connectors.hubspot.client import HubSpotClient
from synchub.core.entities import is_entitled
from synchub.core.errors import RejectedError

FREE_MAIL = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "yahoo.com",
        "icloud.com",
        "xtra.co.nz",
        "bigpond.com",
    }
)


def split_name(name: str | None) -> tuple[str, str]:
    """First name and the rest; HubSpot keeps them apart."""
    if not name:
        return "", ""
    first, _, rest = name.partition(" ")
    return first, rest


def contact_properties(customer: dict[str, Any]) -> dict[str, str]:
    """HubSpot contact properties for a canonical customer (all values are strings)."""
    first, last = split_name(customer.get("name"))
    status = customer.get("billing_status") or "none"
    return {
        "email": customer.get("email") or "",
        "firstname": first,
        "lastname": last,
        "phone": customer.get("phone") or "",
        "company": customer.get("company_name") or "",
        "synchub_customer_id": customer["id"],
        "synchub_billing_status": status,
        "synchub_entitled": "true" if is_entitled(status) else "false",
    }


def company_key(customer: dict[str, Any]) -> tuple[str, str] | None:
    """(account id, domain) for the customer's company, or None for people without one."""
    email = customer.get("email") or ""
    domain = email.rpartition("@")[2]
    if not customer.get("company_name") or not domain or domain in FREE_MAIL:
        return None
    return f"dom:{domain}", domain


class HubSpotDestination:
    """Keeps one HubSpot contact per canonical customer."""

    def __init__(self, name: str, client: HubSpotClient) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> HubSpotClient:
        """The vendor client (reconciliation reads through it)."""
        return self._client

    def snapshot_ids(self, event: OutboundEvent) -> list[str]:
        """The records whose snapshots a delivery writes here: the customer (ADR 0021)."""
        customer = event.payload.get("object") or {}
        return [customer["id"]] if event.type.startswith("customer.") and "id" in customer else []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Upsert the customer's contact (and company) with its current billing properties."""
        if not event.type.startswith("customer."):
            raise RejectedError(f"hubspot does not take {event.type}")
        customer = event.payload["object"]
        if event.superseded(customer["id"]):  # an upsert has no version check: never roll back
            return Delivered(f"superseded: hubspot already has a newer snapshot of customer "
                             f"{customer['id']}", superseded=True)  # fmt: skip
        if not customer.get("email"):
            raise RejectedError("a HubSpot contact needs an email address")
        props = contact_properties(customer)
        known = event.links.get(customer["id"])
        tp = event.traceparent
        if known:
            contact = self._client.update("contacts", known, props, tp)
        else:
            contact = self._client.upsert(
                "contacts",
                id_property="email",
                id_value=props["email"],
                properties=props,
                traceparent=tp,
            )
        links = [Link("customer", customer["id"], str(contact["id"]))]
        company = company_key(customer)
        if company:
            account_id, domain = company
            record = self._client.upsert(
                "companies",
                id_property="synchub_account_id",
                id_value=account_id,
                properties={
                    "name": customer["company_name"],
                    "domain": domain,
                    "synchub_account_id": account_id,
                },
                traceparent=tp,
            )
            self._client.associate("contact", str(contact["id"]), "company", str(record["id"]), tp)
        return Delivered(summary=f"contact {contact['id']}", links=links, applied=[customer["id"]])
