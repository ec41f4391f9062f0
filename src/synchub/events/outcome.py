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
            if not _write_rows(ctx, conn, delivery, started, now, outcome, result):
                raise _LeaseLostError  # rolls back the links written
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


def _write_rows(
    ctx: DeliveryContext,
    conn: Any,
    delivery: store.Delivery,
    started: datetime,
    now: datetime,
    outcome: _Outcome,
    result: Delivered | None,
) -> bool:
    """Write the links, the outcome, its attempt and the snapshots applied (not the breaker);
    False when the lease was lost: the caller must then roll back what this wrote (links)."""
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
    return store.finish_attempt(conn, delivery.id, owner=ctx.worker_id, values=outcome.values,
                                attempt=attempt, applied=applied)  # fmt: skip


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


def _prepare(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    result: Delivered | None,
    error: HubError | None,
) -> tuple[datetime, _Outcome]:
    """When the attempt ended and what to write for it."""
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
    return now, _Outcome(name, values, signal, response, retry_after)


def _conflict_outcome(
    ctx: DeliveryContext,
    delivery: store.Delivery,
    policy: RetryPolicy,
    exc: LinkConflictError,
    signal: Signal | None,
) -> tuple[datetime, _Outcome]:
    """A dead letter for a link conflict; it keeps the breaker signal of the call itself."""
    conflict = PermanentError(f"{delivery.destination} answered with a record that "
                              f"belongs to another customer: {exc}")  # fmt: skip
    now = ctx.clock.now()
    name, values = _decide(ctx, delivery, policy, now, None, conflict)
    values["last_response"] = None
    return now, _Outcome(name, values, signal, None, None)


def _report(
    delivery: store.Delivery,
    name: str,
    values: dict[str, Any],
    started: datetime,
    now: datetime,
    result: Delivered | None,
) -> None:
    """Metrics and the log line of an attempt whose outcome transaction has ended."""
    _count(delivery, name, started, now)
    if name == "lease_lost":
        log.warning("delivery.lease_lost", delivery_id=delivery.id)
        return
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
    now, outcome = _prepare(ctx, delivery, policy, result, error)
    try:
        written, after = _write_outcome(ctx, delivery, started, now, outcome, result, then)
    except LinkConflictError as exc:  # rolled back; the destination merged two of our records
        now, outcome = _conflict_outcome(ctx, delivery, policy, exc, outcome.signal)
        result = None
        written, after = _write_outcome(ctx, delivery, started, now, outcome, None, then)
    name = outcome.name if written else "lease_lost"
    _report(delivery, name, outcome.values, started, now, result)
    return name, after


@dataclass(frozen=True)
class Finished:
    """An attempt whose call has ended, waiting for its outcome to be written."""

    delivery: store.Delivery
    policy: RetryPolicy
    started: datetime
    result: Delivered | None
    error: HubError | None


Claim = Callable[[Any, dict[tuple[str, str], Health] | None, int], list[T]]


class _Savepoints:
    """Savepoints of one transaction, one per outcome of a group (never released: the
    commit ends them all, and a group is a handful)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.count = 0

    def take(self) -> str:
        self.count += 1
        name = f"synchub_outcome_{self.count}"
        self.conn.exec_driver_sql(f"SAVEPOINT {name}")
        return name

    def roll_back(self, name: str) -> None:
        self.conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")


def record_group(
    ctx: DeliveryContext, finished: list[Finished], *, claim: Claim[T] | None, wants: list[bool]
) -> list[tuple[str, T | None] | BaseException]:
    """Group commit (ADR 0014): write several attempts' outcomes in one transaction, each in
    a savepoint of its own (a lost lease, a link conflict or an error rolls back only that
    outcome's rows), then claim next deliveries in the same transaction: at most one for
    each outcome written whose slot `wants` one. Per attempt, in order: its outcome's name
    and the next delivery claimed for it (None: none), or the error its outcome met. Metrics
    and log lines follow the commit; an error of the transaction itself is raised."""
    prepared = [_prepare(ctx, f.delivery, f.policy, f.result, f.error) for f in finished]
    done: list[_Written | BaseException] = [RuntimeError("not written")] * len(finished)
    # Rows are locked in one order by every group and heartbeat: deliveries by id, then the
    # breaker rows by (workspace, destination), so two transactions never wait on each other.
    by_id = sorted(range(len(finished)), key=lambda i: finished[i].delivery.id)
    with ctx.db.write() as conn:
        points = _Savepoints(conn)
        known = None
        if claim is not None or any(o.signal is Signal.SUCCESS for _, o in prepared):
            known = breaker_store.health_rows(conn)  # for successes and the claim
        for i in by_id:
            done[i] = _write_one(ctx, conn, points, finished[i], *prepared[i])
        # The breaker sees the outcomes written (a lost lease gives it no signal). An error
        # here fails the whole group: its outcomes roll back and their leases run out.
        written = [(i, d) for i in by_id if isinstance(d := done[i], _Written) and d.written]
        written.sort(key=lambda x: (finished[x[0]].delivery.workspace,
                                    finished[x[0]].delivery.destination))  # fmt: skip
        for i, d in written:
            signal = d.outcome.signal
            if signal is not None and _observe(ctx, conn, finished[i].delivery, signal,
                                               d.outcome, d.now, known):  # fmt: skip
                known = None  # the breaker moved: read it afresh
        takers = [
            isinstance(d, _Written) and d.written and want
            for d, want in zip(done, wants, strict=True)
        ]
        nexts: list[T] = []
        if claim is not None and any(takers):
            point = points.take()
            try:
                nexts = claim(conn, known, sum(takers))
            except Exception:  # the outcomes still commit; the slots are given back
                log.exception("delivery.group_claim_failed", worker_id=ctx.worker_id)
                points.roll_back(point)
                nexts = []
    out: list[tuple[str, T | None] | BaseException] = []
    for f, d, taker in zip(finished, done, takers, strict=True):
        if isinstance(d, BaseException):
            out.append(d)
            continue
        _report(f.delivery, d.name, d.outcome.values, f.started, d.now, d.result)
        out.append((d.name, nexts.pop(0) if taker and nexts else None))
    return out


@dataclass(frozen=True)
class _Written:
    """One outcome of a group, written (or refused: lease lost) in its savepoint."""

    written: bool
    now: datetime
    outcome: _Outcome
    result: Delivered | None

    @property
    def name(self) -> str:
        return self.outcome.name if self.written else "lease_lost"


def _write_one(
    ctx: DeliveryContext,
    conn: Any,
    points: _Savepoints,
    f: Finished,
    now: datetime,
    outcome: _Outcome,
) -> _Written | BaseException:
    """One outcome of a group in a savepoint of its own; rolled back alone when its lease
    was lost or it failed (the error is returned: only this outcome is lost, its lease runs
    out and it is retaken)."""
    point = points.take()
    result = f.result
    try:
        try:
            written = _write_rows(ctx, conn, f.delivery, f.started, now, outcome, result)
        except LinkConflictError as exc:  # the destination merged two of our records
            points.roll_back(point)
            now, outcome = _conflict_outcome(ctx, f.delivery, f.policy, exc, outcome.signal)
            result = None
            written = _write_rows(ctx, conn, f.delivery, f.started, now, outcome, None)
    except Exception as exc:  # noqa: BLE001 - handed to the slot, which raises it
        points.roll_back(point)
        return exc
    if not written:
        points.roll_back(point)  # the links it wrote
    return _Written(written, now, outcome, result)


WEBHOOK_LABEL = "webhook"  # every partner endpoint: metric labels never carry an id (ADR 0013)


def metric_destination(destination: str) -> str:
    """A destination's metric label: its register connection, or `webhook` for any endpoint."""
    return WEBHOOK_LABEL if endpoint_id_of(destination) is not None else destination


def _count(delivery: store.Delivery, outcome: str, started: datetime, now: datetime) -> None:
    """Count one attempt whose outcome transaction has ended (committed, or lost its lease)."""
    seconds = max(0.0, (now - started).total_seconds())
    record_delivery(metric_destination(delivery.destination), outcome, seconds=seconds)
