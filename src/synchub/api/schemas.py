"""The shapes of /v1 requests and responses: these models are the OpenAPI contract."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from synchub.core.clock import isoformat_z

T = TypeVar("T")


class Resource(BaseModel):
    """Fields every golden record has."""

    id: str = Field(description="synchub's canonical id (a prefixed ULID).")
    deleted: bool
    created_at: datetime
    updated_at: datetime
    external_ids: dict[str, str] = Field(
        description="The record's id in each connected system, by connection name."
    )


class Account(Resource):
    """A company that buys from you."""

    name: str | None = None
    domain: str | None = None
    country: str | None = None
    product_account_id: str | None = None


# RFC 3339 in UTC with "Z" and milliseconds: how every /v1 write, event and webhook endpoint
# renders time, so a customer reads the same from a GET, a list, a create and its replay.
Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Customer(Resource):
    """A person or organisation that pays you."""

    created_at: Timestamp
    updated_at: Timestamp
    account_id: str | None = None
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    company_name: str | None = None
    country: str | None = None
    currency: str | None = Field(default=None, description="ISO 4217 code.")
    product_account_id: str | None = None
    billing_status: str | None = None
    tax_id: str | None = Field(
        default=None, description="NZBN, ABN, GST number...: `scheme:number` or bare."
    )
    source_created_at: Timestamp | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    address_city: str | None = None
    address_region: str | None = None
    address_postal_code: str | None = None


class Plan(Resource):
    """A price plan."""

    name: str | None = None
    currency: str | None = None
    amount_minor: int | None = Field(default=None, description="Integer minor units.")
    interval: str | None = None
    interval_count: int | None = None
    active: bool | None = None


class Subscription(Resource):
    """A customer's subscription to a plan."""

    customer_id: str | None = None
    plan_id: str | None = None
    status: str | None = None
    currency: str | None = None
    amount_minor: int | None = None
    interval: str | None = None
    quantity: int | None = None
    trial_end_at: datetime | None = None
    cancel_at_period_end: bool | None = None
    canceled_at: datetime | None = None
    started_at: datetime | None = None


class InvoiceLine(BaseModel):
    """One invoice line."""

    id: str
    position: int
    external_id: str
    description: str | None = None
    quantity: int | None = None
    unit_amount_minor: int | None = Field(
        default=None, description="Integer minor units, when the unit price is that exact."
    )
    amount_minor: int | None = Field(
        default=None, description="As the source states it: includes tax when `inclusive`."
    )
    currency: str | None = None
    quantity_decimal: str | None = Field(
        default=None, description="The exact quantity as a decimal string ('2.5000')."
    )
    unit_amount_decimal: str | None = Field(
        default=None, description="The exact unit price in major units ('0.1234')."
    )
    tax_minor: int | None = Field(default=None, description="This line's tax, minor units.")
    tax_type: str | None = Field(default=None, description="The source's tax code or rate id.")
    tax_rate: str | None = Field(default=None, description="Percent, exact ('15').")


class Invoice(Resource):
    """An invoice, with its lines. Amounts are integer minor units of `currency`."""

    customer_id: str | None = None
    subscription_id: str | None = None
    number: str | None = None
    status: str | None = None
    currency: str | None = None
    subtotal_minor: int | None = None
    tax_minor: int | None = None
    total_minor: int | None = None
    amount_due_minor: int | None = None
    amount_paid_minor: int | None = None
    attempt_count: int | None = None
    issued_at: datetime | None = None
    due_date: date | None = Field(
        default=None, description="A calendar date (organisation's time zone)."
    )
    paid_at: datetime | None = None
    line_amount_type: Literal["exclusive", "inclusive", "no_tax"] | None = Field(
        default=None, description="Whether line amounts exclude tax, include it, or have none."
    )
    tax_rounding_minor: int | None = Field(
        default=None,
        description="tax_minor minus the sum of the lines' tax_minor: the rounding difference "
        "between per-line and document tax, recorded rather than absorbed.",
    )
    lines: list[InvoiceLine]


class Payment(Resource):
    """A payment (a card charge, a bank payment)."""

    customer_id: str | None = None
    invoice_id: str | None = None
    status: str | None = None
    currency: str | None = None
    amount_minor: int | None = None
    amount_refunded_minor: int | None = None
    paid_at: datetime | None = None


class Contact(Resource):
    """A person at a customer or an account (a Xero contact person, a CRM contact)."""

    customer_id: str | None = None
    account_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    role: str | None = None


class Refund(Resource):
    """Money returned against a payment. Amounts are integer minor units of `currency`."""

    payment_id: str | None = None
    customer_id: str | None = None
    status: str | None = None
    currency: str | None = Field(default=None, description="ISO 4217 code.")
    amount_minor: int | None = None
    reason: str | None = None
    refunded_at: datetime | None = Field(default=None, description="When the source made it.")


class Event(BaseModel):
    """A canonical event as a CloudEvents 1.0 structured event."""

    model_config = ConfigDict(extra="allow")

    id: str
    specversion: Literal["1.0"]
    type: str
    source: str
    subject: str
    time: datetime
    datacontenttype: str
    dataschema: str
    traceparent: str | None = None
    data: dict[str, Any]


class VendorResponse(BaseModel):
    """What a destination answered, redacted: no tokens, secrets or full email addresses."""

    status: int
    headers: dict[str, str] = Field(description="A few safe headers (Retry-After, rate limits).")
    body: str = Field(
        description="The body, redacted and cut to about 2 KB. Empty either because the "
        "destination sent no body or because it was withheld: body_withheld tells them apart."
    )
    truncated: bool = False
    body_withheld: str | None = Field(
        default=None,
        description="Set when the body was not read (body is then empty, whatever was sent): "
        "`private target` for a webhook target that is not a public address (e.g. a "
        "sandbox's loopback receiver), whose answers are never read back. Null when the "
        "body shown is what was sent.",
    )


class Attempt(BaseModel):
    """One attempt to deliver."""

    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    status_code: int | None = None
    error: str | None = None
    retry_after_seconds: float | None = None
    response: VendorResponse | None = None


class Delivery(BaseModel):
    """An event on its way to one destination."""

    id: str
    event_id: str
    event_type: str
    destination: str
    subject: str | None = Field(default=None, description="The entity deliveries are ordered by.")
    status: str = Field(
        description="pending, in_flight, succeeded, dead, or held (a partner webhook "
        "endpoint's delivery recorded while the endpoint is disabled: not attempted, not a "
        "failure, sent once the endpoint is enabled again)."
    )
    attempts: int = Field(
        description="Attempts since the delivery was created or last replayed (or released "
        "from held): what the retry limit counts. Every attempt ever made is attempts_total; "
        "attempt_history lists them all."
    )
    attempts_total: int = Field(
        description="Every attempt ever made, across replays: attempts plus those before the "
        "last replay or release. attempt_history's entries with outcome replayed or released "
        "(numbered 0) are markers, not attempts.",
    )
    replayed_at: datetime | None = Field(
        default=None,
        description="The last replay or release from held: the retry budget counts from here.",
    )
    next_attempt_at: datetime
    last_error: str | None = None
    last_status_code: int | None = None
    dead_reason: str | None = None
    last_response: VendorResponse | None = Field(
        default=None, description="The destination's last answer (redacted), if it answered."
    )
    created_at: datetime
    completed_at: datetime | None = None
    idempotency_key: str | None = Field(
        default=None, description="Sent on every attempt and replay (only on one delivery)."
    )
    attempt_history: list[Attempt] | None = None


class Breaker(BaseModel):
    """A destination's circuit breaker and retry throttle."""

    state: str = Field(description="closed, open or half_open.")
    open_until: datetime | None = None
    paused_until: datetime | None = Field(
        default=None, description="Paused by a 429 until its Retry-After."
    )
    blocked_until: datetime | None = Field(
        default=None, description="No attempts before this (open or paused)."
    )
    consecutive_failures: int
    retry_tokens: float = Field(description="Retries are held back while at or below half.")
    throttled: bool
    last_failure_at: datetime | None = None


class Connection(BaseModel):
    """A connected system and how its deliveries are doing."""

    name: str
    system: str
    mode: str
    owner: str
    criticality: str
    runbook: str | None = None
    deliveries: dict[str, int] = Field(description="Deliveries to it by status.")
    last_success_at: datetime | None = None
    breaker: Breaker | None = None
    next_attempt_at: datetime | None = Field(
        default=None, description="When the next waiting delivery may be attempted."
    )
    oldest_pending_at: datetime | None = Field(
        default=None, description="When the oldest delivery still waiting was created."
    )
    oldest_pending_age_seconds: float | None = None


class AuditEntry(BaseModel):
    """One audit-log entry: who did what to which id, and how it ended."""

    id: str
    at: datetime
    workspace: str | None = None
    actor: str
    action: str
    target: str | None = None
    outcome: str
    request_id: str | None = None
    hash: str


class ListOf(BaseModel, Generic[T]):
    """A page of a list. Pass `next_starting_after` as `starting_after` for the next page."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    next_starting_after: str | None = None
    request_id: str


class Replayed(BaseModel):
    """What a replay queued."""

    replayed: list[str]
    count: int
    request_id: str
    due_now: list[str] = Field(
        default_factory=list, description="pending deliveries, waiting for a retry, made due now"
    )


# -- requests ---------------------------------------------------------------------------------


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        """NUL and other C0 control characters are never data (and PostgreSQL refuses NUL)."""
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and any(ord(c) < 32 for c in t) for t in texts):
            raise ValueError("control characters are not allowed")
        return value


class CustomerUpdate(_Write):
    """Fields to change; a field another system owns may be set on create, not changed."""

    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(default=None, max_length=500)
    phone: str | None = Field(default=None, max_length=50)
    company_name: str | None = Field(default=None, max_length=500)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    account_id: str | None = Field(default=None, max_length=40)
    product_account_id: str | None = Field(default=None, max_length=255)


class CustomerCreate(CustomerUpdate):
    """A customer as the product knows it."""

    external_id: str = Field(
        min_length=1, max_length=255, description="The product's own id for this customer."
    )


class AccountUpdate(_Write):
    """Fields to change."""

    name: str | None = Field(default=None, max_length=500)
    domain: str | None = Field(default=None, max_length=253)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class AccountCreate(AccountUpdate):
    """An account (company) as the product knows it."""

    external_id: str = Field(
        min_length=1, max_length=255, description="The product's own id for this account."
    )


class ReplayRequest(_Write):
    """Which dead letters to replay: by ids, or by filter. At least one of them with a value
    (null is not a filter, `ids` may not be empty); `destination` must name a connection or a
    destination deliveries went to; `since` may not be after `until` (422 naming the field)."""

    ids: list[str] | None = Field(default=None, max_length=1000)
    destination: str | None = None
    event_type: str | None = None  # at most 120 characters, as the GET filter
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    error_code: int | None = Field(default=None, ge=100, le=599)
