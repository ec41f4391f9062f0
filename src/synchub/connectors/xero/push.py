"""Canonical customers and invoices -> Xero contacts, invoices and payments.

Every write carries `Idempotency-Key: synchub:{delivery_id}:{operation}`, so a retried
delivery (even one whose first response was lost) never creates a second contact, invoice
or payment. Updates go to the Xero id held in the crosswalk.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from synchub.connectors.base import Attempt, Delivered, Link, OutboundEvent
from synchub.connectors.xero.client import XeroClient
from synchub.core.clock import local_date, to_utc
from synchub.core.errors import RejectedError
from synchub.core.money import Money

INVOICE_EVENTS = frozenset(
    {
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "invoice.payment_failed",
        "invoice.updated",
    }
)


def contact_body(customer: dict[str, Any]) -> dict[str, Any]:
    """A Xero contact for a canonical customer."""
    name = customer.get("name") or customer.get("email") or customer["id"]
    first, _, last = (customer.get("name") or "").partition(" ")
    body: dict[str, Any] = {
        "Name": name,
        "ContactNumber": customer["id"],
        "EmailAddress": customer.get("email") or "",
        "FirstName": first,
        "LastName": last,
    }
    if customer.get("company_name"):
        body["Name"] = customer["company_name"]
    return body


def _amount(minor: int, currency: str) -> Decimal:
    return Money(minor, currency).to_decimal()


def line_items(
    invoice: dict[str, Any], lines: list[dict[str, Any]], *, sales_account: str
) -> list[dict[str, Any]]:
    """Xero line items; quantities stay whole and amounts exact (no rounded unit prices)."""
    currency = invoice["currency"]
    items = []
    for line in lines or [
        {"description": "Invoice total", "quantity": 1, "amount_minor": invoice["subtotal_minor"]}
    ]:
        qty = line.get("quantity") or 1
        amount = line.get("amount_minor") or 0
        description = line.get("description") or "Subscription"
        if amount % qty:
            qty, description = 1, f"{line.get('quantity')} × {description}"
        items.append(
            {
                "Description": description,
                "Quantity": Decimal(qty),
                "UnitAmount": _amount(amount // qty, currency),
                "AccountCode": sales_account,
                "TaxAmount": Decimal(0),
            }
        )
    tax = invoice.get("tax_minor") or 0
    if tax and items:
        items[0]["TaxAmount"] = _amount(tax, currency)
    return items


class XeroDestination:
    """Keeps Xero's contacts, invoices and payments in step with the golden records."""

    def __init__(
        self,
        name: str,
        client: XeroClient,
        *,
        timezone: str,
        sales_account: str = "200",
        bank_account: str = "090",
    ) -> None:
        self.name = name
        self._client = client
        self._tz = timezone
        self._sales = sales_account
        self._bank = bank_account

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Apply one customer or invoice event in Xero."""
        if event.type.startswith("customer."):
            customer = event.payload["object"]
            contact_id = self._contact(customer, event, attempt)
            return Delivered(
                f"contact {contact_id}", [Link("customer", customer["id"], contact_id)]
            )
        if event.type in INVOICE_EVENTS:
            return self._invoice(event, attempt)
        raise RejectedError(f"xero does not take {event.type}")

    def _contact(self, customer: dict[str, Any], event: OutboundEvent, attempt: Attempt) -> str:
        saved = self._client.save_contact(
            contact_body(customer),
            contact_id=event.links.get(customer["id"]),
            idempotency_key=f"{attempt.idempotency_key}:contact",
            traceparent=event.traceparent,
        )
        return str(saved["ContactID"])

    def _invoice(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        invoice = event.payload["object"]
        customer = event.payload.get("customer") or {"id": invoice["customer_id"]}
        links = []
        contact_id = event.links.get(customer["id"])
        if contact_id is None:  # the customer's own delivery failed or has not run: make it now
            contact_id = self._contact(customer, event, attempt)
            links.append(Link("customer", customer["id"], contact_id))
        invoice_id = event.links.get(invoice["id"])
        key, tp = attempt.idempotency_key, event.traceparent
        if invoice_id is None:
            if invoice["status"] not in ("open", "paid"):
                return Delivered(f"nothing to send for a {invoice['status']} invoice", links)
            saved = self._client.save_invoice(
                self._invoice_body(
                    invoice, event.payload.get("lines") or [], contact_id, event.time
                ),
                invoice_id=None,
                idempotency_key=f"{key}:invoice",
                traceparent=tp,
            )
        elif invoice["status"] == "void":
            saved = self._client.save_invoice(
                {"Status": "VOIDED"},
                invoice_id=invoice_id,
                idempotency_key=f"{key}:void",
                traceparent=tp,
            )
        else:  # Xero refuses edits to approved invoices; read its state instead
            saved = self._client.get_invoice(invoice_id)
        invoice_id = str(saved["InvoiceID"])
        links.append(Link("invoice", invoice["id"], invoice_id))
        summary = f"invoice {invoice_id} {saved.get('Status')}"
        if invoice["status"] == "paid" and Decimal(str(saved.get("AmountDue", "0"))) > 0:
            payment = self._client.create_payment(
                {
                    "Invoice": {"InvoiceID": invoice_id},
                    "Account": {"Code": self._bank},
                    "Date": self._date(invoice.get("paid_at"), event.time),
                    "Amount": _amount(
                        invoice["amount_paid_minor"] or invoice["total_minor"], invoice["currency"]
                    ),
                    "Reference": invoice["id"],
                },
                idempotency_key=f"{key}:payment",
                traceparent=tp,
            )
            summary += f", payment {payment['PaymentID']}"
        return Delivered(summary, links)

    def _date(self, instant: str | None, fallback: datetime) -> str:
        """The calendar date of an instant in the organisation's time zone."""
        when = datetime.fromisoformat(instant.replace("Z", "+00:00")) if instant else fallback
        return local_date(to_utc(when), self._tz).isoformat()

    def _invoice_body(
        self,
        invoice: dict[str, Any],
        lines: list[dict[str, Any]],
        contact_id: str,
        event_time: datetime,
    ) -> dict[str, Any]:
        issued = self._date(invoice.get("issued_at"), event_time)
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": contact_id},
            "Date": issued,
            "DueDate": invoice.get("due_date") or issued,
            "LineAmountTypes": "Exclusive",
            "Reference": invoice.get("number") or invoice["id"],
            "CurrencyCode": invoice["currency"],
            "Status": "AUTHORISED",
            "LineItems": line_items(invoice, lines, sales_account=self._sales),
        }
