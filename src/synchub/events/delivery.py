"""The delivery loop: lease due deliveries, call the destination outside any transaction,
record the outcome. Retries use full jitter and honour Retry-After; exhausted or permanent
failures become dead letters with the reason."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from synchub.connectors.base import Attempt, Delivered, Destination, OutboundEvent
from synchub.core.clock import Clock
from synchub.core.errors import HubError, LinkConflictError, PermanentError, TransientError
from synchub.db import Database
from synchub.events import store
from synchub.events.retry import Uniform, full_jitter_delay, is_exhausted, outlives_budget
from synchub.mdm.service import links_at, record_link
from synchub.register.model import RetryPolicy

log = structlog.get_logger(__name__)

_ID_FIELDS = ("customer_id", "subscription_id", "invoice_id", "plan_id")


@dataclass(frozen=True)
class DeliveryContext:
    """Everything the delivery loop needs, passed in."""

    db: Database
    destinations: Callable[[str], dict[str, Destination]]  # by workspace
    policy_for: Callable[[str], RetryPolicy]  # by destination name
    clock: Clock
    worker_id: str
    uniform: Uniform = random.uniform
    # Far longer than one attempt (each HTTP call times out after the destination's
    # timeout_seconds), so a lease expires only when its worker has died.
    lease: timedelta = timedelta(minutes=5)
    concurrency: int = 4


@dataclass
class DeliveryStats:
    """What one pass of the delivery loop did."""

    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    outcomes: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """How many attempts were made."""
        return self.succeeded + self.retried + self.dead


def deliver_due(
    ctx: DeliveryContext,
    *,
    limit: int = 50,
    pool: ThreadPoolExecutor | None = None,
) -> DeliveryStats:
    """Lease due deliveries and attempt each once; return what happened."""
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        claimed = store.claim_due(
            conn, now=now, owner=ctx.worker_id, lease_until=now + ctx.lease, limit=limit
        )
    stats = DeliveryStats()
    results = (
        pool.map(lambda d: _deliver_one(ctx, d), claimed)
        if pool
        else map(lambda d: _deliver_one(ctx, d), claimed)
    )
    for outcome in results:
        stats.outcomes.append(outcome)
        if outcome == "succeeded":
            stats.succeeded += 1
        elif outcome == "dead":
            stats.dead += 1
        else:
            stats.retried += 1
    return stats


def _outbound(conn: Any, delivery: store.Delivery, destination: str) -> OutboundEvent:
    event = store.get_event(conn, delivery.event_id)
    if event is None:
        raise PermanentError(f"event {delivery.event_id} is missing from the outbox")
    payload = event["payload"]
    obj = payload.get("object", {})
    ids = [obj.get("id"), *(obj.get(f) for f in _ID_FIELDS)]
    links = links_at(
        conn, workspace=delivery.workspace, system=destination, canonical_ids=[i for i in ids if i]
    )
    return OutboundEvent(
        id=event["id"],
        type=event["type"],
        subject=event["subject"],
        time=event["created_at"],
        payload=payload,
        traceparent=event["traceparent"],
        links=links,
    )


def _deliver_one(ctx: DeliveryContext, delivery: store.Delivery) -> str:
    started = ctx.clock.now()
    destination = ctx.destinations(delivery.workspace).get(delivery.destination)
    policy = ctx.policy_for(delivery.destination)
    result: Delivered | None = None
    error: HubError | None = None
    try:
        if destination is None:
            raise PermanentError(f"no destination named {delivery.destination!r} is configured")
        with ctx.db.read() as conn:
            event = _outbound(conn, delivery, delivery.destination)
        attempt = Attempt(
            delivery_id=delivery.id,
            idempotency_key=delivery.idempotency_key,
            number=delivery.attempts,
        )
        result = destination.deliver(event, attempt)
    except HubError as exc:
        error = exc
    except Exception as exc:
        log.exception("delivery.crashed", delivery_id=delivery.id)
        error = TransientError(f"unexpected {type(exc).__name__} in destination")
    return _record(ctx, delivery, policy, started, result, error)


def _write_outcome(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    started: Any,
    now: Any,
    outcome: str,
    values: dict[str, Any],
    result: Delivered | None,
    error: HubError | None,
) -> bool:
    """Record the outcome, the attempt and any new links in one transaction.

    False (and nothing written) when this worker no longer holds the delivery's lease.
    """
    try:
        with ctx.db.write() as conn:
            for link in result.links if result else []:
                record_link(
                    conn,
                    workspace=delivery.workspace,
                    entity=link.entity,
                    canonical_id=link.canonical_id,
                    system=delivery.destination,
                    external_id=link.external_id,
                    reason="delivered",
                    at=now,
                )
            if not store.finish(conn, delivery.id, owner=ctx.worker_id, **values):
                raise _LeaseLostError  # rolls back the links written above
            store.record_attempt(conn, {
                "delivery_id": delivery.id, "attempt": delivery.attempts, "started_at": started,
                "finished_at": now, "outcome": outcome,
                "status_code": values.get("last_status_code"),
                "error": values.get("last_error"),
                "retry_after_seconds": getattr(error, "retry_after", None),
            })  # fmt: skip
    except _LeaseLostError:
        return False
    return True


class _LeaseLostError(Exception):
    """Raised inside the transaction to roll it back when the lease has passed to another."""


def _record(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    started: Any,
    result: Delivered | None,
    error: HubError | None,
) -> str:
    now = ctx.clock.now()
    values: dict[str, Any]
    if error is None and result is not None:
        outcome, values = (
            "succeeded",
            {"status": "succeeded", "completed_at": now, "last_error": None},
        )
    elif isinstance(error, TransientError) and not is_exhausted(
        delivery.attempts, now - delivery.created_at, policy
    ):
        delay = full_jitter_delay(
            delivery.attempts, policy, uniform=ctx.uniform, retry_after=error.retry_after
        )
        if outlives_budget(now - delivery.created_at, delay, policy):
            error = PermanentError(
                f"{error}; the next attempt ({delay.total_seconds():.0f} s away) would be past "
                f"the destination's maximum age of {policy.max_age_seconds:.0f} s"
            )
            return _record(ctx, delivery, policy, started, None, error)
        outcome, values = (
            "retry",
            {
                "status": "pending",
                "next_attempt_at": now + delay,
                "last_error": str(error),
                "last_status_code": error.status,
            },
        )
    else:
        reason = (
            str(error)
            if isinstance(error, PermanentError)
            else (f"gave up after {delivery.attempts} attempts: {error}")
        )
        outcome, values = (
            "dead",
            {
                "status": "dead",
                "dead_reason": reason,
                "completed_at": now,
                "last_error": str(error),
                "last_status_code": getattr(error, "status", None),
            },
        )
    try:
        if not _write_outcome(ctx, delivery, started, now, outcome, values, result, error):
            log.warning("delivery.lease_lost", delivery_id=delivery.id)
            return "lease_lost"
    except LinkConflictError as exc:  # rolled back; the destination merged two of our records
        return _record(
            ctx,
            delivery,
            policy,
            started,
            None,
            PermanentError(
                f"{delivery.destination} answered with a record that "
                f"belongs to another customer: {exc}"
            ),
        )
    (log.warning if outcome == "dead" else log.info)(
        "delivery.attempted",
        delivery_id=delivery.id,
        destination=delivery.destination,
        event_type=delivery.event_type,
        attempt=delivery.attempts,
        outcome=outcome,
        error=values.get("last_error"),
    )
    return outcome
