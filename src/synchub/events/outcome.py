"""An attempt's outcome: succeeded (or superseded, ADR 0021), retry (full jitter,
Retry-After) or dead letter, written with its attempt, any links the destination returned,
the snapshots it applied and the breaker's update in one transaction (ADR 0008). That
transaction may also claim the worker's next delivery (`then`), so a busy delivery thread
costs one transaction per delivery (ADR 0014)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from synchub.connectors.base import Delivered
from synchub.connectors.http import ResponseSummary, redact_text, response_of
from synchub.core.errors import (
    DependencyPendingError,
    HubError,
    LinkConflictError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from synchub.events import breaker_store, store
from synchub.events.breaker import Health, Signal
from synchub.events.retry import full_jitter_delay, is_exhausted, outlives_budget
from synchub.mdm.service import record_link
from synchub.observability.metrics import record_delivery
from synchub.register.model import RetryPolicy
from synchub.webhooks.model import endpoint_id_of

if TYPE_CHECKING:  # delivery.py imports this module; only the type comes back
    from synchub.events.delivery import DeliveryContext

log = structlog.get_logger(__name__)
T = TypeVar("T")
# Runs in the outcome's transaction once it is written; gets the breaker rows when they were
# read for the outcome and are still current (None: read them yourself).
Then = Callable[[Any, dict[tuple[str, str], Health] | None], T]


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
    then: Then[T] | None,
) -> tuple[bool, T | None]:
    """Record the outcome, the attempt, any new links and the breaker in one transaction,
    then run `then` in it. (False, None) and nothing written when this worker no longer
    holds the delivery's lease.
    """
    try:
        with ctx.db.write() as conn:
            for link in result.links if result else []:
                record_link(conn, workspace=delivery.workspace, entity=link.entity,
                            canonical_id=link.canonical_id, system=delivery.destination,
                            external_id=link.external_id, reason="delivered", at=now)  # fmt: skip
            applied = None
            if result is not None and result.applied:  # the stale-write guard (ADR 0021)
                applied = store.Applied(delivery.workspace, delivery.destination,
                                        list(result.applied), delivery.event_seq,
                                        delivery.event_id, now)  # fmt: skip
            response = outcome.response.as_dict() if outcome.response else None
            attempt = {
                "attempt": delivery.attempts, "started_at": started, "finished_at": now,
                "outcome": outcome.name, "status_code": outcome.values.get("last_status_code"),
                "error": outcome.values.get("last_error"),
                "retry_after_seconds": outcome.retry_after, "response": response,
                "workspace": delivery.workspace, "destination": delivery.destination,
                "breaker_signal": outcome.signal.value if outcome.signal else None,
            }  # fmt: skip
            if not store.finish_attempt(conn, delivery.id, owner=ctx.worker_id,
                                        values=outcome.values, attempt=attempt,
                                        applied=applied):  # fmt: skip
                raise _LeaseLostError  # rolls back the links written above
            known = None
            if then is not None and outcome.signal is Signal.SUCCESS:
                known = breaker_store.health_rows(conn)  # for the success and the next claim
            signal = outcome.signal
            if signal is not None and _observe(ctx, conn, delivery, signal, outcome, now, known):
                known = None  # the breaker moved: the next claim reads it afresh
            after = then(conn, known) if then is not None else None
    except _LeaseLostError:
        return False, None
    return True, after


def _observe(
    ctx: DeliveryContext,
    conn: Any,
    delivery: store.Delivery,
    signal: Signal,
    outcome: _Outcome,
    now: datetime,
    known: dict[tuple[str, str], Health] | None,
) -> bool:
    """Feed the breaker; whether its state changed."""
    retry_after = outcome.retry_after
    key = (delivery.workspace, delivery.destination)
    before, after = breaker_store.observe_health(
        conn, key, signal, policy=ctx.breaker_for(delivery.destination), now=now,
        retry_after=retry_after, known=known,
        max_pause=ctx.policy_for(delivery.destination).max_age_seconds)  # fmt: skip
    _log_transition(delivery, before, after)
    return after != before


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
        # The success's own status (None when the destination made no single HTTP call to
        # report), never one left over from an earlier failed attempt.
        return "succeeded", {"status": "succeeded", "completed_at": now, "last_error": None,
                             "last_status_code": result.status_code}  # fmt: skip
    status = getattr(error, "status", None)
    message = redact_text(str(error))
    age = now - delivery.budget_from  # a replay starts a fresh budget
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


def record_outcome(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    started: datetime,
    result: Delivered | None,
    error: HubError | None,
    *,
    then: Then[T] | None = None,
) -> tuple[str, T | None]:
    """Decide and write one attempt's outcome; its name and what `then` returned (None when
    the lease was lost: nothing was written and `then` did not run)."""
    signal = signal_of(error)
    now = ctx.clock.now()
    name, values = _decide(ctx, delivery, policy, now, result, error)
    if name == "succeeded" and result is not None and result.superseded:
        # Nothing was sent: the destination holds newer snapshots (ADR 0021). A success in
        # the delivery's status; its own outcome in the attempt history; no breaker signal.
        name, signal = "superseded", None
    response = response_of(error) if error is not None else None
    values["last_response"] = response.as_dict() if response else None
    retry_after = error.retry_after if isinstance(error, TransientError) else None
    outcome = _Outcome(name, values, signal, response, retry_after)
    try:
        written, after = _write_outcome(ctx, delivery, started, now, outcome, result, then)
        if not written:
            log.warning("delivery.lease_lost", delivery_id=delivery.id)
            _count(delivery, "lease_lost", started, now)
            return "lease_lost", None
    except LinkConflictError as exc:  # rolled back; the destination merged two of our records
        conflict = PermanentError(f"{delivery.destination} answered with a record that "
                                  f"belongs to another customer: {exc}")  # fmt: skip
        return _conflicted(ctx, delivery, policy, started, conflict, signal, then)
    _count(delivery, name, started, now)
    (log.warning if name == "dead" else log.info)(
        "delivery.attempted",
        delivery_id=delivery.id,
        destination=delivery.destination,
        event_type=delivery.event_type,
        attempt=delivery.attempts,
        outcome=name,
        error=values.get("last_error"),
        **({"reason": result.summary} if name == "superseded" and result else {}),
    )
    return name, after


def _conflicted(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    started: datetime,
    conflict: PermanentError,
    signal: Signal | None,
    then: Then[T] | None,
) -> tuple[str, T | None]:
    """A dead letter for a link conflict; it keeps the breaker signal of the call itself."""
    now = ctx.clock.now()
    name, values = _decide(ctx, delivery, policy, now, None, conflict)
    values["last_response"] = None
    outcome = _Outcome(name, values, signal, None, None)
    written, after = _write_outcome(ctx, delivery, started, now, outcome, None, then)
    if not written:
        log.warning("delivery.lease_lost", delivery_id=delivery.id)
        _count(delivery, "lease_lost", started, now)
        return "lease_lost", None
    _count(delivery, name, started, now)
    log.warning("delivery.attempted", delivery_id=delivery.id, destination=delivery.destination,
                event_type=delivery.event_type, attempt=delivery.attempts, outcome=name,
                error=values.get("last_error"))  # fmt: skip
    return name, after


WEBHOOK_LABEL = "webhook"  # every partner endpoint: metric labels never carry an id (ADR 0013)


def metric_destination(destination: str) -> str:
    """A destination's metric label: its register connection, or `webhook` for any endpoint."""
    return WEBHOOK_LABEL if endpoint_id_of(destination) is not None else destination


def _count(delivery: store.Delivery, outcome: str, started: datetime, now: datetime) -> None:
    """Count one attempt whose outcome transaction has ended (committed, or lost its lease)."""
    seconds = max(0.0, (now - started).total_seconds())
    record_delivery(metric_destination(delivery.destination), outcome, seconds=seconds)
