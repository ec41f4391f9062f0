"""HubSpot's current view of a customer: the contact's properties in canonical words."""

from __future__ import annotations

from typing import Any

from synchub.connectors.hubspot.client import HubSpotClient
from synchub.core.errors import RejectedError

# The contact properties synchub writes (push.contact_properties) and reads back.
READ_PROPERTIES = ("email", "firstname", "lastname", "phone", "company", "synchub_billing_status")


def customer_fields(properties: dict[str, Any]) -> dict[str, Any]:
    """Canonical customer fields from a contact's properties (HubSpot keeps names split)."""
    name = " ".join(p for p in (properties.get("firstname"), properties.get("lastname")) if p)
    status = properties.get("synchub_billing_status")
    return {
        "email": properties.get("email") or None,
        "name": name or None,
        "phone": properties.get("phone") or None,
        "company_name": properties.get("company") or None,
        "billing_status": None if status in (None, "", "none") else status,
    }


class HubSpotView:
    """Reads contacts by their HubSpot id (from the crosswalk)."""

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    def customer(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's canonical fields, or None when HubSpot has no such contact."""
        try:
            contact = self._client.get("contacts", contact_id, properties=READ_PROPERTIES)
        except RejectedError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise
        if contact.get("archived"):
            return None
        return customer_fields(contact.get("properties") or {})
