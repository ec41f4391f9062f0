"""An in-process Stripe account: objects built from Stripe's own published fixtures, events
in Stripe's envelope, webhooks signed as Stripe signs them, and a read API for re-fetches.

The account has its own clock (a business day can pass in seconds); `Date` headers and event
`created` times come from it. Webhook delivery can duplicate and reorder events, as Stripe's
does, and the read API accepts fault injection like every sandbox.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from importlib import resources
from typing import Any

import httpx

from synchub.connectors.sandbox import Sandbox, json_response
from synchub.connectors.stripe.client import PINNED_VERSION
from synchub.connectors.stripe.webhooks import sign_header
from synchub.core.clock import FixedClock


def _templates() -> dict[str, Any]:
    text = resources.files("synchub.connectors.stripe").joinpath("fixtures.json").read_text()
    return dict(json.loads(text))


def _stripe_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(7)}"


@dataclass
class PendingWebhook:
    """An event waiting to be sent to the webhook endpoint."""

    event: dict[str, Any]
    copies: int = 1


class StripeSandbox(Sandbox):
    """A Stripe account in memory."""

    vendor = "stripe"

    def __init__(self, *, clock: FixedClock, api_key: str = "sk_test_sandbox") -> None:
        super().__init__()
        self.clock = clock
        self.api_key = api_key
        self._t = _templates()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "customers": {},
            "subscriptions": {},
            "invoices": {},
            "charges": {},
            "prices": {},
        }
        self.outbox: list[PendingWebhook] = []
        self.sent: list[str] = []
        self._invoice_numbers = itertools.count(1)
        self.route(
            "GET",
            r"/v1/(customers|subscriptions|invoices|charges|prices)/([A-Za-z0-9_]+)",
            self._retrieve,
        )

    # -- state kept across processes ----------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Objects, the next invoice number and the account's clock (webhooks not yet sent
        belong to the process that would send them, and are not kept)."""
        with self.lock:
            number = next(self._invoice_numbers)
            self._invoice_numbers = itertools.count(number)
            return {
                "objects": self.objects,
                "next_invoice_number": number,
                "clock": self.clock.now().isoformat(),
            }

    def from_state(self, state: dict[str, Any]) -> None:
        """Continue a kept account; its clock never goes back."""
        with self.lock:
            self.objects = {kind: dict(state["objects"].get(kind, {})) for kind in self.objects}
            self._invoice_numbers = itertools.count(int(state["next_invoice_number"]))
            behind = datetime.fromisoformat(state["clock"]) - self.clock.now()
            if behind > timedelta(0):
                self.clock.advance(behind)

    # -- the read API -----------------------------------------------------------------------

    def authorised(self, request: httpx.Request) -> bool:
        """Secret keys come as a Bearer header."""
        return bool(request.headers.get("Authorization") == f"Bearer {self.api_key}")

    def unauthorised(self) -> httpx.Response:
        """Stripe's 401 body."""
        return json_response(
            401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        )

    def _retrieve(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        obj = self.objects[match.group(1)].get(match.group(2))
        headers = {
            "Date": format_datetime(self.clock.now(), usegmt=True),
            "Stripe-Version": request.headers.get("Stripe-Version", PINNED_VERSION),
        }
        if obj is None:
            return json_response(
                404,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such object: '{match.group(2)}'",
                    }
                },
                headers,
            )
        return json_response(200, obj, headers)

    # -- events ---------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _emit(
        self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        event: dict[str, Any] = copy.deepcopy(self._t["event"])
        event.update(
            id=_stripe_id("evt"),
            type=event_type,
            created=self._now(),
            api_version=PINNED_VERSION,
            livemode=False,
            pending_webhooks=1,
            request={"id": _stripe_id("req"), "idempotency_key": None},
        )
        event["data"] = {"object": copy.deepcopy(obj)}
        if previous:
            event["data"]["previous_attributes"] = previous
        self.outbox.append(PendingWebhook(event))
        self.changed()  # every change to an object emits an event, after making it
        return event

    def duplicate_last(self, event_type: str) -> None:
        """Deliver the most recent pending event of a type twice (as Stripe sometimes does)."""
        for pending in reversed(self.outbox):
            if pending.event["type"] == event_type:
                pending.copies += 1
                return
        raise ValueError(f"no pending {event_type} event")

    def swap_last_two(self) -> None:
        """Deliver the two most recent pending events in the wrong order."""
        self.outbox[-1], self.outbox[-2] = self.outbox[-2], self.outbox[-1]

    def hold(self) -> list[PendingWebhook]:
        """Take the pending events out of the queue (to deliver them late, out of order)."""
        held, self.outbox = self.outbox, []
        return held

    def release(self, held: list[PendingWebhook]) -> None:
        """Put held events back at the end of the queue."""
        self.outbox.extend(held)

    def deliver_webhooks(
        self, http: httpx.Client, url: str, *, secret: str, signed_at: int
    ) -> list[httpx.Response]:
        """POST every pending event to the endpoint, signed; return the responses."""
        responses = []
        pending, self.outbox = self.outbox, []
        for item in pending:
            body = json.dumps(item.event, indent=2).encode("utf-8")
            for _ in range(item.copies):
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign_header(body, secret=secret, timestamp=signed_at),
                }
                response = http.post(url, content=body, headers=headers)
                responses.append(response)
                self.sent.append(item.event["id"])
        return responses

    def advance(self, delta: timedelta) -> None:
        """Let time pass in the account."""
        self.clock.advance(delta)

    # -- objects --------------------------------------------------------------------------

    def create_customer(
        self,
        *,
        email: str,
        name: str,
        currency: str,
        country: str = "NZ",
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST /v1/customers."""
        customer: dict[str, Any] = copy.deepcopy(self._t["customer"])
        customer.update(
            id=_stripe_id("cus"),
            email=email,
            name=name,
            currency=currency.lower(),
            created=self._now(),
            metadata=dict(metadata or {}),
            livemode=False,
            address={**(customer.get("address") or {}), "country": country},
        )
        self.objects["customers"][customer["id"]] = customer
        self._emit("customer.created", customer)
        return customer

    def update_customer(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        """POST /v1/customers/{id}."""
        customer: dict[str, Any] = self.objects["customers"][customer_id]
        previous = {k: customer.get(k) for k in fields}
        customer.update(fields)
        self._emit("customer.updated", customer, previous)
        return customer

    def create_price(
        self, *, nickname: str, unit_amount: int, currency: str, interval: str = "month"
    ) -> dict[str, Any]:
        """POST /v1/prices (no webhook is sent for prices synchub does not subscribe to)."""
        price: dict[str, Any] = copy.deepcopy(self._t["price"])
        price.update(
            id=_stripe_id("price"),
            nickname=nickname,
            unit_amount=unit_amount,
            unit_amount_decimal=str(unit_amount),
            currency=currency.lower(),
            active=True,
            created=self._now(),
            livemode=False,
            type="recurring",
            recurring={
                **(price.get("recurring") or {}),
                "interval": interval,
                "interval_count": 1,
                "usage_type": "licensed",
            },
        )
        self.objects["prices"][price["id"]] = price
        self.changed()
        return price

    def create_subscription(
        self, customer_id: str, price_id: str, *, quantity: int = 1, trial_days: int = 0
    ) -> dict[str, Any]:
        """POST /v1/subscriptions; without a trial the first invoice is paid at once."""
        price = self.objects["prices"][price_id]
        sub: dict[str, Any] = copy.deepcopy(self._t["subscription"])
        now = self._now()
        item = copy.deepcopy(sub["items"]["data"][0])
        sub_id = _stripe_id("sub")
        item.update(
            id=_stripe_id("si"),
            price=copy.deepcopy(price),
            quantity=quantity,
            subscription=sub_id,
            created=now,
            current_period_start=now,
            current_period_end=now + 30 * 86400,
        )
        item.pop("plan", None)
        trial_end = now + trial_days * 86400 if trial_days else None
        sub.update(
            id=sub_id,
            customer=customer_id,
            currency=price["currency"],
            created=now,
            start_date=now,
            status="trialing" if trial_days else "active",
            trial_start=now if trial_days else None,
            trial_end=trial_end,
            cancel_at=None,
            canceled_at=None,
            ended_at=None,
            cancel_at_period_end=False,
            livemode=False,
            latest_invoice=None,
            metadata={},
            items={
                **sub["items"],
                "data": [item],
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
        )
        self.objects["subscriptions"][sub_id] = sub
        self._emit("customer.subscription.created", sub)
        if not trial_days:
            self.bill_subscription(sub_id, pay=True)
        return sub

    def set_subscription_status(self, sub_id: str, status: str) -> dict[str, Any]:
        """Stripe moving a subscription (trial ends, payment fails, payment recovers)."""
        sub = self.objects["subscriptions"][sub_id]
        previous = {"status": sub["status"]}
        sub["status"] = status
        self._emit("customer.subscription.updated", sub, previous)
        return sub

    def cancel_subscription(self, sub_id: str) -> dict[str, Any]:
        """DELETE /v1/subscriptions/{id}: cancels immediately."""
        sub = self.objects["subscriptions"][sub_id]
        now = self._now()
        sub.update(status="canceled", canceled_at=now, ended_at=now)
        self._emit("customer.subscription.deleted", sub)
        return sub

    def _line(
        self,
        invoice_id: str,
        *,
        amount: int,
        currency: str,
        description: str,
        quantity: int,
        sub_id: str | None,
    ) -> dict[str, Any]:
        template = self._t["invoice"]["lines"]["data"][0]
        line: dict[str, Any] = copy.deepcopy(template)
        now = self._now()
        line.update(
            id=_stripe_id("il"),
            invoice=invoice_id,
            amount=amount,
            currency=currency,
            description=description,
            quantity=quantity,
            subtotal=amount,
            period={"start": now, "end": now + 30 * 86400},
            subscription=sub_id,
            discount_amounts=[],
            discounts=[],
            taxes=[],
            metadata={},
            livemode=False,
            pricing={
                "type": "price_details",
                "unit_amount_decimal": None,
                "price_details": {"price": None, "product": None},
            },
        )
        line["parent"] = {
            "type": "subscription_item_details" if sub_id else "invoice_item_details",
            "invoice_item_details": None,
            "subscription_item_details": None,
        }
        return line

    def create_invoice(
        self,
        customer_id: str,
        *,
        lines: list[tuple[str, int, int]],
        currency: str,
        sub_id: str | None = None,
        days_until_due: int = 7,
    ) -> dict[str, Any]:
        """POST /v1/invoices + finalize: lines are (description, quantity, amount)."""
        invoice: dict[str, Any] = copy.deepcopy(self._t["invoice"])
        now = self._now()
        invoice_id = _stripe_id("in")
        items = [
            self._line(
                invoice_id,
                amount=a,
                currency=currency.lower(),
                description=d,
                quantity=q,
                sub_id=sub_id,
            )
            for d, q, a in lines
        ]
        total = sum(a for _, _, a in lines)
        invoice.update(
            id=invoice_id,
            customer=customer_id,
            currency=currency.lower(),
            created=now,
            status="draft",
            number=None,
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            total_taxes=[],
            amount_due=total,
            amount_paid=0,
            amount_remaining=total,
            attempt_count=0,
            attempted=False,
            due_date=now + days_until_due * 86400,
            effective_at=None,
            period_start=now,
            period_end=now,
            livemode=False,
            metadata={},
            amount_overpaid=0,
            amount_shipping=0,
            shipping_cost=None,
            last_finalization_error=None,
            customer_email=self.objects["customers"][customer_id]["email"],
            lines={**invoice["lines"], "data": items, "url": f"/v1/invoices/{invoice_id}/lines"},
            status_transitions={
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            parent=(
                {
                    "type": "subscription_details",
                    "quote_details": None,
                    "subscription_details": {"metadata": {}, "subscription": sub_id},
                }
                if sub_id
                else None
            ),
        )
        self.objects["invoices"][invoice_id] = invoice
        self._emit("invoice.created", invoice)
        invoice.update(
            status="open", number=f"SBX-{next(self._invoice_numbers):04d}", effective_at=now
        )
        invoice["status_transitions"]["finalized_at"] = now
        self._emit("invoice.finalized", invoice, {"status": "draft"})
        return invoice

    def bill_subscription(self, sub_id: str, *, pay: bool) -> dict[str, Any]:
        """Stripe's billing run for one period: invoice, then a payment attempt."""
        sub = self.objects["subscriptions"][sub_id]
        item = sub["items"]["data"][0]
        price = item["price"]
        invoice = self.create_invoice(
            sub["customer"],
            currency=sub["currency"],
            sub_id=sub_id,
            lines=[
                (
                    f"{item['quantity']} × {price['nickname']}",
                    item["quantity"],
                    price["unit_amount"] * item["quantity"],
                )
            ],
        )
        sub["latest_invoice"] = invoice["id"]
        if pay:
            self.pay_invoice(invoice["id"])
        else:
            self.fail_invoice_payment(invoice["id"])
        return invoice

    def _charge(self, invoice: dict[str, Any], *, succeeded: bool) -> dict[str, Any]:
        charge: dict[str, Any] = copy.deepcopy(self._t["charge"])
        charge.update(
            id=_stripe_id("ch"),
            amount=invoice["amount_due"],
            amount_captured=invoice["amount_due"] if succeeded else 0,
            amount_refunded=0,
            currency=invoice["currency"],
            customer=invoice["customer"],
            created=self._now(),
            paid=succeeded,
            captured=succeeded,
            refunded=False,
            livemode=False,
            status="succeeded" if succeeded else "failed",
            payment_intent=_stripe_id("pi"),
            metadata={},
            failure_code=None if succeeded else "card_declined",
            failure_message=None if succeeded else "Your card was declined.",
            refunds={
                "object": "list",
                "data": [],
                "has_more": False,
                "url": "/v1/charges/x/refunds",
            },
        )
        self.objects["charges"][charge["id"]] = charge
        return charge

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """POST /v1/invoices/{id}/pay that succeeds."""
        invoice = self.objects["invoices"][invoice_id]
        charge = self._charge(invoice, succeeded=True)
        self._emit("charge.succeeded", charge)
        now = self._now()
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            attempted=True,
            attempt_count=invoice["attempt_count"] + 1,
        )
        invoice["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", invoice, {"status": "open"})
        return invoice

    def fail_invoice_payment(self, invoice_id: str) -> dict[str, Any]:
        """POST /v1/invoices/{id}/pay with a card that is declined."""
        invoice = self.objects["invoices"][invoice_id]
        charge = self._charge(invoice, succeeded=False)
        self._emit("charge.failed", charge)
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
        self._emit("invoice.payment_failed", invoice)
        return invoice

    def refund_charge(self, charge_id: str, amount: int | None = None) -> dict[str, Any]:
        """POST /v1/refunds for a charge (all of it by default)."""
        charge = self.objects["charges"][charge_id]
        refund = amount if amount is not None else charge["amount"]
        record: dict[str, Any] = copy.deepcopy(self._t["refund"])
        record.update(id=_stripe_id("re"), amount=refund, charge=charge_id,
                      currency=charge["currency"], created=self._now(), status="succeeded",
                      customer=charge["customer"], reason="requested_by_customer")  # fmt: skip
        charge["refunds"]["data"].append(record)
        charge.update(
            amount_refunded=charge["amount_refunded"] + refund,
            refunded=charge["amount_refunded"] + refund >= charge["amount"],
        )
        self._emit("charge.refunded", charge, {"amount_refunded": 0})
        return charge

    def charges_of(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's charges."""
        return [c for c in self.objects["charges"].values() if c["customer"] == customer_id]
