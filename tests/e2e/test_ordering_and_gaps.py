"""Events out of order, events about things not seen yet, ties and lost responses."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from synchub.connectors.fault import Fault
from synchub.ingest.store import inbox_events
from synchub.mdm.store import GOLDEN
from tests.harness import Harness


def _golden(h: Harness, entity: str) -> list[dict[str, object]]:
    with h.hub.db.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(GOLDEN[entity])).mappings()]


def _bodies(h: Harness) -> list[bytes]:
    pending, h.boxes.stripe.outbox = h.boxes.stripe.outbox, []
    return [json.dumps(p.event).encode() for p in pending]


def test_an_older_update_arriving_late_does_not_overwrite_newer_state(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="a@b.nz", name="First", currency="nzd")
    harness.deliver_stripe()
    stripe.advance(timedelta(minutes=1))
    stripe.update_customer(customer["id"], name="Second")
    stripe.advance(timedelta(minutes=1))
    stripe.update_customer(customer["id"], name="Third")
    second, third = _bodies(harness)
    harness.post_event(third)
    harness.post_event(second)
    harness.settle()
    [golden] = _golden(harness, "customer")
    assert golden["name"] == "Third"
    contact = harness.boxes.hubspot.contacts()[0]
    assert (contact["firstname"], contact["lastname"]) == ("Third", "")


def test_a_canceled_subscription_never_comes_back_on_a_stale_event(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="a@b.nz", name="A", currency="nzd")
    price = stripe.create_price(nickname="Starter", unit_amount=4900, currency="nzd")
    sub = stripe.create_subscription(customer["id"], price["id"], trial_days=14)
    harness.deliver_stripe()
    stripe.advance(timedelta(hours=1))
    stripe.set_subscription_status(sub["id"], "active")
    stripe.advance(timedelta(hours=1))
    stripe.cancel_subscription(sub["id"])
    activated, canceled = _bodies(harness)
    harness.post_event(canceled)
    harness.post_event(activated)
    harness.settle()
    [golden] = _golden(harness, "subscription")
    assert golden["status"] == "canceled"
    assert harness.boxes.product.accounts[golden["customer_id"]]["entitled"] is False


def test_an_invoice_before_its_customer_fetches_the_customer(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="late@b.nz", name="Late Customer", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Setup", 1, 2500)])
    stripe.pay_invoice(invoice["id"])
    bodies = _bodies(harness)
    for body in reversed(bodies):  # invoice.paid first, customer.created last
        harness.post_event(body)
    harness.settle()
    [golden] = _golden(harness, "customer")
    assert golden["email"] == "late@b.nz"
    [inv] = _golden(harness, "invoice")
    assert (inv["status"], inv["total_minor"], inv["currency"]) == ("paid", 2500, "NZD")
    assert ("GET", f"/v1/customers/{customer['id']}") in stripe.requests
    [xero_invoice] = harness.boxes.xero.invoices.values()
    assert xero_invoice["Status"] == "PAID"


def test_without_a_stripe_client_a_gap_is_parked_not_dropped(harness: Harness) -> None:
    reader = harness.hub.readers["stripe"]
    reader._client = None  # type: ignore[attr-defined]  # an account with no API key configured
    reader.can_fetch = False  # type: ignore[attr-defined]
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="p@b.nz", name="Parked", currency="nzd")
    stripe.create_invoice(customer["id"], currency="nzd", lines=[("Setup", 1, 100)])
    created, *invoice_events = _bodies(harness)
    for body in invoice_events:
        harness.post_event(body)
    harness.worker.run_pass()
    with harness.hub.db.read() as conn:
        statuses = conn.execute(sa.select(inbox_events.c.status)).scalars().all()
    assert set(statuses) == {"parked"}
    harness.post_event(created)
    harness.settle()
    with harness.hub.db.read() as conn:
        statuses = conn.execute(sa.select(inbox_events.c.status)).scalars().all()
    assert set(statuses) == {"processed"}
    [inv] = _golden(harness, "invoice")
    assert inv["status"] == "open"


def test_a_lost_xero_response_does_not_create_a_second_invoice(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="x@b.nz", name="X", currency="nzd")
    harness.deliver_stripe()
    harness.boxes.xero.faults.add(
        Fault(apply_then_fail=True, timeout=True, method="POST", path=r"/Invoices$")
    )
    stripe.advance(timedelta(minutes=5))
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Work", 2, 3000)])
    stripe.advance(timedelta(minutes=5))
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()
    assert harness.boxes.xero.faults.injected == 1
    [only] = harness.boxes.xero.invoices.values()
    assert (only["Total"], only["Status"], len(harness.boxes.xero.payments)) == (30, "PAID", 1)


def test_same_second_events_are_settled_by_reading_the_current_object(
    harness: Harness,
) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="t@b.nz", name="Tie", currency="nzd")
    harness.deliver_stripe()
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Work", 1, 900)])
    stripe.pay_invoice(invoice["id"])  # created, finalized, charge, paid: all in one second
    bodies = _bodies(harness)
    for body in reversed(bodies):
        harness.post_event(body)
    harness.settle()
    [inv] = _golden(harness, "invoice")
    assert inv["status"] == "paid"
