"""Business traffic for the chaos tests, played through the shared sandbox server's Stripe.

Each customer lives a short, randomised life (sign-up, renames, a subscription with its
invoices paid or first declined, sometimes a second billing run, sometimes a cancellation);
the server's Stripe account then delivers the events to the hub as Stripe would: signed,
30% of them twice (the copy later), some swapped with their neighbour.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

WEBHOOK_SECRET = "whsec_chaos_test_secret"


@dataclass
class StripeTraffic:
    """Drives the sandbox server's Stripe account over its control endpoints."""

    http: httpx.Client  # based at the sandbox server
    rng: random.Random
    operations: int = 0
    prices: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"stripe": 0.0, "webhooks": 0.0})

    def call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """Run one Stripe account operation on the server."""
        began = time.monotonic()
        reply = self.http.post(f"/_sandbox/stripe/call/{operation}", json=arguments)
        reply.raise_for_status()
        self.operations += 1
        self.seconds["stripe"] += time.monotonic() - began
        return dict(reply.json())

    def tick(self) -> None:
        """Let a little Stripe time pass (events of one second tie and make the hub re-read)."""
        if self.rng.random() < 0.7:
            self.call("advance", seconds=self.rng.choice((1, 2, 5)))

    def setup(self) -> None:
        """The catalogue every story buys from."""
        for nickname, amount in (("Starter", 4900), ("Team", 9900), ("Pro", 14900)):
            price = self.call("create_price", nickname=nickname, unit_amount=amount, currency="nzd")
            self.prices.append(price["id"])

    def customer_story(self, n: int) -> None:
        """One customer's life; every step emits Stripe events."""
        rng = self.rng
        customer = self.call(
            "create_customer",
            email=f"owner{n}@chaos-{n}.example.nz",
            name=f"Owner {n} Chaos",
            currency="nzd",
            metadata={"company": f"Chaos Company {n} Ltd"} if rng.random() < 0.6 else {},
        )
        self.tick()
        for rename in range(rng.choice((0, 1, 1, 2))):
            self.call("update_customer", customer_id=customer["id"], name=f"Owner {n} v{rename}")
            self.tick()
        if rng.random() < 0.15:
            return  # signed up, never bought
        sub = self.call(
            "create_subscription",
            customer_id=customer["id"],
            price_id=rng.choice(self.prices),
            quantity=rng.choice((1, 1, 2, 3)),
        )
        self.tick()
        if rng.random() < 0.4:
            invoice = self.call("bill_subscription", sub_id=sub["id"], pay=rng.random() < 0.5)
            if invoice["status"] != "paid":
                self.call("set_subscription_status", sub_id=sub["id"], status="past_due")
                self.tick()
                self.call("pay_invoice", invoice_id=invoice["id"])
                self.call("set_subscription_status", sub_id=sub["id"], status="active")
            self.tick()
        if rng.random() < 0.2:
            self.call("cancel_subscription", sub_id=sub["id"])
            self.tick()

    def send_webhooks(
        self, url: str, *, duplicate_rate: float, reorder_rate: float, concurrency: int
    ) -> None:
        """Have the server's Stripe deliver every pending event to the hub."""
        began = time.monotonic()
        reply = self.http.post(
            "/_sandbox/stripe/webhooks",
            json={
                "url": url,
                "secret": WEBHOOK_SECRET,
                "duplicate_rate": duplicate_rate,
                "reorder_rate": reorder_rate,
                "limit": 100_000,
                "concurrency": concurrency,
            },
            timeout=600,
        )
        reply.raise_for_status()
        self.seconds["webhooks"] += time.monotonic() - began
