"""Xero receives exact totals, one contact per customer and never a duplicate invoice."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal

from synchub.connectors.fault import Fault
from synchub.connectors.xero.push import invoice_lines
from tests.harness import Harness


def _invoice(total: int, tax: int, lines: list[tuple[int, int]]) -> tuple[dict, list[dict]]:
    invoice = {
        "currency": "NZD",
        "total_minor": total,
        "tax_minor": tax,
        "subtotal_minor": sum(a for _, a in lines),
    }
    return invoice, [{"description": "x", "quantity": q, "amount_minor": a} for q, a in lines]


def _sum(items: list[dict]) -> Decimal:
    return sum((i["Quantity"] * i["UnitAmount"] for i in items), Decimal(0))


def test_discounts_become_an_adjustment_line_so_the_total_is_exact() -> None:
    kind, items = invoice_lines(*_invoice(9000, 0, [(1, 10000)]), sales_account="200")
    assert kind == "Exclusive"
    assert _sum(items) == Decimal("90.00")
    assert items[-1]["Description"] == "Discounts and credits"


def test_tax_inclusive_prices_are_sent_as_inclusive() -> None:
    kind, items = invoice_lines(*_invoice(10000, 1304, [(1, 10000)]), sales_account="200")
    assert kind == "Inclusive"
    assert _sum(items) == Decimal("100.00")
    assert items[0]["TaxAmount"] == Decimal("13.04")


def test_tax_exclusive_prices_add_the_tax() -> None:
    kind, items = invoice_lines(*_invoice(11500, 1500, [(2, 10000)]), sales_account="200")
    assert kind == "Exclusive"
    assert _sum(items) + items[0]["TaxAmount"] == Decimal("115.00")
    assert (items[0]["Quantity"], items[0]["UnitAmount"]) == (2, Decimal("50.00"))


def test_a_discounted_gst_invoice_reaches_xero_with_the_stripe_total(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="d@b.nz", name="Disc", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Pro", 1, 10000)])
    invoice.update(total=10350, total_excluding_tax=9000, amount_due=10350)  # 10% off + GST
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()
    [xero_invoice] = harness.boxes.xero.invoices.values()
    assert xero_invoice["Total"] == Decimal("103.50")
    assert xero_invoice["Status"] == "PAID"


def test_two_customers_with_one_name_both_reach_xero(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    stripe.create_customer(email="sam@one.nz", name="Sam Smith", currency="nzd")
    stripe.create_customer(email="sam@two.nz", name="Sam Smith", currency="nzd")
    harness.deliver_stripe()
    names = sorted(c["Name"] for c in harness.boxes.xero.contacts.values())
    assert names[0] == "Sam Smith"
    assert names[1] in ("Sam Smith (sam@one.nz)", "Sam Smith (sam@two.nz)")


def test_a_hand_made_contact_with_the_same_name_is_a_dead_letter_with_advice(
    harness: Harness,
) -> None:
    harness.boxes.xero.seed_contact("Kiwi Cafe Ltd")
    harness.boxes.stripe.create_customer(
        email="t@kiwi.nz", name="Tom", currency="nzd", metadata={"company": "Kiwi Cafe Ltd"}
    )
    harness.deliver_stripe()
    with harness.hub.db.read() as conn:
        from synchub.events.store import list_deliveries

        [dead] = list_deliveries(conn, status="dead")
    assert "synchub did not create" in dead["dead_reason"]
    assert "set its ContactNumber to cus_" in dead["dead_reason"]


def test_an_invoice_created_by_a_lost_response_is_found_not_duplicated(
    harness: Harness,
) -> None:
    """Every attempt of invoice.finalized loses its response; invoice.paid must find it."""
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="l@b.nz", name="Lost", currency="nzd")
    harness.deliver_stripe()
    harness.boxes.xero.faults.add(
        Fault(apply_then_fail=True, timeout=True, method="POST", path=r"/Invoices$", times=8)
    )
    stripe.advance(timedelta(minutes=1))
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Work", 1, 5000)])
    harness.deliver_stripe()  # finalized: retried until it is a dead letter
    stripe.advance(timedelta(minutes=1))
    stripe.pay_invoice(copy.deepcopy(invoice)["id"])
    harness.deliver_stripe()
    [only] = harness.boxes.xero.invoices.values()
    assert (only["Status"], only["AmountDue"]) == ("PAID", 0)
    assert len(harness.boxes.xero.payments) == 1
