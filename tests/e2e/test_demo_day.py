"""The whole demo day, delivered twice: one record per customer everywhere, exact totals,
nothing lost, nothing doubled."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from synchub.core.money import parse_decimal
from synchub.demo.consistency import check
from synchub.demo.scenario import run_day
from synchub.events.store import deliveries
from tests.harness import Harness


def test_the_demo_day_twice_leaves_one_record_per_customer_everywhere(harness: Harness) -> None:
    run_day(harness.boxes, harness.deliver_stripe)
    first_pass = len(harness.posted)
    for body in list(harness.posted):  # the whole day's traffic again, byte for byte
        assert harness.post_event(body).json()["duplicate"] is True
    harness.settle()

    stripe = harness.boxes.stripe.objects
    emails = [c["email"].strip().casefold() for c in stripe["customers"].values()]
    hubspot = Counter(c["email"] for c in harness.boxes.hubspot.contacts())
    assert hubspot == Counter(emails)  # exactly one HubSpot contact per Stripe customer

    xero = harness.boxes.xero
    numbers = Counter(c.get("ContactNumber") for c in xero.contacts.values())
    del numbers[None]  # the contact the accountant made by hand
    assert len(numbers) == len(emails) - 1
    assert set(numbers.values()) == {1}

    by_reference = {i["Reference"]: i for i in xero.invoices.values()}
    assert len(by_reference) == len(xero.invoices)
    for invoice in stripe["invoices"].values():
        found = by_reference[invoice["number"]]
        total = parse_decimal(str(found["Total"]), found["CurrencyCode"])
        assert (total.amount_minor, total.currency) == (
            invoice["total"],
            invoice["currency"].upper(),
        )
        assert found["Status"] == "PAID"
    assert Counter(p["Invoice"]["InvoiceID"] for p in xero.payments.values()) == Counter(
        {i["InvoiceID"]: 1 for i in xero.invoices.values()}
    )
    assert xero.idempotency_mismatches == 0

    with harness.hub.db.read() as conn:
        states = Counter(conn.execute(sa.select(deliveries.c.status)).scalars())
        per_event = conn.execute(
            sa.select(deliveries.c.event_id, deliveries.c.destination, sa.func.count())
            .group_by(deliveries.c.event_id, deliveries.c.destination)
            .having(sa.func.count() > 1)
        ).all()
    assert set(states) == {"succeeded", "dead"}
    assert states["dead"] == 1
    assert per_event == []
    assert harness.boxes.product.duplicates == 0
    assert first_pass == len(harness.posted)

    verdict = check(harness.hub, harness.boxes)
    assert verdict.consistent, verdict.disagreements + verdict.duplicates
    assert len(verdict.explained) == 1
