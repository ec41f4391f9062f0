"""The canonical language: entities, their fields and the kinds of value each holds.

Golden tables, mappings and event payloads are all built from these specs, so a field
exists in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a canonical field holds."""

    TEXT = "text"
    EMAIL = "email"
    INT = "int"  # plain integers and minor-unit amounts (paired with the entity's currency)
    BOOL = "bool"
    CURRENCY = "currency"
    DATETIME = "datetime"  # aware UTC instant
    DATE = "date"  # calendar date in the organisation's time zone
    REF = "ref"  # canonical id of another entity
    DECIMAL = "decimal"  # an exact decimal as text ("15.0000", "0.1234"): rates, 4-dp unit prices


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field."""

    name: str
    kind: Kind
    ref: str | None = None  # for REF: the entity referred to


def _f(name: str, kind: Kind, ref: str | None = None) -> FieldSpec:
    return FieldSpec(name, kind, ref)


ENTITIES: dict[str, tuple[FieldSpec, ...]] = {
    "account": (
        _f("name", Kind.TEXT),
        _f("domain", Kind.TEXT),
        _f("country", Kind.TEXT),
        _f("product_account_id", Kind.TEXT),
    ),
    "customer": (
        _f("account_id", Kind.REF, "account"),
        _f("email", Kind.EMAIL),
        _f("name", Kind.TEXT),
        _f("phone", Kind.TEXT),
        _f("company_name", Kind.TEXT),
        _f("country", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("product_account_id", Kind.TEXT),
        _f("billing_status", Kind.TEXT),
        _f("source_created_at", Kind.DATETIME),
        _f("tax_id", Kind.TEXT),  # NZBN, ABN, GST number...: `scheme:number` or bare (ADR 0016)
        # The billing address, NFC text as the source wrote it (macrons kept: "Ōtaki").
        _f("address_line1", Kind.TEXT),
        _f("address_line2", Kind.TEXT),
        _f("address_city", Kind.TEXT),
        _f("address_region", Kind.TEXT),
        _f("address_postal_code", Kind.TEXT),
    ),
    "plan": (
        _f("name", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("amount_minor", Kind.INT),
        _f("interval", Kind.TEXT),
        _f("interval_count", Kind.INT),
        _f("active", Kind.BOOL),
    ),
    "subscription": (
        _f("customer_id", Kind.REF, "customer"),
        _f("plan_id", Kind.REF, "plan"),
        _f("status", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("amount_minor", Kind.INT),
        _f("interval", Kind.TEXT),
        _f("quantity", Kind.INT),
        _f("trial_end_at", Kind.DATETIME),
        _f("cancel_at_period_end", Kind.BOOL),
        _f("canceled_at", Kind.DATETIME),
        _f("started_at", Kind.DATETIME),
    ),
    "invoice": (
        _f("customer_id", Kind.REF, "customer"),
        _f("subscription_id", Kind.REF, "subscription"),
        _f("number", Kind.TEXT),
        _f("status", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("subtotal_minor", Kind.INT),
        _f("tax_minor", Kind.INT),  # the document's tax as the source states it
        _f("total_minor", Kind.INT),
        _f("amount_due_minor", Kind.INT),
        _f("amount_paid_minor", Kind.INT),
        _f("attempt_count", Kind.INT),
        _f("issued_at", Kind.DATETIME),
        _f("due_date", Kind.DATE),
        _f("paid_at", Kind.DATETIME),
        # How line amounts relate to tax (LINE_AMOUNT_TYPES), and the document tax minus the
        # sum of the lines' tax: recorded, never absorbed into a line (ADR 0017).
        _f("line_amount_type", Kind.TEXT),
        _f("tax_rounding_minor", Kind.INT),
    ),
    "payment": (
        _f("customer_id", Kind.REF, "customer"),
        _f("invoice_id", Kind.REF, "invoice"),
        _f("status", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("amount_minor", Kind.INT),
        _f("amount_refunded_minor", Kind.INT),
        _f("paid_at", Kind.DATETIME),
    ),
    "contact": (  # a person at a customer or an account (Xero ContactPersons, CRM contacts)
        _f("customer_id", Kind.REF, "customer"),
        _f("account_id", Kind.REF, "account"),
        _f("name", Kind.TEXT),
        _f("email", Kind.EMAIL),
        _f("phone", Kind.TEXT),
        _f("role", Kind.TEXT),
    ),
    "refund": (
        _f("payment_id", Kind.REF, "payment"),
        _f("customer_id", Kind.REF, "customer"),
        _f("status", Kind.TEXT),
        _f("currency", Kind.CURRENCY),
        _f("amount_minor", Kind.INT),
        _f("reason", Kind.TEXT),
        _f("refunded_at", Kind.DATETIME),  # made at the source (`created_at` is the row's own)
    ),
}

# How an invoice's line amounts treat tax (Xero LineAmountTypes, Stripe tax_behavior).
LINE_AMOUNT_TYPES = frozenset({"exclusive", "inclusive", "no_tax"})

LINE_FIELDS: tuple[FieldSpec, ...] = (
    _f("description", Kind.TEXT),
    _f("quantity", Kind.INT),  # when whole; quantity_decimal always holds the exact quantity
    _f("unit_amount_minor", Kind.INT),  # when exact in minor units; else see unit_amount_decimal
    _f("amount_minor", Kind.INT),  # as the source states it (tax included if "inclusive")
    _f("currency", Kind.CURRENCY),
    _f("quantity_decimal", Kind.DECIMAL),
    _f("unit_amount_decimal", Kind.DECIMAL),  # major units, exact (Xero unitdp=4: "0.1234")
    _f("tax_minor", Kind.INT),
    _f("tax_type", Kind.TEXT),  # the source's tax code or rate id (Xero OUTPUT2, Stripe txr_…)
    _f("tax_rate", Kind.DECIMAL),  # percent, exact ("15", "12.5") when the source gives it
)

# Which entity each entity belongs to for delivery ordering: all of one customer's
# changes reach a destination in the order they happened.
AGGREGATE_REF = {
    "account": None,
    "customer": None,
    "plan": None,
    "subscription": "customer_id",
    "invoice": "customer_id",
    "payment": "customer_id",
    "contact": "customer_id",
    "refund": "customer_id",
}

ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})


def field_names(entity: str) -> list[str]:
    """The canonical field names of an entity, in declaration order."""
    return [spec.name for spec in ENTITIES[entity]]


def derive_billing_status(subscription_statuses: list[str]) -> str:
    """A customer's billing status from their subscriptions: the best standing wins."""
    for status in ("active", "trialing", "past_due", "unpaid", "incomplete", "canceled"):
        if status in subscription_statuses:
            return status
    return "none"


def is_entitled(billing_status: str | None) -> bool:
    """Whether a customer with this billing status may use the product."""
    return billing_status in ENTITLED_STATUSES
