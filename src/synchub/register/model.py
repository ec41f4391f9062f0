"""The register as plain data: connections, flows, field ownership. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    """Whether a connection talks to the vendor or to synchub's in-process sandbox of it."""

    SANDBOX = "sandbox"
    LIVE = "live"


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff for one destination (STANDARDS.md §3)."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    max_attempts: int = 8
    max_age_seconds: float = 24 * 3600.0
    timeout_seconds: float = 15.0
    # A fixed schedule instead of exponential backoff: the delay before attempt n+1 is
    # schedule[n-1] seconds, ±jitter_ratio (partner webhooks, STANDARDS.md §4).
    schedule: tuple[float, ...] = ()
    jitter_ratio: float = 0.1


@dataclass(frozen=True)
class BreakerPolicy:
    """A destination's circuit breaker and retry throttle (STANDARDS.md §3, ADR 0008)."""

    failures: int = 5  # consecutive retryable failures that open it
    failure_rate: float = 0.5  # ... or at least this share of failures
    min_calls: int = 20  # ... over at least this many calls
    window_seconds: float = 30.0  # ... within this window
    open_seconds: float = 30.0  # how long it stays open before probing
    probes: int = 3  # half-open: this many probes must all succeed to close it
    retry_tokens: float = 10.0  # retry throttle: tokens at the start (and at most)
    token_ratio: float = 0.1  # tokens back per success; each retryable failure takes one

    @property
    def throttle_threshold(self) -> float:
        """No retries while the tokens are at or below this (half the maximum)."""
        return self.retry_tokens / 2


# Systems that only receive events: a message bus the team owns (ADR 0010).
BROKER_SYSTEMS = frozenset({"nats"})


@dataclass(frozen=True)
class Connection:
    """One connected system instance."""

    name: str
    system: str  # stripe | xero | hubspot | intercom | product | nats (a broker sink, ADR 0010)
    mode: Mode
    owner: str
    criticality: str
    runbook: str | None = None
    mapping: str | None = None  # mapping version used to read this source
    settings: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


@dataclass(frozen=True)
class Flow:
    """Canonical events from a source that a destination subscribes to."""

    name: str
    source: str
    destination: str
    events: tuple[str, ...]
    owner: str


@dataclass(frozen=True)
class FieldOwner:
    """Which connection has the final say on one canonical field."""

    entity: str
    field_name: str
    owner: str
    fallback: str = "most_recent"


@dataclass(frozen=True)
class Rate:
    """A throttle: `rate` requests per `period_seconds`, of which `burst` may arrive at once."""

    rate: int
    period_seconds: float
    burst: int


DEFAULT_TOKEN_RATE = Rate(rate=60, period_seconds=60.0, burst=20)
# Vendors send webhooks in bursts (a backfill, a retry storm after an outage): generous.
DEFAULT_WEBHOOK_RATE = Rate(rate=100, period_seconds=1.0, burst=500)


@dataclass(frozen=True)
class PlanTier:
    """Fair-use limits for API clients on one plan (STANDARDS §2, ADR 0007).

    Three layers: a throttle (`rate` per `period_seconds`, `burst` at once) per client, a
    `monthly_quota` per client per calendar month in the register's time zone, and at most
    `concurrency` expensive operations (exports, bulk replays) at once per client. `token`
    limits requests to the token endpoint for the plan's client ids.
    """

    name: str
    rate: int = 600  # requests per period
    period_seconds: float = 60.0
    burst: int = 60
    monthly_quota: int = 1_000_000
    concurrency: int = 2
    token: Rate = DEFAULT_TOKEN_RATE


@dataclass(frozen=True)
class ClientOverride:
    """Per-client changes on top of the client's plan; None keeps the plan's value."""

    rate: int | None = None
    period_seconds: float | None = None
    burst: int | None = None
    monthly_quota: int | None = None
    concurrency: int | None = None

    def apply(self, plan: PlanTier) -> PlanTier:
        """The plan with this override's values in place of the plan's."""
        changes = {k: v for k, v in vars(self).items() if v is not None}
        return replace(plan, **changes)


DEFAULT_PLAN = PlanTier(name="default")


@dataclass(frozen=True)
class MatchThresholds:
    """Fuzzy matching of a new source record (DESIGN §4, ADR 0016): a score at or above
    `link_at` links it automatically; at or above `review_at` it gets its own golden record
    and a match candidate for a person to confirm; below, it is a new golden record."""

    link_at: float = 0.95
    review_at: float = 0.6
    # Fellegi-Sunter weights as plain data (`prior`, `fields`), e.g. from `synchub match
    # train`; None: the shipped weights. Read with `synchub.mdm.weights.weights_for`.
    weights: Mapping[str, Any] | None = field(default=None, hash=False, compare=True)

    def __post_init__(self) -> None:
        if not 0.0 <= self.review_at <= self.link_at <= 1.0:
            raise ValueError("match thresholds need 0 <= review_at <= link_at <= 1")


DEFAULT_MATCH_THRESHOLDS = MatchThresholds()


@dataclass(frozen=True)
class Register:
    """The whole validated register."""

    workspace: str
    timezone: str
    connections: dict[str, Connection]
    flows: tuple[Flow, ...]
    ownership: tuple[FieldOwner, ...]
    plans: dict[str, PlanTier] = field(default_factory=dict)
    client_plans: dict[str, str] = field(default_factory=dict)  # client id -> plan name
    client_overrides: dict[str, ClientOverride] = field(default_factory=dict)  # by client id
    webhook_limits: dict[str, Rate] = field(default_factory=dict)  # by connection, or default
    matching: dict[str, MatchThresholds] = field(default_factory=dict)  # by entity

    def match_thresholds(self, entity: str) -> MatchThresholds:
        """The fuzzy-matching thresholds for an entity (the defaults when not declared)."""
        return self.matching.get(entity, DEFAULT_MATCH_THRESHOLDS)

    def plan_for(self, client_id: str) -> PlanTier:
        """The limits of a client: its plan (else default), with its own overrides applied."""
        name = self.client_plans.get(client_id, "default")
        plan = self.plans.get(name) or self.plans.get("default") or DEFAULT_PLAN
        override = self.client_overrides.get(client_id)
        return override.apply(plan) if override is not None else plan

    def webhook_limit_for(self, connection: str) -> Rate:
        """The throttle on webhooks a connection's vendor sends us."""
        return (
            self.webhook_limits.get(connection)
            or self.webhook_limits.get("default")
            or DEFAULT_WEBHOOK_RATE
        )

    def destinations_for(self, event_type: str) -> list[str]:
        """Connection names subscribed to an event type, in register order, without repeats."""
        names: list[str] = []
        for flow in self.flows:
            if event_type in flow.events and flow.destination not in names:
                names.append(flow.destination)
        return names

    def owner_of(self, entity: str, field_name: str) -> str | None:
        """The connection that owns a canonical field, if the register names one."""
        for rule in self.ownership:
            if rule.entity == entity and rule.field_name == field_name:
                return rule.owner
        return None

    def connection_for_system(self, system: str) -> Connection | None:
        """The first connection of a system (e.g. the Stripe account that sends webhooks)."""
        return next((c for c in self.connections.values() if c.system == system), None)
