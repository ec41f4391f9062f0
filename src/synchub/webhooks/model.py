"""Partner webhook endpoints as plain data, and the rules of delivering to them. Pure.

The rules are STANDARDS.md §4 "Outbound to partners" (Standard Webhooks v1); the decisions
behind them are in docs/adr/0009-partner-webhooks.md.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from synchub.core.clock import isoformat_z
from synchub.core.errors import FieldProblem
from synchub.register.model import RetryPolicy

DESTINATION_PREFIX = "webhook:"
ALL_TYPES = "*"
MAX_BODY_BYTES = 20_000  # bodies stay under 20 kB
SECRET_OVERLAP = timedelta(hours=24)  # after a rotation, sign with old and new keys this long
DISABLE_AFTER = timedelta(days=5)  # of continuous failure
TIMEOUT_SECONDS = 15.0

# The first attempt goes at once (the delivery is due when it is created); after failed
# attempt n the next waits RETRY_SCHEDULE[n-1] seconds ±10%: 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h and 24 h, so 10 attempts over about 75.6 h.
RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
RETRY_POLICY = RetryPolicy(
    max_attempts=len(RETRY_SCHEDULE) + 1,
    # The schedule with every step at +10% jitter is 83.1 h; 84 h leaves room for that and
    # for the attempts themselves, so jitter never costs a delivery its tenth attempt.
    max_age_seconds=84 * 3600.0,
    timeout_seconds=TIMEOUT_SECONDS,
    schedule=RETRY_SCHEDULE,
    jitter_ratio=0.1,
)


class DisabledReason(StrEnum):
    """Why an endpoint stopped receiving events."""

    GONE = "gone"  # it answered 410 Gone
    FAILING = "failing"  # every attempt failed for DISABLE_AFTER
    MANUAL = "manual"  # its owner disabled it through the API


class Verdict(StrEnum):
    """What an endpoint's HTTP status means for the attempt."""

    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: disable the endpoint, do not retry
    THROTTLED = "throttled"  # 429, 502, 504: retry, honouring Retry-After
    FAILED = "failed"  # anything else: a failed attempt, retried on the schedule


@dataclass(frozen=True)
class Endpoint:
    """One partner's webhook endpoint in one workspace (its secrets live apart, sealed)."""

    id: str
    workspace: str
    url: str
    description: str
    event_types: tuple[str, ...]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = None
    failure_notified_at: datetime | None = None

    def subscribes_to(self, event_type: str) -> bool:
        """Whether the endpoint's filter lets an event type through."""
        return ALL_TYPES in self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class SecretVersion:
    """One signing secret of an endpoint: made at created_at, used until expires_at (if set)."""

    version: int
    created_at: datetime
    expires_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        """Whether webhooks sent at `now` are signed with this secret."""
        return self.expires_at is None or now < self.expires_at


def destination_name(endpoint_id: str) -> str:
    """The delivery destination of an endpoint: `webhook:<endpoint id>`."""
    return DESTINATION_PREFIX + endpoint_id


def endpoint_id_of(destination: str) -> str | None:
    """The endpoint id in a `webhook:<endpoint id>` destination name, else None."""
    if not destination.startswith(DESTINATION_PREFIX):
        return None
    return destination.removeprefix(DESTINATION_PREFIX) or None


def message_id(event_id: str) -> str:
    """`webhook-id`: `msg_` + the event's ULID, so every retry and replay carries the same one."""
    return "msg_" + event_id.partition("_")[2]


def event_type_problems(values: list[str], known: Collection[str]) -> list[FieldProblem]:
    """Why an event-type filter is invalid: canonical types, or `*` alone (empty when valid)."""
    if not values:
        return [FieldProblem("/event_types", 'give at least one event type, or ["*"] for all')]
    if ALL_TYPES in values and len(set(values)) > 1:
        return [FieldProblem("/event_types", '"*" already means every type; send it alone')]
    return [
        FieldProblem(f"/event_types/{i}", f"unknown event type {value!r}")
        for i, value in enumerate(values)
        if value != ALL_TYPES and value not in known
    ]


def normalised_event_types(values: Iterable[str]) -> tuple[str, ...]:
    """A filter without repeats, in a stable order."""
    return tuple(sorted(set(values)))


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_body(event_type: str, time: datetime, payload: Mapping[str, Any]) -> bytes:
    """The exact bytes to sign and send: `{"type", "timestamp", "data"}`, under 20 kB.

    `data` is the canonical event's payload (the object and the names of changed fields).
    A payload too large for that is cut to the object's id and changed fields, then to its
    id alone, and marked `"truncated": true`; the partner reads the rest from /v1.
    """
    head = {"type": event_type, "timestamp": isoformat_z(time)}
    obj = payload.get("object") or {}
    changed = [name for name in payload.get("changed") or [] if isinstance(name, str)]
    candidates: list[Mapping[str, Any]] = [
        payload,
        {
            "object": {"id": obj.get("id"), **{k: obj[k] for k in changed if k in obj}},
            "changed": changed,
            "truncated": True,
        },
        {"object": {"id": obj.get("id")}, "changed": changed, "truncated": True},
    ]
    for data in candidates:
        raw = _encode({**head, "data": data})
        if len(raw) < MAX_BODY_BYTES:
            return raw
    return _encode({**head, "data": {"object": {"id": obj.get("id")}, "truncated": True}})


def verdict_for(status: int) -> Verdict:
    """How an HTTP status from a partner counts (STANDARDS.md §4)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    if status in (429, 502, 504):
        return Verdict.THROTTLED
    return Verdict.FAILED


def is_last_attempt(
    attempt: int, age: timedelta, retry_after: float | None, policy: RetryPolicy = RETRY_POLICY
) -> bool:
    """Whether a failed attempt is its delivery's last: the attempts are used up, or the next
    one (at the step's longest jitter, or the partner's Retry-After if later) would fall
    past the policy's maximum age."""
    if attempt >= policy.max_attempts:
        return True
    step = policy.schedule[min(max(attempt, 1), len(policy.schedule)) - 1]
    wait = max(step * (1.0 + policy.jitter_ratio), retry_after or 0.0)
    return age.total_seconds() + wait >= policy.max_age_seconds


def has_failed_too_long(failing_since: datetime | None, now: datetime) -> bool:
    """Whether an endpoint has failed continuously long enough to be disabled."""
    return failing_since is not None and now - failing_since >= DISABLE_AFTER
