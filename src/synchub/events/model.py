"""The event catalogue and the rules that turn a golden-record change into events. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA_BASE = "https://synchub.dev/schemas/events"


@dataclass(frozen=True)
class EventType:
    """One canonical event type: `entity.past_tense_verb`, with its schema version."""

    name: str
    entity: str
    description: str
    version: int = 1

    @property
    def dataschema(self) -> str:
        """The URI of this type's JSON Schema."""
        return f"{SCHEMA_BASE}/{self.name}/v{self.version}.json"


_CATALOGUE = (
    EventType("account.created", "account", "An account (company) was seen for the first time."),
    EventType("account.updated", "account", "One or more account fields changed."),
    EventType("customer.created", "customer", "A customer was seen for the first time."),
    EventType("customer.updated", "customer", "One or more customer fields changed."),
    EventType("customer.deleted", "customer", "The customer was deleted at its owner."),
    EventType("plan.created", "plan", "A plan (price) was seen for the first time."),
    EventType("plan.updated", "plan", "One or more plan fields changed."),
    EventType(
        "subscription.created", "subscription", "A subscription was seen for the first time."
    ),
    EventType("subscription.activated", "subscription", "A subscription became active."),
    EventType("subscription.updated", "subscription", "A subscription changed."),
    EventType("subscription.canceled", "subscription", "A subscription was canceled."),
    EventType("invoice.created", "invoice", "An invoice was seen for the first time."),
    EventType("invoice.finalized", "invoice", "An invoice was finalized and is open for payment."),
    EventType("invoice.updated", "invoice", "An invoice changed."),
    EventType("invoice.paid", "invoice", "An invoice was paid in full."),
    EventType("invoice.payment_failed", "invoice", "An attempt to pay an invoice failed."),
    EventType("invoice.voided", "invoice", "An invoice was voided."),
    EventType("payment.succeeded", "payment", "A payment succeeded."),
    EventType("payment.failed", "payment", "A payment failed."),
    EventType("payment.refunded", "payment", "Part or all of a payment was refunded."),
    EventType("contact.created", "contact", "A contact person was seen for the first time."),
    EventType("contact.updated", "contact", "One or more contact person fields changed."),
    EventType("refund.created", "refund", "A refund was seen for the first time."),
    EventType("refund.updated", "refund", "A refund changed (for example its status)."),
)

CATALOGUE: dict[str, EventType] = {e.name: e for e in _CATALOGUE}

TERMINAL_STATUSES = {
    "subscription": frozenset({"canceled"}),
    "invoice": frozenset({"paid", "void"}),  # uncollectible can still be paid or voided
}

# How far an invoice has progressed; a stale event may never move it back.
_INVOICE_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def is_regression(entity: str, before: str | None, after: str | None) -> bool:
    """Whether a status change would move a record out of a terminal state or backwards."""
    if before is None or after is None or before == after:
        return False
    if before in TERMINAL_STATUSES.get(entity, frozenset()):
        return True
    if entity == "invoice":
        return _INVOICE_RANK.get(after, 0) < _INVOICE_RANK.get(before, 0)
    return False


def derive_events(
    entity: str, before: dict[str, Any] | None, after: dict[str, Any], changed: list[str]
) -> list[str]:
    """The canonical event types that describe a change of one golden record."""
    if before is None:
        return _created_events(entity, after)
    if not changed:
        return []
    status_before, status_after = before.get("status"), after.get("status")
    moved = "status" in changed and status_before != status_after
    if entity == "subscription":
        if moved and status_after == "canceled":
            return ["subscription.canceled"]
        if moved and status_after == "active":
            return ["subscription.activated"]
        return ["subscription.updated"]
    if entity == "invoice":
        return _invoice_events(before, after, changed, moved)
    if entity == "payment":
        if "amount_refunded_minor" in changed and (after.get("amount_refunded_minor") or 0) > (
            before.get("amount_refunded_minor") or 0
        ):
            return ["payment.refunded"]
        if moved and status_after in ("succeeded", "failed"):
            return [f"payment.{status_after}"]
        return []
    return [f"{entity}.updated"]


def _created_events(entity: str, after: dict[str, Any]) -> list[str]:
    events = [f"{entity}.created"]
    status = after.get("status")
    if entity == "subscription":
        if status == "active":
            events.append("subscription.activated")
        elif status == "canceled":
            events.append("subscription.canceled")
    elif entity == "invoice":
        if status == "open":
            events.append("invoice.finalized")
        if status == "paid":
            events.append("invoice.paid")
        elif status == "void":
            events.append("invoice.voided")
        elif _failed_attempts(None, after):
            events.append("invoice.payment_failed")
    elif entity == "payment":
        if status in ("succeeded", "failed"):
            events = [f"payment.{status}"]
            if (after.get("amount_refunded_minor") or 0) > 0:
                events.append("payment.refunded")
        else:
            return []
    return events


def _failed_attempts(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    count_after = after.get("attempt_count") or 0
    count_before = (before or {}).get("attempt_count") or 0
    return bool(count_after > count_before and after.get("status") not in ("paid", "void"))


def _invoice_events(
    before: dict[str, Any], after: dict[str, Any], changed: list[str], moved: bool
) -> list[str]:
    status = after.get("status")
    if moved and status == "paid":
        return ["invoice.paid"]
    if moved and status == "void":
        return ["invoice.voided"]
    events = []
    if moved and status == "open":
        events.append("invoice.finalized")
    if _failed_attempts(before, after):
        events.append("invoice.payment_failed")
    return events or ["invoice.updated"]
