"""Through every hop (Stripe webhook → inbox → golden record → outbox → delivery to Xero) text
stays NFC with its macrons, due dates stay the organisation's calendar date, and a refund
becomes its own golden record (issue 5, ADR 0017)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from synchub.events.store import outbox_events
from synchub.mdm import store
from tests.e2e.test_public_api import _client, _token
from tests.harness import Harness

NAME = "Ngāti Pōneke Whānau Trust"
CITY = "Ōtaki"


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _events(harness: Harness, event_type: str) -> list[dict[str, Any]]:
    with harness.hub.db.read() as conn:
        query = sa.select(outbox_events.c.payload).where(outbox_events.c.type == event_type)
        return [dict(p) for (p,) in conn.execute(query)]


def _golden(harness: Harness, entity: str) -> list[dict[str, Any]]:
    with harness.hub.db.read() as conn:
        return store.list_golden(conn, entity, workspace=harness.hub.register.workspace)


def test_macrons_survive_ingest_golden_outbox_and_delivery(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="kaitiaki@whanau.nz", name=_nfd(NAME), currency="nzd")
    customer["address"].update(line1=_nfd("12 Te Rauparaha Street"), city=_nfd(CITY))
    harness.deliver_stripe()
    stripe.update_customer(customer["id"], address=customer["address"])
    harness.deliver_stripe()

    [golden] = _golden(harness, "customer")
    assert (golden["name"], golden["address_city"]) == (NAME, CITY)
    payloads = _events(harness, "customer.created") + _events(harness, "customer.updated")
    assert payloads[0]["object"]["name"] == NAME
    assert any(p["object"]["address_city"] == CITY for p in payloads)
    [contact] = harness.boxes.xero.contacts.values()
    assert contact["FirstName"] + " " + contact["LastName"] == NAME
    assert unicodedata.is_normalized("NFC", contact["Name"])
    assert contact["Name"] == NAME


def test_a_due_date_at_2330_in_auckland_stays_that_date_all_the_way_to_xero(
    harness: Harness,
) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="due@date.nz", name="Due Date", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Pro", 1, 4900)])
    # 23:30 on 14 February in Auckland (NZDT) is 10:30 UTC on the 14th.
    invoice["due_date"] = int(datetime(2027, 2, 14, 10, 30, tzinfo=UTC).timestamp())
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()

    [golden] = _golden(harness, "invoice")
    assert golden["due_date"] == date(2027, 2, 14)
    assert {p["object"]["due_date"] for p in _events(harness, "invoice.paid")} == {"2027-02-14"}
    [sent] = harness.boxes.xero.invoices.values()
    assert sent["DueDate"] == "2027-02-14"


def test_a_stripe_refund_becomes_a_golden_refund_of_the_payment(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="r@fund.nz", name="Refund Me", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Pro", 1, 4900)])
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()
    [charge] = stripe.charges_of(customer["id"])
    stripe.refund_charge(charge["id"], amount=1900)
    harness.deliver_stripe()

    [payment] = _golden(harness, "payment")
    [refund] = _golden(harness, "refund")
    assert refund["id"].startswith("rfd_")
    assert refund["payment_id"] == payment["id"]
    assert refund["customer_id"] == payment["customer_id"]
    assert (refund["amount_minor"], refund["currency"], refund["status"]) == (
        1900,
        "NZD",
        "succeeded",
    )
    assert refund["reason"] == "requested_by_customer"
    [created] = _events(harness, "refund.created")
    assert created["object"]["amount_minor"] == 1900
    assert payment["amount_refunded_minor"] == 1900
    auth = _token(harness, _client(harness, scopes="read:refunds"))
    response = harness.http.get(f"/v1/refunds/{refund['id']}", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["payment_id"] == payment["id"]
