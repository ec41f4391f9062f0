"""Xero's current view of customers (contacts) and invoices, in canonical words."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from synchub.connectors.xero.client import XeroClient
from synchub.core.errors import NotFoundError
from synchub.core.money import parse_decimal

INVOICE_STATUS = {
    "DRAFT": "draft",
    "SUBMITTED": "draft",
    "AUTHORISED": "open",
    "PAID": "paid",
    "VOIDED": "void",
    "DELETED": "void",
}


def contact_fields(contact: dict[str, Any]) -> dict[str, Any]:
    """Canonical customer fields a Xero contact holds (its Name is the company's)."""
    name = " ".join(p for p in (contact.get("FirstName"), contact.get("LastName")) if p)
    return {"email": contact.get("EmailAddress") or None, "name": name or None}


def invoice_fields(invoice: dict[str, Any], currency: str) -> dict[str, Any]:
    """Canonical invoice fields: status, and the total in minor units (exact, from Decimal)."""
    code = str(invoice.get("CurrencyCode") or currency)
    total = invoice.get("Total")
    return {
        "status": INVOICE_STATUS.get(str(invoice.get("Status")), str(invoice.get("Status"))),
        "currency": code,
        "total_minor": None
        if total is None
        else parse_decimal(Decimal(str(total)), code).amount_minor,
    }


class XeroView:
    """Reads contacts and invoices by their Xero ids (from the crosswalk)."""

    def __init__(self, client: XeroClient) -> None:
        self._client = client

    def customer(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's canonical fields, or None when it is gone or archived."""
        try:
            contact = self._client.get_contact(contact_id)
        except NotFoundError:
            return None
        if contact.get("ContactStatus") == "ARCHIVED":
            return None
        return contact_fields(contact)

    def invoice(self, invoice_id: str, currency: str) -> dict[str, Any] | None:
        """The invoice's canonical fields, or None when Xero has no such invoice."""
        try:
            return invoice_fields(self._client.get_invoice(invoice_id), currency)
        except NotFoundError:
            return None
