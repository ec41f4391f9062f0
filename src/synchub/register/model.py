"""The register as plain data: connections, flows, field ownership. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
class Connection:
    """One connected system instance."""

    name: str
    system: str  # stripe | xero | hubspot | product
    mode: Mode
    owner: str
    criticality: str
    runbook: str | None = None
    mapping: str | None = None  # mapping version used to read this source
    settings: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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
class PlanTier:
    """Fair-use limits for API clients on one plan: a throttle and a monthly quota."""

    name: str
    rate: int = 600  # requests per period
    period_seconds: float = 60.0
    burst: int = 60
    monthly_quota: int = 1_000_000


DEFAULT_PLAN = PlanTier(name="default")


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

    def plan_for(self, client_id: str) -> PlanTier:
        """The plan that limits a client: its own if the register names one, else default."""
        name = self.client_plans.get(client_id, "default")
        return self.plans.get(name) or self.plans.get("default") or DEFAULT_PLAN

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
