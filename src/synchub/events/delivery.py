"""The delivery loop: lease due deliveries (with their events and links, in the claim's
transaction), call the destination outside any transaction, record the outcome
(events/outcome.py: retries with full jitter and Retry-After, dead letters, the breaker).
While an attempt runs, its lease is renewed (ADR 0008). `deliver_due` attempts one batch and
waits for it; events/pool.py keeps a pool of threads busy instead (ADR 0014)."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import structlog

from synchub.connectors.base import Attempt, Delivered, Destination, OutboundEvent
from synchub.core.clock import Clock
from synchub.core.errors import HubError, PermanentError, TransientError
from synchub.db import Database
from synchub.events import store
from synchub.events.outcome import Finished, record_outcome
from synchub.events.retry import Uniform
from synchub.mdm.records import MERGED_AWAY
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

    def count(self, outcome: str) -> None:
        """Add one attempt's outcome."""
        self.outcomes.append(outcome)
        if outcome in ("succeeded", "superseded"):
            self.succeeded += 1
        elif outcome == "dead":
            self.dead += 1
        else:
            self.retried += 1


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with what its attempt sends, read in the claim's transaction."""

    delivery: store.Delivery
    event: OutboundEvent | None  # None: the event is missing from the outbox


def claim_work(
    ctx: DeliveryContext, conn: Any, *, limit: int, health: store.Health_ | None = None
) -> list[Claimed]:
    """Lease up to `limit` due deliveries and read their events, links and (for destinations
    that write snapshots) the snapshots already applied, in `conn`'s transaction; start them
    only once it has committed. `health`: breaker rows already read."""
    now = ctx.clock.now()
    claimed, events = store.claim_with_events(
        conn, now=now, owner=ctx.worker_id, lease_until=now + ctx.lease, limit=limit,
        breaker_for=ctx.breaker_for, health=health)  # fmt: skip
    outbound = {d.id: _outbound(d, events.get(d.event_id)) for d in claimed}
    _read_links_and_applied(ctx, conn, claimed, outbound)
    return [Claimed(d, outbound[d.id]) for d in claimed]


def _read_links_and_applied(
    ctx: DeliveryContext,
    conn: Any,
    claimed: list[store.Delivery],
    outbound: dict[str, OutboundEvent | None],
) -> None:
    """Fill in each claimed event's links at its destination and, for a destination that
    names the records whose snapshots it writes (`snapshot_ids`), the newest snapshot of each
    it already holds: the stale-write guard (ADR 0021). One query for both per (workspace,
    destination) in the batch (ADR 0014), after the claim statement in its transaction: a
    later delivery of the same (destination, aggregate) either committed its outcome before
    the claim read (and is seen here) or waits for this one (it is later; a replay waits for
    one in flight), so no later snapshot can land between this read and the attempt."""
    groups: dict[tuple[str, str], list[store.Delivery]] = {}
    for delivery in claimed:
        if outbound[delivery.id] is not None:
            groups.setdefault((delivery.workspace, delivery.destination), []).append(delivery)
    for (workspace, name), members in groups.items():
        wanted = {d.id: _link_ids(outbound[d.id]) for d in members}
        destination = ctx.destinations(workspace).get(name)
        snapshot_ids = getattr(destination, "snapshot_ids", None)
        snapshots: dict[str, list[str]] = {}
        if snapshot_ids is not None:
            for d in members:
                event = outbound[d.id]
                snapshots[d.id] = [str(i) for i in snapshot_ids(event) if i] if event else []
        links, applied = store.links_and_applied(
            conn, workspace=workspace, destination=name, merged_away=MERGED_AWAY,
            link_ids=[i for ids in wanted.values() for i in ids],
            snapshot_ids=[i for ids in snapshots.values() for i in ids])  # fmt: skip
        for d in members:
            event = outbound[d.id]
            assert event is not None
            outbound[d.id] = replace(
                event,
                links={i: links[i] for i in wanted[d.id] if i in links},
                applied={i: applied[i] for i in snapshots.get(d.id, []) if i in applied},
            )


def deliver_due(
    ctx: DeliveryContext,
    *,
    limit: int = 50,
    pool: ThreadPoolExecutor | None = None,
) -> DeliveryStats:
    """Lease due deliveries and attempt each once; return what happened."""
    with ctx.db.write() as conn:
        claimed = claim_work(ctx, conn, limit=limit)
    stats = DeliveryStats()
    for outcome in _attempt_all(ctx, claimed, pool):
        stats.count(outcome)
    return stats


def _attempt_all(
    ctx: DeliveryContext, claimed: list[Claimed], pool: ThreadPoolExecutor | None
) -> list[str]:
    """Attempt each claimed delivery, renewing the leases of those still running meanwhile."""
    if not claimed:
        return []
    executor = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="synchub-deliver")
    try:
        futures = {executor.submit(_attempt, ctx, c): c.delivery.id for c in claimed}
        running: set[Future[str]] = set(futures)
        every = heartbeat_seconds(ctx)
        while running:
            _, running = wait(running, timeout=every)
            if running:
                renew(ctx, [futures[f] for f in running])
        return [f.result() for f in futures]
    finally:
        if pool is None:
            executor.shutdown(wait=True)


def heartbeat_seconds(ctx: DeliveryContext) -> float:
    """Real seconds between lease renewals of running attempts."""
    return (ctx.heartbeat or ctx.lease / 3).total_seconds()


def renew(ctx: DeliveryContext, delivery_ids: list[str]) -> None:
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


def _link_ids(event: OutboundEvent | None) -> list[str]:
    """The canonical ids of an event's entities whose links a destination may need."""
    if event is None:
        return []
    obj = event.payload.get("object", {})
    return [str(i) for i in (obj.get("id"), *(obj.get(f) for f in _ID_FIELDS)) if i]


def _outbound(delivery: store.Delivery, event: dict[str, Any] | None) -> OutboundEvent | None:
    """The event as its destination sees it, with its outbox sequence number (ADR 0021);
    links and applied snapshots are filled in by `_read_links_and_applied`."""
    if event is None:
        return None
    return OutboundEvent(
        id=event["id"],
        type=event["type"],
        subject=event["subject"],
        time=event["created_at"],
        payload=event["payload"],
        traceparent=event["traceparent"],
        links={},
        seq=delivery.event_seq,
    )


def _claim_one(ctx: DeliveryContext) -> Callable[[Any, store.Health_ | None], list[Claimed]]:
    return lambda conn, health: claim_work(ctx, conn, limit=1, health=health)


def _attempt(ctx: DeliveryContext, claimed: Claimed) -> str:
    return deliver_one(ctx, claimed)[0]


def deliver_one(
    ctx: DeliveryContext, claimed: Claimed, *, claim_next: bool = False
) -> tuple[str, Claimed | None]:
    """Attempt one leased delivery outside any transaction and record the outcome; with
    `claim_next`, lease this thread's next delivery in the outcome's transaction."""
    done = attempt(ctx, claimed)
    then = _claim_one(ctx) if claim_next else None
    name, after = record_outcome(ctx, done.delivery, done.policy, done.started, done.result,
                                 done.error, then=then)  # fmt: skip
    return name, (after[0] if after else None)


def attempt(ctx: DeliveryContext, claimed: Claimed) -> Finished:
    """Call the destination for one leased delivery, outside any transaction; the outcome is
    written by `record_outcome` or, with other slots' outcomes, `record_group`."""
    delivery = claimed.delivery
    started = ctx.clock.now()
    destination = ctx.destinations(delivery.workspace).get(delivery.destination)
    policy = ctx.policy_for(delivery.destination)
    result: Delivered | None = None
    error: HubError | None = None
    try:
        if destination is None:
            raise PermanentError(f"no destination named {delivery.destination!r} is configured")
        if claimed.event is None:
            raise PermanentError(f"event {delivery.event_id} is missing from the outbox")
        call = Attempt(
            delivery_id=delivery.id,
            idempotency_key=delivery.idempotency_key,
            number=delivery.attempts,
        )
        result = destination.deliver(claimed.event, call)
    except HubError as exc:
        error = exc
    except Exception as exc:
        log.exception("delivery.crashed", delivery_id=delivery.id)
        error = TransientError(f"unexpected {type(exc).__name__} in destination")
    return Finished(delivery, policy, started, result, error)


def claim_some(ctx: DeliveryContext) -> Callable[[Any, store.Health_ | None, int], list[Claimed]]:
    """A group's claim: up to `limit` next deliveries in the outcomes' transaction."""
    return lambda conn, health, limit: claim_work(ctx, conn, limit=limit, health=health)
