"""The delivery loop: lease due deliveries, call the destination outside any transaction,
record the outcome. Retries use full jitter and honour Retry-After; exhausted or permanent
failures become dead letters with the reason and the vendor's last (redacted) answer.

Each outcome also feeds the destination's circuit breaker and retry throttle, in the same
transaction (events/breaker.py); while an attempt runs, its lease is renewed (ADR 0008)."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from synchub.connectors.base import Attempt, Delivered, Destination, OutboundEvent
from synchub.connectors.http import ResponseSummary, redact_text, response_of
from synchub.core.clock import Clock
from synchub.core.errors import (
    DependencyPendingError,
    HubError,
    LinkConflictError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from synchub.db import Database
from synchub.events import store
from synchub.events.breaker import Health, Signal
from synchub.events.retry import Uniform, full_jitter_delay, is_exhausted, outlives_budget
from synchub.mdm.service import links_at, record_link
from synchub.register.model import BreakerPolicy, RetryPolicy

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
    # timeout_seconds), and renewed every `heartbeat` while the attempt runs, so a lease
    # expires only when its worker has died.
    lease: timedelta = timedelta(minutes=5)
    concurrency: int = 4
    breaker_for: Callable[[str], BreakerPolicy] = store.default_breaker  # by destination name
    heartbeat: timedelta | None = None  # real time between lease renewals; None: lease / 3


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
        claimed = store.claim_due(conn, now=now, owner=ctx.worker_id, lease_until=now + ctx.lease,
                                  limit=limit, breaker_for=ctx.breaker_for)  # fmt: skip
    stats = DeliveryStats()
    for outcome in _attempt_all(ctx, claimed, pool):
        stats.outcomes.append(outcome)
        if outcome == "succeeded":
            stats.succeeded += 1
        elif outcome == "dead":
            stats.dead += 1
        else:
            stats.retried += 1
    return stats


def _attempt_all(
    ctx: DeliveryContext, claimed: list[store.Delivery], pool: ThreadPoolExecutor | None
) -> list[str]:
    """Attempt each claimed delivery, renewing the leases of those still running meanwhile."""
    if not claimed:
        return []
    executor = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="synchub-deliver")
    try:
        futures = [executor.submit(_deliver_one, ctx, d) for d in claimed]
        running: set[Future[str]] = set(futures)
        every = (ctx.heartbeat or ctx.lease / 3).total_seconds()
        while running:
            _, running = wait(running, timeout=every)
            if running:
                _renew(ctx, [d.id for d, f in zip(claimed, futures, strict=True) if f in running])
        return [f.result() for f in futures]
    finally:
        if pool is None:
            executor.shutdown(wait=True)


def _renew(ctx: DeliveryContext, delivery_ids: list[str]) -> None:
    """A heartbeat: push the leases of attempts still running further out."""
    try:
        with ctx.db.write() as conn:
            held = store.renew_leases(conn, delivery_ids, owner=ctx.worker_id,
                                      lease_until=ctx.clock.now() + ctx.lease)  # fmt: skip
    except Exception:  # a missed heartbeat is retried at the next one; the lease is long
        log.exception("delivery.heartbeat_failed", worker_id=ctx.worker_id)
        return
    if held < len(delivery_ids):
        log.warning("delivery.lease_lost", worker_id=ctx.worker_id, running=len(delivery_ids),
                    held=held)  # fmt: skip


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
    return _record(ctx, delivery, policy, started, result, error, signal_of(error))


def signal_of(error: HubError | None) -> Signal | None:
    """What an attempt tells the breaker: None for outcomes that do not count (4xx, ours)."""
    if error is None:
        return Signal.SUCCESS
    if isinstance(error, RateLimitedError):
        return Signal.RATE_LIMITED
    if isinstance(error, TransientError) and not isinstance(error, DependencyPendingError):
        return Signal.FAILURE
    return None


@dataclass(frozen=True)
class _Outcome:
    """One attempt's result, ready to write."""

    name: str  # succeeded | retry | dead
    values: dict[str, Any]  # the delivery's new columns
    signal: Signal | None
    response: ResponseSummary | None
    retry_after: float | None


def _write_outcome(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    started: datetime,
    now: datetime,
    outcome: _Outcome,
    result: Delivered | None,
) -> bool:
    """Record the outcome, the attempt, any new links and the breaker in one transaction.

    False (and nothing written) when this worker no longer holds the delivery's lease.
    """
    try:
        with ctx.db.write() as conn:
            for link in result.links if result else []:
                record_link(conn, workspace=delivery.workspace, entity=link.entity,
                            canonical_id=link.canonical_id, system=delivery.destination,
                            external_id=link.external_id, reason="delivered", at=now)  # fmt: skip
            if not store.finish(conn, delivery.id, owner=ctx.worker_id, **outcome.values):
                raise _LeaseLostError  # rolls back the links written above
            response = outcome.response.as_dict() if outcome.response else None
            store.record_attempt(conn, {
                "delivery_id": delivery.id, "attempt": delivery.attempts, "started_at": started,
                "finished_at": now, "outcome": outcome.name,
                "status_code": outcome.values.get("last_status_code"),
                "error": outcome.values.get("last_error"),
                "retry_after_seconds": outcome.retry_after, "response": response,
                "workspace": delivery.workspace, "destination": delivery.destination,
                "breaker_signal": outcome.signal.value if outcome.signal else None,
            })  # fmt: skip
            if outcome.signal is not None:
                _observe(ctx, conn, delivery, outcome.signal, outcome.retry_after, now)
    except _LeaseLostError:
        return False
    return True


def _observe(
    ctx: DeliveryContext,
    conn: Any,
    delivery: store.Delivery,
    signal: Signal,
    retry_after: float | None,
    now: datetime,
) -> None:
    key = (delivery.workspace, delivery.destination)
    before, after = store.observe_health(
        conn, key, signal, policy=ctx.breaker_for(delivery.destination), now=now,
        retry_after=retry_after,
        max_pause=ctx.policy_for(delivery.destination).max_age_seconds)  # fmt: skip
    _log_transition(delivery, before, after)


def _log_transition(delivery: store.Delivery, before: Health, after: Health) -> None:
    fields = {"workspace": delivery.workspace, "destination": delivery.destination}
    if after.state == "open" and after.opened_at != before.opened_at:
        log.warning("breaker.opened", open_until=after.open_until,
                    consecutive_failures=after.consecutive_failures, **fields)  # fmt: skip
    elif after.state == "closed" and before.state != "closed":
        log.info("breaker.closed", **fields)
    if after.paused_until != before.paused_until:
        log.info("destination.paused", paused_until=after.paused_until, **fields)


class _LeaseLostError(Exception):
    """Raised inside the transaction to roll it back when the lease has passed to another."""


def _decide(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    now: datetime,
    result: Delivered | None,
    error: HubError | None,
) -> tuple[str, dict[str, Any]]:
    """succeeded, retry (with the next attempt time) or dead (with the reason)."""
    if error is None and result is not None:
        return "succeeded", {"status": "succeeded", "completed_at": now, "last_error": None}
    status = getattr(error, "status", None)
    message = redact_text(str(error))
    age = now - delivery.created_at
    if isinstance(error, TransientError) and not is_exhausted(delivery.attempts, age, policy):
        delay = full_jitter_delay(
            delivery.attempts, policy, uniform=ctx.uniform, retry_after=error.retry_after
        )
        if not outlives_budget(age, delay, policy):
            return "retry", {"status": "pending", "next_attempt_at": now + delay,
                             "last_error": message, "last_status_code": status}  # fmt: skip
        wait_s, max_age = delay.total_seconds(), policy.max_age_seconds
        reason = (f"{message}; the next attempt ({wait_s:.0f} s away) would be past the "
                  f"destination's maximum age of {max_age:.0f} s")  # fmt: skip
    elif isinstance(error, PermanentError):
        reason = message
    else:
        reason = f"gave up after {delivery.attempts} attempts: {message}"
    return "dead", {"status": "dead", "dead_reason": reason, "completed_at": now,
                    "last_error": message, "last_status_code": status}  # fmt: skip


def _record(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    started: datetime,
    result: Delivered | None,
    error: HubError | None,
    signal: Signal | None,
) -> str:
    now = ctx.clock.now()
    name, values = _decide(ctx, delivery, policy, now, result, error)
    response = response_of(error) if error is not None else None
    values["last_response"] = response.as_dict() if response else None
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    outcome = _Outcome(name, values, signal, response, retry_after)
    try:
        if not _write_outcome(ctx, delivery, started, now, outcome, result):
            log.warning("delivery.lease_lost", delivery_id=delivery.id)
            return "lease_lost"
    except LinkConflictError as exc:  # rolled back; the destination merged two of our records
        conflict = PermanentError(f"{delivery.destination} answered with a record that "
                                  f"belongs to another customer: {exc}")  # fmt: skip
        return _record(ctx, delivery, policy, started, None, conflict, signal)
    (log.warning if name == "dead" else log.info)(
        "delivery.attempted",
        delivery_id=delivery.id,
        destination=delivery.destination,
        event_type=delivery.event_type,
        attempt=delivery.attempts,
        outcome=name,
        error=values.get("last_error"),
    )
    return name
