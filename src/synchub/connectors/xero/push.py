"""Canonical customers and invoices -> Xero contacts, invoices and payments.

Every write carries `Idempotency-Key: synchub:{delivery_id}:{operation}`, so a retried
delivery (even one whose first response was lost) never creates a second contact, invoice
or payment. Updates go to the Xero id held in the crosswalk.

The stale-write guard (ADR 0021): a contact is the customer's whole snapshot, so one older
than the snapshot Xero already holds (a replay of an old delivery) is not written. Invoices,
voids and payments are not snapshots: they are created once (looked up first, keyed) and only
move forward, so an old invoice event still makes its payment, with the original key.
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


NAME_TAKEN = "is already assigned to another contact"


def contact_name(customer: dict[str, Any]) -> str:
    """The name a customer's Xero contact goes by: the company, else the person."""
    return str(customer.get("company_name") or customer.get("name") or customer.get("email")
               or customer["id"])  # fmt: skip


def contact_body(customer: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """A Xero contact for a canonical customer (ContactNumber is our canonical id)."""
    first, _, last = (customer.get("name") or "").partition(" ")
    return {
        "Name": name or contact_name(customer),
        "ContactNumber": customer["id"],
        "EmailAddress": customer.get("email") or "",
        "FirstName": first,
        "LastName": last,
    }


def _amount(minor: int, currency: str) -> Decimal:
    return Money(minor, currency).to_decimal()


def _item(
    description: str, quantity: int, amount_minor: int, currency: str, account: str
) -> dict[str, Any]:
    if quantity <= 0 or amount_minor % quantity:
        description, quantity = f"{quantity} × {description}", 1
    return {"Description": description, "Quantity": Decimal(quantity),
            "UnitAmount": _amount(amount_minor // quantity, currency),
            "AccountCode": account, "TaxAmount": Decimal(0)}  # fmt: skip


def invoice_lines(
    invoice: dict[str, Any], lines: list[dict[str, Any]], *, sales_account: str
) -> tuple[str, list[dict[str, Any]]]:
    """Xero's LineAmountTypes and line items, adding up exactly to the source's total.

    Stripe line amounts are before discounts, and include GST when prices are tax-inclusive.
    Inclusive lines are sent as `Inclusive`; otherwise discounts and credits become one
    adjustment line so that lines + tax = total, never a silently different Xero total.
    """
    currency, total = invoice["currency"], invoice["total_minor"]
    tax = invoice.get("tax_minor") or 0
    lines = lines or [{"description": "Invoice total", "quantity": 1,
                       "amount_minor": invoice["subtotal_minor"]}]  # fmt: skip
    items = [
        _item(
            ln.get("description") or "Subscription",
            ln.get("quantity") or 1,
            ln.get("amount_minor") or 0,
            currency,
            sales_account,
        )
        for ln in lines
    ]
    line_sum = sum(ln.get("amount_minor") or 0 for ln in lines)
    if tax and line_sum == total:
        kind = "Inclusive"
    else:
        kind = "Exclusive"
        if line_sum != total - tax:
            items.append(_item("Discounts and credits", 1, total - tax - line_sum, currency,
                               sales_account))  # fmt: skip
    if tax:
        items[0]["TaxAmount"] = _amount(tax, currency)
    return kind, items


def _reference(invoice: dict[str, Any]) -> str:
    return str(invoice.get("number") or invoice["id"])


def _check_total(saved: dict[str, Any], invoice: dict[str, Any]) -> None:
    expected = _amount(invoice["total_minor"], invoice["currency"])
    if Decimal(str(saved.get("Total"))) != expected:
        raise RejectedError(
            f"Xero computed a total of {saved.get('Total')} for invoice {saved.get('InvoiceID')}"
            f" but the source says {expected} {invoice['currency']}: check its tax settings"
        )


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

    @property
    def client(self) -> XeroClient:
        """The vendor client (reconciliation reads through it)."""
        return self._client

    def snapshot_ids(self, event: OutboundEvent) -> list[str]:
        """The records whose snapshots a delivery may write here: the customer (of a customer
        event, or the one an invoice event carries, for a contact not linked yet)."""
        if event.type.startswith("customer."):
            found = (event.payload.get("object") or {}).get("id")
        else:
            obj = event.payload.get("object") or {}
            found = (event.payload.get("customer") or {}).get("id") or obj.get("customer_id")
        return [str(found)] if found else []

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Apply one customer or invoice event in Xero."""
        if event.type.startswith("customer."):
            customer = event.payload["object"]
            if event.superseded(customer["id"]):
                return Delivered(f"superseded: xero already has a newer snapshot of customer "
                                 f"{customer['id']}", superseded=True)  # fmt: skip
            contact_id = self._contact(customer, event, attempt)
            return Delivered(f"contact {contact_id}",
                             [Link("customer", customer["id"], contact_id)],
                             applied=[customer["id"]])  # fmt: skip
        if event.type in INVOICE_EVENTS:
            return self._invoice(event, attempt)
        raise RejectedError(f"xero does not take {event.type}")

    def _contact(self, customer: dict[str, Any], event: OutboundEvent, attempt: Attempt) -> str:
        """Create or update the customer's contact; look before creating, never duplicate."""
        contact_id = event.links.get(customer["id"])
        if contact_id is None:  # a create whose response was lost (even days ago) is found here
            ours = self._client.find("Contacts", "ContactNumber", customer["id"])
            contact_id = str(ours[0]["ContactID"]) if ours else None
        key, tp = f"{attempt.idempotency_key}:contact", event.traceparent
        name = self._free_name(customer, contact_id)
        try:
            saved = self._client.save_contact(contact_body(customer, name=name),
                                              contact_id=contact_id, idempotency_key=key,
                                              traceparent=tp)  # fmt: skip
        except RejectedError as exc:
            if NAME_TAKEN not in str(exc):
                raise
            # Another worker took the name between our look and our write: look again.
            name = self._free_name(customer, contact_id)
            saved = self._client.save_contact(contact_body(customer, name=name),
                                              contact_id=contact_id,
                                              idempotency_key=f"{key}:renamed",
                                              traceparent=tp)  # fmt: skip
        return str(saved["ContactID"])

    def _free_name(self, customer: dict[str, Any], contact_id: str | None) -> str:
        """A name no other active contact has (Xero requires it), or a clear refusal.

        Two synchub customers with one name are told apart by email. A contact someone made
        by hand in Xero is never taken over: whether it is this customer is a person's call.
        """
        name = contact_name(customer)
        taken = [
            c
            for c in self._client.find("Contacts", "Name", name)
            if c.get("ContactStatus", "ACTIVE") == "ACTIVE" and c["ContactID"] != contact_id
        ]
        if not taken:
            return name
        if all(str(c.get("ContactNumber") or "").startswith("cus_") for c in taken):
            return f"{name} ({customer.get('email') or customer['id']})"
        raise RejectedError(
            f"Xero already has a contact named {name!r} that synchub did not create "
            f"({taken[0]['ContactID']}): set its ContactNumber to {customer['id']} to link it "
            "to this customer, or rename one of them; then replay this delivery"
        )

    def _invoice(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        invoice = event.payload["object"]
        customer = event.payload.get("customer") or {"id": invoice["customer_id"]}
        links, applied = [], []
        contact_id = event.links.get(customer["id"])
        if contact_id is None and event.superseded(customer["id"]):
            # Xero holds a newer snapshot of this customer: use its contact, never rewrite it.
            ours = self._client.find("Contacts", "ContactNumber", customer["id"])
            contact_id = str(ours[0]["ContactID"]) if ours else None
            if contact_id is not None:
                links.append(Link("customer", customer["id"], contact_id))
        if contact_id is None:  # the customer's own delivery failed or has not run: make it now
            contact_id = self._contact(customer, event, attempt)
            links.append(Link("customer", customer["id"], contact_id))
            applied.append(customer["id"])
        key, tp = attempt.idempotency_key, event.traceparent
        saved = self._existing_invoice(invoice, event.links.get(invoice["id"]), contact_id)
        if saved is None:
            if invoice["status"] not in ("open", "paid"):
                return Delivered(f"nothing to send for a {invoice['status']} invoice", links,
                                 applied=applied)  # fmt: skip
            body = self._invoice_body(invoice, event.payload.get("lines") or [], contact_id,
                                      event.time)  # fmt: skip
            saved = self._client.save_invoice(
                body, invoice_id=None, idempotency_key=f"{key}:invoice", traceparent=tp
            )
            _check_total(saved, invoice)
        elif invoice["status"] == "void" and saved.get("Status") != "VOIDED":
            saved = self._client.save_invoice(
                {"Status": "VOIDED"},
                invoice_id=str(saved["InvoiceID"]),
                idempotency_key=f"{key}:void",
                traceparent=tp,
            )
        invoice_id = str(saved["InvoiceID"])
        links.append(Link("invoice", invoice["id"], invoice_id))
        summary = f"invoice {invoice_id} {saved.get('Status')}"
        if invoice["status"] == "paid" and Decimal(str(saved.get("AmountDue", "0"))) > 0:
            payment = self._client.create_payment(
                {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": self._bank},
                 "Date": self._date(invoice.get("paid_at"), event.time),
                 "Amount": Decimal(str(saved["AmountDue"])), "Reference": invoice["id"]},
                idempotency_key=f"{key}:payment", traceparent=tp,
            )  # fmt: skip
            summary += f", payment {payment['PaymentID']}"
        return Delivered(summary, links, applied=applied)

    def _existing_invoice(
        self, invoice: dict[str, Any], invoice_id: str | None, contact_id: str
    ) -> dict[str, Any] | None:
        """The Xero invoice for this one, by crosswalk or by our reference on that contact."""
        if invoice_id is not None:  # Xero refuses edits to approved invoices: read its state
            return self._client.get_invoice(invoice_id)
        found = [
            i
            for i in self._client.find("Invoices", "Reference", _reference(invoice))
            if (i.get("Contact") or {}).get("ContactID") == contact_id
        ]
        return found[0] if found else None

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
        kind, items = invoice_lines(invoice, lines, sales_account=self._sales)
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": contact_id},
            "Date": issued,
            "DueDate": invoice.get("due_date") or issued,
            "LineAmountTypes": kind,
            "Reference": _reference(invoice),
            "CurrencyCode": invoice["currency"],
            "Status": "AUTHORISED",
            "LineItems": items,
        }
