"""A realistic business day at a small Auckland SaaS company, played through the Stripe
sandbox, with the failures real vendors produce injected along the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from synchub.bootstrap import Sandboxes
from synchub.connectors.fault import Fault

Deliver = Callable[[], None]


@dataclass
class ScenarioLog:
    """What the scenario did, for the summary."""

    steps: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        """Record a business step."""
        self.steps.append(text)

    def fault(self, text: str) -> None:
        """Record an injected fault."""
        self.faults.append(text)


def run_day(boxes: Sandboxes, deliver: Deliver) -> ScenarioLog:
    """Play the day; `deliver` sends the Stripe sandbox's pending webhooks to the hub."""
    stripe, log = boxes.stripe, ScenarioLog()
    hour = timedelta(hours=1)
    starter = stripe.create_price(nickname="Starter", unit_amount=4900, currency="nzd")
    team = stripe.create_price(nickname="Team", unit_amount=9900, currency="aud")
    pro = stripe.create_price(nickname="Pro", unit_amount=14900, currency="nzd")
    boxes.xero.seed_contact("Kiwi Cafe Ltd", "accounts@kiwicafe.co.nz")
    log.fault("Xero already holds a hand-made contact named 'Kiwi Cafe Ltd'")

    # 08:00 — a new customer subscribes; Stripe delivers customer.created twice.
    aroha = stripe.create_customer(
        email="Aroha@Kowhai-Cafe.co.nz ",
        name="Aroha Ngāta",
        currency="nzd",
        metadata={"company": "Kōwhai Café Ltd"},
    )
    stripe.duplicate_last("customer.created")
    log.fault("customer.created delivered twice")
    stripe.create_subscription(aroha["id"], starter["id"])
    log.step("Aroha Ngāta (Kōwhai Café Ltd) subscribes to Starter, NZD 49.00, paid")
    boxes.hubspot.faults.add(Fault(status=502, times=2))
    boxes.hubspot.faults.add(Fault(status=503, headers={"Retry-After": "1"}, times=1))
    log.fault("HubSpot answers 502, 502, 503 (Retry-After: 1)")
    deliver()

    # 09:00 — a trial starts.
    stripe.advance(hour)
    mere = stripe.create_customer(
        email="mere@tuhoe-design.co.nz",
        name="Mere Tūhoe",
        currency="nzd",
        metadata={"company": "Tūhoe Design"},
    )
    mere_sub = stripe.create_subscription(mere["id"], pro["id"], trial_days=14)
    log.step("Mere Tūhoe starts a 14-day trial of Pro")
    deliver()

    # 10:00 — an Australian customer's first payment fails.
    stripe.advance(hour)
    liam = stripe.create_customer(
        email="liam@harbourbikes.com.au",
        name="Liam O'Connor",
        currency="aud",
        country="AU",
        metadata={"company": "Harbour Bikes Pty Ltd"},
    )
    deliver()
    stripe.advance(timedelta(minutes=5))
    liam_sub = stripe.create_subscription(liam["id"], team["id"], trial_days=1)
    stripe.advance(timedelta(minutes=5))
    invoice = stripe.bill_subscription(liam_sub["id"], pay=False)
    stripe.set_subscription_status(liam_sub["id"], "past_due")
    late = stripe.hold()  # the failure notifications are delayed...
    log.step("Liam O'Connor's first Team payment (AUD 99.00) is declined")

    # 11:00 — the retry succeeds, and Xero rate-limits us once.
    stripe.advance(hour)
    stripe.pay_invoice(invoice["id"])
    stripe.set_subscription_status(liam_sub["id"], "active")
    deliver()
    stripe.release(late)  # ...and arrive after the success they precede
    log.fault("invoice.payment_failed and past_due arrive after the later invoice.paid")
    boxes.xero.faults.add(
        Fault(status=429, times=1, headers={"Retry-After": "1", "X-Rate-Limit-Problem": "minute"})
    )
    log.fault("Xero answers 429 with Retry-After: 1 (minute limit)")
    deliver()
    log.step("Stripe retries Liam's payment and it succeeds")

    # 12:00 — a one-off yen invoice, paid; Xero loses the response to the invoice create.
    stripe.advance(hour)
    haruto = stripe.create_customer(
        email="haruto@sakura-tea.jp",
        name="Haruto Satō",
        currency="jpy",
        country="JP",
        metadata={"company": "Sakura Tea KK"},
    )
    boxes.xero.faults.add(
        Fault(apply_then_fail=True, timeout=True, method="POST", path=r"/Invoices$", times=1)
    )
    log.fault("Xero times out after creating an invoice (the response is lost)")
    jpy = stripe.create_invoice(
        haruto["id"], currency="jpy", lines=[("Onboarding workshop", 1, 5000)]
    )
    stripe.pay_invoice(jpy["id"])
    stripe.duplicate_last("invoice.paid")
    log.fault("invoice.paid delivered twice")
    log.step("Haruto Satō pays a one-off ¥5,000 onboarding invoice")
    deliver()

    # 13:00 — a customer whose company name clashes with a hand-made Xero contact.
    stripe.advance(hour)
    stripe.create_customer(
        email="tom@kiwicafe.co.nz",
        name="Tom Walker",
        currency="nzd",
        metadata={"company": "Kiwi Cafe Ltd"},
    )
    log.step("Tom Walker (Kiwi Cafe Ltd) signs up; Xero will refuse the duplicate name")
    deliver()

    # 14:00 — a customer renames themselves twice; the two updates arrive out of order.
    stripe.advance(hour)
    stripe.update_customer(mere["id"], name="Mere Tūhoe-Ngata")
    stripe.advance(timedelta(minutes=1))
    stripe.update_customer(mere["id"], name="Mere Tūhoe-Walker")
    stripe.swap_last_two()
    log.fault("two customer.updated events for one customer arrive in the wrong order")
    log.step("Mere renames herself twice; the last name must win")
    deliver()

    # 15:00 — Mere's trial converts; Sophie subscribes and later cancels.
    stripe.advance(hour)
    stripe.bill_subscription(mere_sub["id"], pay=True)
    stripe.set_subscription_status(mere_sub["id"], "active")
    log.step("Mere's trial converts to a paid Pro subscription, NZD 149.00")
    sophie = stripe.create_customer(
        email="sophie@pauaprints.co.nz",
        name="Sophie Martin",
        currency="nzd",
        metadata={"company": "Pāua Prints"},
    )
    sophie_sub = stripe.create_subscription(sophie["id"], starter["id"], quantity=3)
    log.step("Sophie Martin (Pāua Prints) subscribes to 3 × Starter, NZD 147.00")
    deliver()

    # 17:00 — Sophie cancels; Haruto's workshop is refunded.
    stripe.advance(2 * hour)
    stripe.cancel_subscription(sophie_sub["id"])
    log.step("Sophie cancels; the product must lock her account")
    charge = stripe.charges_of(haruto["id"])[-1]
    stripe.refund_charge(charge["id"])
    log.step("Haruto's ¥5,000 is refunded")
    deliver()
    return log
